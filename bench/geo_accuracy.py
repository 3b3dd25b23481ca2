"""``python -m bench.geo_accuracy``: how often each geo source misplaces cloud regions.

For every IPv4 prefix in the providers' own region lists (``../shared/geo``: AWS EC2 and all
other AWS services, Azure ``AzureCloud.<region>``, GCP, Oracle; anycast/global prefixes left
out), one address (the prefix's first) is judged by each configuration below. Two numbers per
provider: foreign-region prefixes judged domestic (each one a path for PHI to leave) and
domestic-region prefixes judged foreign (traffic blocked for nothing). Unknown counts as
foreign, as the shipped policy treats it. Prints the README table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.config import HIPAA_JURISDICTIONS, CombineRule, load_config
from gateway.geo import GeoDatabaseReader, Locator
from gateway.geo.providers import read_provider, read_region_table
from gateway.geo.ranges import Prefix, ProviderRanges
from gateway.model import Location

REPO = Path(__file__).resolve().parents[1]
SHARED_GEO = REPO.parent / "shared" / "geo"
FILES = {
    "aws": "aws-ip-ranges.json",
    "azure": "azure-servicetags.json",
    "gcp": "gcp-cloud.json",
    "oracle": "oracle-public_ip_ranges.json",
}
UNDATED = {"azure": dt.date(2025, 11, 6)}


@dataclass(frozen=True, slots=True)
class Sample:
    provider: str
    address: str
    country: str  # where the provider says the region is


@dataclass
class Tally:
    foreign_prefixes: int = 0
    domestic_prefixes: int = 0
    foreign_judged_domestic: int = 0
    domestic_judged_foreign: int = 0

    @property
    def false_foreign_share(self) -> float:
        return (
            self.domestic_judged_foreign / self.domestic_prefixes if self.domestic_prefixes else 0
        )


@functools.cache
def _region_prefixes(shared: Path) -> dict[str, list[Prefix]]:
    regions = read_region_table(shared / "region-country.tsv")
    return {
        provider: read_provider(provider, shared / name, regions, UNDATED.get(provider)).entries
        for provider, name in FILES.items()
    }


def samples(shared: Path = SHARED_GEO, ipv6: bool = False) -> list[Sample]:
    """One address per region prefix (IPv4 unless ``ipv6``), with the region's country."""
    found: list[Sample] = []
    for provider, entries in _region_prefixes(shared).items():
        seen: set[tuple[int, int]] = set()
        for version, address, length, label in entries:
            if label.country is None or (version == 6) != ipv6 or (address, length) in seen:
                continue
            seen.add((address, length))
            ip = ipaddress.ip_address(address) if version == 4 else ipaddress.IPv6Address(address)
            found.append(Sample(provider, str(ip), label.country))
    return found


def measure(locator: Locator, items: Sequence[Sample]) -> dict[str, Tally]:
    allowed = locator.allowed
    tallies: dict[str, Tally] = {}
    for item in items:
        tally = tallies.setdefault(item.provider, Tally())
        judged = locator.locate(item.address).location
        domestic = judged is Location.DOMESTIC
        if item.country in allowed:
            tally.domestic_prefixes += 1
            tally.domestic_judged_foreign += not domestic
        else:
            tally.foreign_prefixes += 1
            tally.foreign_judged_domestic += domestic
    return tallies


def shipped_locator() -> Locator:
    """configs/gateway.yaml's geo section (its overrides only place reserved ranges)."""
    config = load_config(REPO / "configs" / "gateway.yaml")
    geo = config.geo
    assert geo.provider_ranges is not None
    return Locator(
        config.jurisdiction.allowed_countries,
        [GeoDatabaseReader(REPO / db.path) for db in geo.databases],
        geo.overrides,
        ProviderRanges.load(REPO / geo.provider_ranges),
        geo.combine,
    )


def configurations() -> list[tuple[str, Locator]]:
    """The rows of the table: each database alone, both combined, the shipped configuration."""
    shipped = shipped_locator()
    dbip, whois = (Path(db.path) for db in shipped.databases)

    def locator(paths: Sequence[Path], rule: CombineRule) -> Locator:
        readers = [GeoDatabaseReader(p) for p in paths]
        return Locator(HIPAA_JURISDICTIONS, readers, (), None, rule)

    return [
        ("DB-IP Lite alone", locator([dbip], CombineRule.FIRST)),
        ("geo-whois-asn-country alone", locator([whois], CombineRule.FIRST)),
        ("both databases, `first`", locator([dbip, whois], CombineRule.FIRST)),
        ("both databases, `any-foreign`", locator([dbip, whois], CombineRule.ANY_FOREIGN)),
        ("**shipped: provider lists + both databases, `any-foreign`**", shipped),
    ]


def table(rows: list[tuple[str, dict[str, Tally]]]) -> str:
    providers = list(FILES)
    names = {"aws": "AWS", "azure": "Azure", "gcp": "GCP", "oracle": "Oracle"}
    header = "| source | " + " | ".join(names[p] for p in providers)
    lines = [header + " |", "|---" * (len(providers) + 1) + "|"]
    for name, tallies in rows:
        cells = [
            f"{t.foreign_judged_domestic:,} / {t.domestic_judged_foreign:,}"
            for t in (tallies[p] for p in providers)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = rows[0][1]
    sizes = ", ".join(
        f"{p} {first[p].foreign_prefixes:,} foreign + {first[p].domestic_prefixes:,} US"
        for p in providers
    )
    lines.append("")
    lines.append("Cells: foreign-region prefixes judged domestic / US-region prefixes judged")
    lines.append(f"foreign. Prefixes (IPv4): {sizes}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shared", type=Path, default=SHARED_GEO)
    args = parser.parse_args(argv)
    if not (args.shared / "region-country.tsv").is_file():
        print(f"{args.shared}: provider lists not found", file=sys.stderr)
        return 1
    items = samples(args.shared)
    rows = [(name, measure(loc, items)) for name, loc in configurations()]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
