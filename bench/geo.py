"""``python -m bench.geo``: load time and lookup latency of the shipped geo configuration.

Loads ``configs/gateway.yaml``'s geo section (both embedded databases and the provider ranges),
timing each part, then judges a fixed, seeded mix of addresses: one inside each of a sample of
provider prefixes and random public IPv4/IPv6 addresses. Reports p50/p99/max of

- a cold lookup (every source asked and combined: what the first request to an address costs),
- a warm lookup (the combined answer cached per address: every later request).

The target from the jurisdiction issue: p99 of a lookup (all sources) ≤ 20 µs after warm-up.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import sys
import time
from pathlib import Path

from gateway.config import load_config
from gateway.geo import GeoDatabaseReader, Locator
from gateway.geo.ranges import ProviderRanges, RangeSet
from gateway.geo.reserved import is_reserved

REPO = Path(__file__).resolve().parents[1]
TARGET_P99_US = 20.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def addresses(ranges_path: Path, count: int, seed: int = 7) -> list[str]:
    """Half inside provider prefixes, half random public addresses (a quarter IPv6)."""
    rng = random.Random(seed)
    entries = RangeSet.read(ranges_path).entries
    chosen: list[str] = []
    for version, address, length, _ in rng.sample(entries, min(count // 2, len(entries))):
        bits = 32 if version == 4 else 128
        offset = rng.randrange(1 << min(bits - length, 64))
        ip = address + offset
        chosen.append(str(ipaddress.IPv4Address(ip) if version == 4 else ipaddress.IPv6Address(ip)))
    while len(chosen) < count:
        if rng.random() < 0.25:
            candidate: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(
                (0x2000 << 112) | rng.getrandbits(124)
            )
        else:
            candidate = ipaddress.IPv4Address(rng.getrandbits(32))
        if not is_reserved(candidate):
            chosen.append(str(candidate))
    rng.shuffle(chosen)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "gateway.yaml")
    parser.add_argument("--addresses", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5, help="warm passes over the addresses")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    geo = config.geo

    print(f"geo sources of {args.config}:")
    readers = []
    for db in geo.databases:
        started = time.perf_counter()
        readers.append(GeoDatabaseReader(REPO / db.path))
        size = (REPO / db.path).stat().st_size / 1e6
        print(f"  open {db.path}: {(time.perf_counter() - started) * 1e3:.1f} ms ({size:.1f} MB)")
    ranges = None
    if geo.provider_ranges is not None:
        path = REPO / geo.provider_ranges
        started = time.perf_counter()
        ranges = ProviderRanges.load(path)
        print(
            f"  load {geo.provider_ranges}: {(time.perf_counter() - started) * 1e3:.1f} ms "
            f"({path.stat().st_size / 1e3:.0f} KB, {ranges.prefixes} prefixes)"
        )
    locator = Locator(
        config.jurisdiction.allowed_countries, readers, geo.overrides, ranges, geo.combine
    )
    sample = addresses(REPO / (geo.provider_ranges or "geo_db/cloud-ranges.bin"), args.addresses)

    cold: list[float] = []
    cpu_started = time.process_time()
    for address in sample:
        started = time.perf_counter_ns()
        locator.locate(address)
        cold.append((time.perf_counter_ns() - started) / 1e3)
    cold_cpu = (time.process_time() - cpu_started) / len(sample) * 1e6
    warm: list[float] = []
    for _ in range(args.rounds):
        for address in sample:
            started = time.perf_counter_ns()
            locator.locate(address)
            warm.append((time.perf_counter_ns() - started) / 1e3)

    print(f"lookups over {len(sample)} addresses ({geo.combine.value}, all sources), µs:")
    print("  kind                    p50     p99     max")
    for name, values in (("cold (all sources)", cold), ("warm (cached answer)", warm)):
        print(
            f"  {name:<22}{statistics.median(values):>6.2f}  {_percentile(values, 0.99):>6.2f}"
            f"  {max(values):>7.1f}"
        )
    print(f"  cold CPU time per lookup (mean, less sensitive to other load): {cold_cpu:.1f} µs")
    p99 = _percentile(warm, 0.99)
    verdict = "met" if p99 <= TARGET_P99_US else "NOT met"
    print(f"target: warm p99 <= {TARGET_P99_US:.0f} µs: {verdict} ({p99:.2f} µs)")
    locator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
