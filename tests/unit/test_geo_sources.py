"""Several geo sources at once: provider lists, two disagreeing databases, overrides, anycast,
reserved ranges, evidence and freshness."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from gateway.config import CombineRule, Override, parse_config
from gateway.geo import GeoDatabaseReader, Locator
from gateway.geo.locator import stale_sources
from gateway.geo.ranges import ProviderRanges
from gateway.model import Destination, Location
from gateway.policy import effective_location
from tests.support.geo_world import build_world

ALLOWED = ("US", "PR", "GU", "VI", "AS", "MP", "UM")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return build_world(tmp_path_factory.mktemp("geo-world"))


def locator(
    world: tuple[Path, Path, Path],
    rule: CombineRule = CombineRule.ANY_FOREIGN,
    *,
    order: str = "alpha,beta",
    providers: bool = True,
    overrides: tuple[Override, ...] = (),
) -> Locator:
    ranges, alpha, beta = world
    paths = {"alpha": alpha, "beta": beta}
    readers = [GeoDatabaseReader(paths[name]) for name in order.split(",")]
    table = ProviderRanges.load(ranges) if providers else None
    return Locator(ALLOWED, readers, overrides, table, rule)


def where(loc: Locator, ip: str) -> tuple[Location, str | None, str]:
    judged = loc.locate(ip)
    return judged.location, judged.country, judged.reason


# -- combination rules --------------------------------------------------------------------------
def test_any_foreign_is_foreign_when_one_database_says_abroad(
    world: tuple[Path, Path, Path],
) -> None:
    for order in ("alpha,beta", "beta,alpha"):
        loc = locator(world, order=order)
        assert where(loc, "8.8.8.8") == (Location.FOREIGN, "DE", "database")
        assert loc.locate("8.8.8.8").disagreement == "databases"


def test_first_takes_the_first_answer_in_order(world: tuple[Path, Path, Path]) -> None:
    assert where(locator(world, CombineRule.FIRST), "8.8.8.8")[:2] == (Location.DOMESTIC, "US")
    beta_first = locator(world, CombineRule.FIRST, order="beta,alpha")
    assert where(beta_first, "8.8.8.8")[:2] == (Location.FOREIGN, "DE")
    # A database without an answer is skipped by both rules.
    assert where(locator(world, CombineRule.FIRST), "1.0.0.1")[:2] == (Location.FOREIGN, "JP")


def test_all_allowed_answers_stay_domestic(world: tuple[Path, Path, Path]) -> None:
    judged = locator(world).locate("9.9.9.9")
    assert judged.location is Location.DOMESTIC
    assert judged.disagreement == "databases"  # US and PR: different, both allowed


def test_nobody_knows_is_unknown(world: tuple[Path, Path, Path]) -> None:
    assert where(locator(world), "198.51.99.1") == (Location.UNKNOWN, None, "no-answer")


# -- provider lists -----------------------------------------------------------------------------
def test_provider_list_beats_both_databases(world: tuple[Path, Path, Path]) -> None:
    loc = locator(world)
    # Both databases call 52.1.x domestic-ish (alpha US); AWS lists it in eu-west-1.
    assert where(loc, "52.1.2.3") == (Location.FOREIGN, "IE", "provider")
    # alpha says IE for 52.0.x, AWS says us-east-1: the provider's own list wins.
    judged = loc.locate("52.0.9.9")
    assert (judged.location, judged.country, judged.reason) == (Location.DOMESTIC, "US", "provider")
    assert judged.disagreement == "provider-vs-database"
    assert "52.0.0.0/12" in judged.rule


def test_most_specific_prefix_wins(world: tuple[Path, Path, Path]) -> None:
    loc = locator(world)
    assert where(loc, "52.1.255.255")[1] == "IE"  # inside the /16 inside the /12
    assert where(loc, "52.5.0.1")[1] == "US"  # only the /12
    assert where(loc, "52.15.255.255")[1] == "US"
    assert where(loc, "52.16.0.0")[2] == "no-answer"  # just past the /12


def test_network_border_group_beats_region(world: tuple[Path, Path, Path]) -> None:
    # Listed under us-east-1 but its border group is the Buenos Aires Local Zone.
    assert where(locator(world), "52.2.0.1") == (Location.FOREIGN, "AR", "provider")


def test_each_provider_format(world: tuple[Path, Path, Path]) -> None:
    loc = locator(world)
    assert where(loc, "34.64.1.1")[1] == "BE"  # GCP scope
    assert where(loc, "2600:1900::5")[1] == "US"  # GCP IPv6
    assert where(loc, "2600:1f00::1")[1] == "US"  # AWS IPv6
    assert where(loc, "20.50.0.1")[1] == "NL"  # AzureCloud.westeurope
    # Regional service tags place addresses too, the more specific prefix winning.
    assert where(loc, "20.51.7.1")[1] == "NL"  # Storage.WestEurope inside AzureCloud.eastus
    assert where(loc, "20.51.8.1")[1] == "US"
    assert where(loc, "20.9.9.9")[2] == "no-answer"  # the aggregate AzureCloud tag: not used
    assert where(loc, "129.80.3.3")[1] == "US"  # Oracle
    assert where(loc, "130.61.3.3")[1] == "DE"


def test_guessed_region_country_does_not_decide_alone(world: tuple[Path, Path, Path]) -> None:
    # us-south-1 → US is a guess ('?'); alpha says DE: any-foreign makes it foreign.
    judged = locator(world).locate("52.4.0.1")
    assert (judged.location, judged.country) == (Location.FOREIGN, "DE")
    assert "(country guessed)" in judged.evidence[0].detail
    # Under `first` the guess is the first answer.
    assert where(locator(world, CombineRule.FIRST), "52.4.0.1")[1] == "US"


# -- anycast ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    ["104.16.0.1", "2606:4700::1111", "52.3.0.1", "34.65.0.1", "13.107.0.10"],
    ids=["cloudflare", "cloudflare-v6", "aws-GLOBAL", "gcp-global", "azure-front-door"],
)
def test_anycast_ranges_are_unknown(world: tuple[Path, Path, Path], address: str) -> None:
    judged = locator(world).locate(address)
    assert (judged.location, judged.country, judged.reason) == (Location.UNKNOWN, None, "anycast")


def test_policy_decides_what_anycast_means(world: tuple[Path, Path, Path]) -> None:
    loc = locator(world)
    anycast = Destination("cdn.example", 443, (loc.locate("104.16.0.1"),))
    default = parse_config({})
    assert effective_location(anycast, default) is Location.FOREIGN
    lenient = parse_config({"geo": {"anycast": "domestic"}})
    assert effective_location(anycast, lenient) is Location.DOMESTIC
    # ...but an address nobody knows is still judged by geo.unknown.
    mixed = Destination("cdn.example", 443, (*anycast.addresses, loc.locate("198.51.99.1")))
    assert effective_location(mixed, lenient) is Location.FOREIGN


# -- reserved ranges ----------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["203.0.113.9", "10.0.0.1", "100.64.1.1", "::1", "224.0.0.1"])
def test_reserved_ranges_get_no_country_from_any_source(
    world: tuple[Path, Path, Path], address: str
) -> None:
    # beta says 203.0.113.0/24 is AU and AWS "lists" it in eu-west-1: neither may place it.
    judged = locator(world).locate(address)
    assert (judged.location, judged.reason) == (Location.UNKNOWN, "reserved")
    assert [a.source for a in judged.evidence] == ["reserved"]


def test_only_an_override_places_a_reserved_range(world: tuple[Path, Path, Path]) -> None:
    override = Override.model_validate({"cidr": "203.0.113.0/24", "country": "US"})
    loc = locator(world, overrides=(override,))
    assert where(loc, "203.0.113.9") == (Location.DOMESTIC, "US", "override")


def test_override_beats_a_provider_list(world: tuple[Path, Path, Path]) -> None:
    override = Override.model_validate({"cidr": "52.1.2.0/24", "country": "US"})
    judged = locator(world, overrides=(override,)).locate("52.1.2.3")
    assert (judged.country, judged.reason) == ("US", "override")
    assert [a.source for a in judged.evidence][:2] == ["override:52.1.2.0/24", "provider:aws"]


# -- evidence -----------------------------------------------------------------------------------
def test_evidence_has_every_source_with_its_data_version(world: tuple[Path, Path, Path]) -> None:
    judged = locator(world).locate("52.1.2.3")
    answers = {a.source: (a.country, a.version) for a in judged.evidence}
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert answers["provider:aws"] == ("IE", "2026-08-22")
    assert answers["db:alpha"][0] == "US"
    assert answers["db:beta"] == (None, today)  # mmdb-writer stamps the build time
    assert judged.rule.startswith("provider list: aws eu-west-1 52.1.0.0/16")


def test_lookups_are_cached_per_address(world: tuple[Path, Path, Path]) -> None:
    loc = locator(world)
    assert loc.locate("8.8.8.8") is loc.locate("8.8.8.8")


# -- freshness ----------------------------------------------------------------------------------
def test_stale_sources_are_named(world: tuple[Path, Path, Path]) -> None:
    loc = locator(world)
    now = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    stale = stale_sources(loc, 45, now)
    names = sorted(line.split(":", 2)[1] for line in stale)
    # AWS 2026-08-22 and GCP 2026-08-20 are fresh; Azure, Oracle and Cloudflare are not.
    assert names == ["azure", "cloudflare", "oracle"]
    assert any("oracle: built 2025-07-21, 407 days old" in line for line in stale)
    assert stale_sources(loc, 3650, now) == []
    # The test databases were built just now: stale only from the far future.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=46)
    assert {line.split(":")[1] for line in stale_sources(loc, 45, later)} >= {"alpha", "beta"}


def test_locator_from_config_uses_every_part(world: tuple[Path, Path, Path]) -> None:
    ranges, alpha, beta = world
    config = parse_config(
        {"geo": {"databases": [str(alpha), str(beta)], "provider_ranges": str(ranges)}}
    )
    loc = Locator.from_config(config.jurisdiction.allowed_countries, config.geo)
    assert loc.rule is CombineRule.ANY_FOREIGN
    assert where(loc, "8.8.8.8")[1] == "DE"
    assert where(loc, "52.1.0.1")[2] == "provider"
    assert json.dumps(sorted(s.name for s in loc.sources())) == json.dumps(
        sorted(
            ["db:alpha", "db:beta"]
            + [f"provider:{p}" for p in ("aws", "azure", "cloudflare", "gcp", "oracle")]
        )
    )
