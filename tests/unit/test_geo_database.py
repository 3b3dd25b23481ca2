"""One database, read through geoip2: Country, City and Enterprise types, ip-location-db files
(refused as they come, readable once geo_db/build_geowhois.py converts them), the embedded
databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import GeoDatabaseError
from gateway.geo import GeoDatabaseReader, Locator
from gateway.model import Location
from tests.support.mmdb import (
    DOMESTIC_IP,
    FOREIGN_IP,
    UNKNOWN_IP,
    build_ip_location_db_mmdb,
    build_test_mmdb,
)

REPO = Path(__file__).resolve().parents[2]
ALLOWED = ("US", "PR")
SMALL_WORLD = {
    "8.8.8.0/24": "US",
    "49.44.0.0/16": "IN",
    "2001:4860::/32": "US",
    "2a00:1450::/32": "IE",
    f"{FOREIGN_IP}/32": "IN",
    f"{DOMESTIC_IP}/32": "US",
}


def answers(reader: GeoDatabaseReader) -> dict[str, str | None]:
    addresses = ("8.8.8.8", "49.44.1.1", "2001:4860::1", "2a00:1450::1", FOREIGN_IP, UNKNOWN_IP)
    return {address: reader.country(address) for address in addresses}


EXPECTED = {
    "8.8.8.8": "US",
    "49.44.1.1": "IN",
    "2001:4860::1": "US",
    "2a00:1450::1": "IE",
    FOREIGN_IP: "IN",
    UNKNOWN_IP: None,
}


@pytest.mark.parametrize("kind", ["Country", "City", "Enterprise"])
def test_geoip2_database_types(tmp_path: Path, kind: str) -> None:
    path = build_test_mmdb(tmp_path / f"{kind}.mmdb", SMALL_WORLD, kind=kind)  # type: ignore[arg-type]
    reader = GeoDatabaseReader(path)
    assert reader.database_type == f"PHI-Gateway-Test-{kind}"
    assert answers(reader) == EXPECTED
    reader.close()


def test_registered_country_when_no_country(tmp_path: Path) -> None:
    path = build_test_mmdb(tmp_path / "reg.mmdb", SMALL_WORLD, registered_only=True)
    assert answers(GeoDatabaseReader(path)) == EXPECTED


def test_not_an_address_and_ipv6_in_an_ipv4_database_have_no_answer(tmp_path: Path) -> None:
    reader = GeoDatabaseReader(build_test_mmdb(tmp_path / "w.mmdb", SMALL_WORLD))
    for junk in ("not-an-ip", "", "999.1.1.1", "8.8.8.8/24"):
        assert reader.country(junk) is None, junk


def test_ip_location_db_file_is_refused_with_how_to_convert(tmp_path: Path) -> None:
    raw = build_ip_location_db_mmdb(tmp_path / "asn-country.mmdb", SMALL_WORLD)
    with pytest.raises(GeoDatabaseError) as refused:
        GeoDatabaseReader(raw)
    message = str(refused.value)
    assert str(raw) in message
    assert "'country ipvAll'" in message
    assert "geo_db/build_geowhois.py --input" in message


def test_a_country_type_whose_records_carry_no_country_is_refused(tmp_path: Path) -> None:
    # Renaming the type does not make ip-location-db records readable: geoip2 ignores
    # "country_code", so every answer would silently be empty.
    raw = build_ip_location_db_mmdb(
        tmp_path / "renamed.mmdb", SMALL_WORLD, database_type="Renamed-Country"
    )
    with pytest.raises(GeoDatabaseError, match="carry no country"):
        GeoDatabaseReader(raw)


def test_a_site_database_of_private_ranges_only_opens(tmp_path: Path) -> None:
    site = build_test_mmdb(tmp_path / "site.mmdb", {"10.20.0.0/16": "IN"})
    assert GeoDatabaseReader(site, answers_reserved=True).country("10.20.1.1") == "IN"


def convert(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    """The admin's command: ``geo_db/build_geowhois.py --input FILE --output FILE``."""
    script = REPO / "geo_db" / "build_geowhois.py"
    names = ("--source", "test ip-location-db", "--attribution", "Test data", "--licence", "CC0")
    return subprocess.run(
        [sys.executable, str(script), "--input", str(source), "--output", str(output), *names],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_converted_ip_location_db_file_reads_through_geoip2(tmp_path: Path) -> None:
    raw = build_ip_location_db_mmdb(tmp_path / "asn-country.mmdb", SMALL_WORLD)
    first = tmp_path / "one" / "asn-country.mmdb"
    done = convert(raw, first)
    assert done.returncode == 0, done.stderr
    reader = GeoDatabaseReader(first)
    assert reader.database_type == "ip-location-db-Country"
    assert answers(reader) == EXPECTED
    assert reader.version == "2026-06-17"  # the source's build_epoch, via the sidecar
    assert "Test data" in reader.describe()
    info = json.loads(first.with_suffix(".json").read_text())
    assert info["source_database_type"] == "country ipvAll"
    assert info["source_networks"] == len(SMALL_WORLD)

    # Deterministic: converting again gives the same bytes.
    second = tmp_path / "two" / "asn-country.mmdb"
    assert convert(raw, second).returncode == 0
    assert first.read_bytes() == second.read_bytes()

    located = Locator(ALLOWED, [reader]).locate("49.44.1.1")
    assert (located.location, located.country) == (Location.FOREIGN, "IN")


def test_converting_something_else_fails_cleanly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database")
    done = convert(junk, tmp_path / "out.mmdb")
    assert done.returncode == 1
    assert "not a MaxMind database" in done.stderr
    assert not (tmp_path / "out.mmdb").exists()


@pytest.mark.parametrize(
    ("name", "database_type"),
    [
        ("dbip-country-lite", "DBIP-Country-Lite"),
        ("geo-whois-asn-country", "ip-location-db-Country"),
    ],
)
def test_embedded_databases_read_through_geoip2(name: str, database_type: str) -> None:
    reader = GeoDatabaseReader(REPO / "geo_db" / f"{name}.mmdb")
    assert reader.database_type == database_type
    assert reader.country("8.8.8.8") == "US"
    assert reader.attribution
    reader.close()
