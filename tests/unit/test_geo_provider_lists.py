"""The shipped geo configuration against the providers' full published region lists
(``../shared/geo``): no foreign-region prefix may be judged domestic, and US-region prefixes
judged foreign stay at or under 0.5%."""

from __future__ import annotations

import pytest

from bench.geo_accuracy import SHARED_GEO, measure, samples, shipped_locator
from gateway.geo import Locator

pytestmark = pytest.mark.skipif(
    not (SHARED_GEO / "region-country.tsv").is_file(),
    reason=f"provider region lists not found at {SHARED_GEO} (the shared folder is absent)",
)


@pytest.fixture(scope="module")
def shipped() -> Locator:
    return shipped_locator()


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_shipped_configuration_over_the_full_provider_lists(shipped: Locator, ipv6: bool) -> None:
    items = samples(SHARED_GEO, ipv6=ipv6)
    assert len(items) > (5000 if ipv6 else 15000)
    tallies = measure(shipped, items)
    for provider, tally in sorted(tallies.items()):
        print(
            f"{provider} IPv{6 if ipv6 else 4}: {tally.foreign_judged_domestic} of "
            f"{tally.foreign_prefixes} foreign-region prefixes judged domestic, "
            f"{tally.domestic_judged_foreign} of {tally.domestic_prefixes} US-region prefixes "
            f"judged foreign ({tally.false_foreign_share:.2%})"
        )
        assert tally.foreign_judged_domestic == 0, provider
        assert tally.false_foreign_share <= 0.005, provider
