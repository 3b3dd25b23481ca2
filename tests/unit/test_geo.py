from pathlib import Path

import pytest

from gateway.config import Override, parse_config
from gateway.errors import GeoDatabaseError
from gateway.geo import GeoDatabaseReader, Locator
from gateway.model import Location
from tests.support.mmdb import build_test_mmdb

ALLOWED = ("US", "PR", "GU", "VI", "AS", "MP", "UM")


@pytest.fixture(scope="module")
def mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_mmdb(tmp_path_factory.mktemp("geo") / "world.mmdb")


def override(cidr: str, country: str) -> Override:
    return Override.model_validate({"cidr": cidr, "country": country})


def test_public_database_answers_public_addresses(mmdb: Path) -> None:
    locator = Locator(ALLOWED, [GeoDatabaseReader(mmdb)])
    home = locator.locate("8.8.8.8")
    assert (home.location, home.country, home.reason) == (Location.DOMESTIC, "US", "database")
    abroad = locator.locate("49.44.1.1")
    assert (abroad.location, abroad.country) == (Location.FOREIGN, "IN")
    assert [(a.source, a.country) for a in abroad.evidence] == [("db:world", "IN")]


def test_reserved_ranges_get_no_country_from_a_public_database(mmdb: Path) -> None:
    # The test database does place 127.0.0.2 in India, but it is not trusted for reserved space.
    locator = Locator(ALLOWED, [GeoDatabaseReader(mmdb)])
    for address in ("127.0.0.2", "10.1.2.3", "100.64.0.1", "192.0.2.1", "::1", "fe80::1"):
        judged = locator.locate(address)
        assert judged.location is Location.UNKNOWN, address
        assert judged.reason == "reserved"


def test_a_site_database_may_place_reserved_ranges(mmdb: Path) -> None:
    locator = Locator(ALLOWED, [GeoDatabaseReader(mmdb, answers_reserved=True)])
    assert locator.locate("127.0.0.2").country == "IN"
    assert locator.locate("127.0.0.4").location is Location.DOMESTIC  # PR: HIPAA applies


def test_overrides_win_and_most_specific_first(mmdb: Path) -> None:
    locator = Locator(
        ALLOWED,
        [GeoDatabaseReader(mmdb)],
        [override("10.0.0.0/8", "US"), override("10.9.0.0/16", "IN"), override("8.8.8.0/24", "DE")],
    )
    assert locator.locate("10.1.1.1").country == "US"
    assert locator.locate("10.9.1.1").country == "IN"
    judged = locator.locate("8.8.8.8")
    assert (judged.country, judged.reason) == ("DE", "override")


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:49.44.1.1",
        "2002:312c:101::1",
        "64:ff9b::312c:101",
        # Teredo: the client address is stored inverted in the last 32 bits.
        "2001:0:4136:e378:8000:63bf:ced3:fefe",
    ],
)
def test_ipv6_forms_of_an_ipv4_host_are_judged_as_that_host(mmdb: Path, address: str) -> None:
    # 49.44.1.1 (IN) as IPv4-mapped, 6to4 and NAT64; 49.44.1.1 inverted for Teredo.
    locator = Locator(ALLOWED, [GeoDatabaseReader(mmdb)])
    assert locator.locate(address).country == "IN"


def test_first_database_with_an_answer_wins(tmp_path: Path, mmdb: Path) -> None:
    other = build_test_mmdb(tmp_path / "other.mmdb", {"49.44.0.0/16": "SG", "1.1.1.0/24": "AU"})
    locator = Locator(ALLOWED, [GeoDatabaseReader(other), GeoDatabaseReader(mmdb)])
    assert locator.locate("49.44.1.1").country == "SG"
    assert locator.locate("8.8.8.8").country == "US"  # the first had no answer
    unknown = locator.locate("203.0.113.250")
    assert unknown.location is Location.UNKNOWN


def test_garbage_address_is_unknown(mmdb: Path) -> None:
    assert Locator(ALLOWED, [GeoDatabaseReader(mmdb)]).locate("not-an-ip").location is (
        Location.UNKNOWN
    )


def test_unusable_database_files(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match="cannot open"):
        GeoDatabaseReader(tmp_path / "missing.mmdb")
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database")
    with pytest.raises(GeoDatabaseError):
        GeoDatabaseReader(junk)


def test_sidecar_build_date_and_attribution(tmp_path: Path) -> None:
    db = build_test_mmdb(tmp_path / "embedded.mmdb")
    (tmp_path / "embedded.json").write_text(
        '{"build_date": "2026-06-01", "attribution": "IP geolocation by DB-IP"}'
    )
    reader = GeoDatabaseReader(db)
    assert reader.build_time.date().isoformat() == "2026-06-01"
    assert "IP geolocation by DB-IP" in reader.describe()


def test_locator_from_config(mmdb: Path) -> None:
    config = parse_config(
        {"geo": {"databases": [str(mmdb)], "overrides": [{"cidr": "127.0.0.0/8", "country": "US"}]}}
    )
    locator = Locator.from_config(config.jurisdiction.allowed_countries, config.geo)
    assert locator.locate("127.0.0.2").location is Location.DOMESTIC
