"""Test MaxMind databases written with mmdb-writer: loopback addresses placed in countries,
read back through the real database reader (geoip2, as the gateway reads every database).

``build_test_mmdb`` writes the GeoIP2 schema (a Country database by default; ``kind`` "City" or
"Enterprise" for those types); ``build_ip_location_db_mmdb`` writes ip-location-db's own schema
(records ``{"country_code": "US"}``, type ``country ipvAll``), which geoip2 cannot read until
``geo_db/build_geowhois.py`` converts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# The e2e world: 127.0.0.1 is home, the others are abroad or nowhere.
DOMESTIC_IP = "127.0.0.1"
FOREIGN_IP = "127.0.0.2"  # India
FOREIGN_IP_2 = "127.0.0.3"  # Germany
TERRITORY_IP = "127.0.0.4"  # Puerto Rico: HIPAA applies, domestic
UNKNOWN_IP = "127.0.0.5"  # in no database

TEST_WORLD = {
    f"{DOMESTIC_IP}/32": "US",
    f"{FOREIGN_IP}/32": "IN",
    f"{FOREIGN_IP_2}/32": "DE",
    f"{TERRITORY_IP}/32": "PR",
    "8.8.8.0/24": "US",
    "49.44.0.0/16": "IN",
}


class _DatedWriter(MMDBWriter):
    """mmdb-writer stamps the wall clock as build_epoch; a fixed one gives a known data date."""

    def __init__(self, build_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_epoch = build_epoch

    def _build_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = super()._build_meta()
        meta["build_epoch"] = self._build_epoch
        return meta


def _by_country(networks: dict[str, str] | None) -> dict[str, list[str]]:
    by_country: dict[str, list[str]] = {}
    for cidr, country in (networks or TEST_WORLD).items():
        by_country.setdefault(country, []).append(cidr)
    return by_country


def build_test_mmdb(
    path: Path,
    networks: dict[str, str] | None = None,
    *,
    kind: Literal["Country", "City", "Enterprise"] = "Country",
    registered_only: bool = False,
) -> Path:
    """A GeoIP2-schema database of type ``PHI-Gateway-Test-<kind>``; City and Enterprise
    records carry a city and a location too. ``registered_only``: records name only the
    registered country (as GeoIP2 does for some networks)."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=f"PHI-Gateway-Test-{kind}",
        languages=["en"],
        description="phi-gateway test database",
    )
    for country, cidrs in _by_country(networks).items():
        place = {"iso_code": country, "names": {"en": country}}
        record: dict[str, Any] = {"registered_country": dict(place)}
        if not registered_only:
            record["country"] = place
        if kind != "Country":
            record["city"] = {"names": {"en": f"Capital of {country}"}}
            record["location"] = {"latitude": 1.5, "longitude": 2.5, "accuracy_radius": 100}
        writer.insert_network(IPSet(cidrs), record)
    writer.to_db_file(str(path))
    return path


def build_ip_location_db_mmdb(
    path: Path,
    networks: dict[str, str] | None = None,
    *,
    database_type: str = "country ipvAll",
    build_epoch: int = 1781725900,
) -> Path:
    """A database in ip-location-db's schema, like the npm geo-whois-asn-country file."""
    writer = _DatedWriter(
        build_epoch, ip_version=6, ipv4_compatible=True, database_type=database_type
    )
    for country, cidrs in _by_country(networks).items():
        writer.insert_network(IPSet(cidrs), {"country_code": country})
    writer.to_db_file(str(path))
    return path
