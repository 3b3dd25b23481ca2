"""Test MaxMind databases written with mmdb-writer: loopback addresses placed in countries,
read back through the real database reader (maxminddb)."""

from __future__ import annotations

from pathlib import Path

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


def build_test_mmdb(path: Path, networks: dict[str, str] | None = None) -> Path:
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="PHI-Gateway-Test-Country",
        languages=["en"],
        description="phi-gateway test database",
    )
    by_country: dict[str, list[str]] = {}
    for cidr, country in (networks or TEST_WORLD).items():
        by_country.setdefault(country, []).append(cidr)
    for country, cidrs in by_country.items():
        record = {
            "country": {"iso_code": country, "names": {"en": country}},
            "registered_country": {"iso_code": country, "names": {"en": country}},
        }
        writer.insert_network(IPSet(cidrs), record)
    writer.to_db_file(str(path))
    return path
