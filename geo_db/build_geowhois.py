#!/usr/bin/env python3
"""Fetch the second embedded geo database, ``geo_db/geo-whois-asn-country.mmdb``.

Source: the npm package ``@ip-location-db/geo-whois-asn-country-mmdb`` (sapics/ip-location-db,
CC0; built from geofeeds, RIR whois and RIR ASN data, the RIR statistics by the NRO under
CC BY 4.0). The file ``geo-whois-asn-country.mmdb`` (IPv4 and IPv6, records
``{"country_code": "US"}``) is kept byte-for-byte: the gateway reads that schema directly.
A JSON sidecar records the package version, build date, attribution and sha256s.

The package's README warns of data bugs (e.g. TEST-NET-3 203.0.113.0/24 → AU): the gateway
never asks a public database about reserved ranges, so they cannot matter.

Usage: ``.venv/bin/python geo_db/build_geowhois.py [--version V | --input FILE] [--output F]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import maxminddb
from npm_fetch import BuildError, date_from_version, npm_current_version, npm_extract, sha256_of

log = logging.getLogger("build_geowhois")
NPM_PACKAGE = "@ip-location-db/geo-whois-asn-country-mmdb"
SOURCE_MEMBER = "package/geo-whois-asn-country.mmdb"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "geo-whois-asn-country.mmdb"
ATTRIBUTION = (
    "geo-whois-asn-country by sapics/ip-location-db (CC0); RIR data by the NRO (nro.net), CC BY 4.0"
)
# Addresses whose answer the build checks: a public one per family must have a country.
_PROBES = ("8.8.8.8", "2001:4860:4860::8888")


def check(path: Path) -> tuple[int, str]:
    """The file is a country database with the expected record schema; returns build_epoch and
    database type."""
    try:
        reader = maxminddb.open_database(str(path))
    except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise BuildError(f"{path}: not a MaxMind database: {exc}") from None
    with reader:
        meta = reader.metadata()
        if "country" not in str(meta.database_type).lower():
            raise BuildError(f"{path}: database type {meta.database_type!r} is not a country db")
        for probe in _PROBES:
            record = reader.get(probe)
            if not isinstance(record, dict) or not isinstance(record.get("country_code"), str):
                raise BuildError(f"{path}: {probe} has no country_code record: {record!r}")
        return int(meta.build_epoch), str(meta.database_type)


def build(args: argparse.Namespace) -> dict[str, Any]:
    output: Path = args.output.resolve()
    with tempfile.TemporaryDirectory(prefix="build_geowhois-") as tmp:
        integrity = ""
        if args.input is not None:
            source: Path = args.input
            version: str | None = args.version
        else:
            version = args.version or npm_current_version(NPM_PACKAGE)
            source, integrity = npm_extract(NPM_PACKAGE, version, SOURCE_MEMBER, Path(tmp))
        build_epoch, database_type = check(source)
        build_date = dt.datetime.fromtimestamp(build_epoch, dt.UTC).date()
        if version and (from_version := date_from_version(version)) != build_date:
            log.warning(
                "npm version %s says %s; build_epoch says %s", version, from_version, build_date
            )
        partial = output.with_name(f".{output.name}.partial")
        shutil.copyfile(source, partial)
        partial.replace(output)
        info: dict[str, Any] = {
            "source": "geo-whois-asn-country (GeoFeed + Whois + ASN)",
            "attribution": ATTRIBUTION,
            "licence": "CC0-1.0 (package); NRO RIR statistics CC BY 4.0",
            "npm_package": NPM_PACKAGE if version else None,
            "npm_version": version,
            "npm_integrity": integrity or None,
            "build_date": build_date.isoformat(),
            "source_build_epoch": build_epoch,
            "database_type": database_type,
            "output_sha256": sha256_of(output),
            "fetched_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        }
    output.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s (%.1f MB, built %s)", output, output.stat().st_size / 1e6, build_date)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", help=f"{NPM_PACKAGE} version (default: the current one)")
    parser.add_argument("--input", type=Path, help="use this already-downloaded .mmdb")
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
