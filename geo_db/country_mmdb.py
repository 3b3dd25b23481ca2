"""Rewrite an ip-location-db country database (records ``{"country_code": "US"}``) in the
GeoIP2-Country schema (``{"country": {"iso_code": "US", ...}, "registered_country": ...}``), so
that ``geoip2.database.Reader(path).country(ip)`` reads it. Shared by ``build_dbip.py`` and
``build_geowhois.py``.

The output is deterministic: networks are merged per country and inserted in country order, and
``build_epoch`` is the source's, so converting the same source twice gives the same bytes.
``verify`` re-reads the output through geoip2 and checks the first and last address of every
source network against the source's country.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import maxminddb
from mmdb_writer import MMDBWriter
from netaddr import IPNetwork, IPSet
from npm_fetch import BuildError, sha256_of

log = logging.getLogger("country_mmdb")

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
    try:
        opened = maxminddb.open_database(str(path))
    except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise BuildError(f"{path}: not a MaxMind database: {exc}") from None
    with opened as reader:
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


def write_mmdb(data: SourceData, output: Path, description: str, database_type: str) -> int:
    """Write the GeoIP2-Country-schema database; returns the number of CIDRs inserted.

    ``database_type`` must contain "Country": geoip2's ``Reader.country()`` refuses others."""
    if "Country" not in database_type:
        raise BuildError(f"database type {database_type!r}: geoip2 reads only *Country* types")
    writer = _FixedEpochWriter(
        build_epoch=data.build_epoch or int(time.time()),
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
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


def conversion_facts(
    data: SourceData, output: Path, inserted: int, database_type: str
) -> dict[str, Any]:
    """What every converter records of the database it wrote, in its sidecar JSON."""
    return {
        "database_type": database_type,
        "output_sha256": sha256_of(output),
        "networks": inserted,
        "source_networks": data.networks,
        "source_ipv4_networks": data.ipv4_networks,
        "source_ipv6_networks": data.ipv6_networks,
        "countries": len(data.by_country),
        "converted_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }


def verify(output: Path, data: SourceData) -> None:
    """Every source network's first and last address must get the same country back, read
    through geoip2 (the gateway's reader)."""
    mismatches: list[str] = []
    with geoip2.database.Reader(str(output)) as reader:
        for code, networks in data.by_country.items():
            for network in networks:
                make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
                for ip in (make(network.first), make(network.last)):
                    try:
                        got = reader.country(ip).country.iso_code
                    except geoip2.errors.AddressNotFoundError:
                        got = None
                    if got != code:
                        mismatches.append(f"{ip}: expected {code}, got {got!r}")
    if mismatches:
        raise BuildError(
            f"{output}: {len(mismatches)} lookups disagree with the source, e.g. "
            + "; ".join(mismatches[:5])
        )
