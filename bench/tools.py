"""The two outside tools the benchmark drives: nginx (the upstream) and wrk (the load).

Both come from Debian; when either is missing they are installed with apt-get (we run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class Tools:
    nginx: Path
    wrk: Path


def _which(name: str) -> Path | None:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    return Path(found) if found else None


def _apt_has(package: str) -> bool:
    result = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and "Package:" in result.stdout


def ensure_tools() -> Tools:
    nginx, wrk = _which("nginx"), _which("wrk")
    if nginx is None or wrk is None:
        if os.geteuid() != 0:
            raise SystemExit(
                "bench: nginx and wrk are needed; install them as root with\n"
                "  apt-get install -y --no-install-recommends nginx-light wrk"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        print("bench: nginx/wrk missing; running apt-get update", flush=True)
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        packages = []
        if nginx is None:
            packages.append("nginx-light" if _apt_has("nginx-light") else "nginx")
        if wrk is None:
            packages.append("wrk")
        print(f"bench: installing {' '.join(packages)} from Debian", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            check=True,
            env=env,
        )
        nginx, wrk = _which("nginx"), _which("wrk")
        if nginx is None or wrk is None:
            raise SystemExit("bench: nginx or wrk still not found after apt-get install")
    return Tools(nginx=nginx, wrk=wrk)


def version(tool: Path) -> str:
    """One-line version string (nginx prints it on stderr, wrk exits 1 after printing it)."""
    flag = "-v" if tool.name == "nginx" else "--version"
    result = subprocess.run([str(tool), flag], capture_output=True, text=True, check=False)
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0] if text else tool.name
