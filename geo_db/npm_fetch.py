"""Fetch one file from an npm package tarball with ``npm pack`` (the build scripts' shared
helper: the embedded databases are republished on npm by sapics/ip-location-db)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import subprocess
import tarfile
from pathlib import Path

log = logging.getLogger("npm_fetch")
# ip-location-db versions are MAJOR.MINOR.YYYYMMDDHH: the hour the data was built.
_VERSION_DATE = re.compile(r"^\d+\.\d+\.(\d{4})(\d{2})(\d{2})(\d{2})?$")


class BuildError(Exception):
    """The source could not be fetched, read or converted."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _npm(*args: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            ["npm", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=600
        )
    except FileNotFoundError:
        raise BuildError("npm not found on PATH (or use --input FILE)") from None
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"npm {' '.join(args)} failed:\n{exc.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"npm {' '.join(args)} timed out") from None
    return done.stdout


def npm_current_version(package: str) -> str:
    version = _npm("view", package, "version").strip()
    if not version:
        raise BuildError(f"npm view {package} version returned nothing")
    return version


def npm_extract(package: str, version: str, member: str, workdir: Path) -> tuple[Path, str]:
    """``npm pack`` the package into workdir and extract ``member`` (``package/<file>``).

    Returns the extracted file and the tarball's integrity string as reported by npm."""
    spec = f"{package}@{version}"
    log.info("npm pack %s", spec)
    packed = json.loads(_npm("pack", "--json", spec, cwd=workdir))
    entry = packed[0]
    tarball = workdir / str(entry["filename"])
    integrity = str(entry.get("integrity", ""))
    target = workdir / Path(member).name
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            names = ", ".join(tar.getnames())
            raise BuildError(f"{tarball.name} has no {member} (has: {names})") from None
        stream = tar.extractfile(info)
        if not info.isfile() or stream is None:
            raise BuildError(f"{member} in {tarball.name} is not a regular file")
        with stream, target.open("wb") as out:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    return target, integrity


def date_from_version(version: str) -> dt.date | None:
    match = _VERSION_DATE.match(version)
    if not match:
        return None
    year, month, day = (int(part) for part in match.group(1, 2, 3))
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None
