"""Cloud-provider prefix lists: where each provider says its address ranges are.

A ranges file holds every provider prefix with a label (provider, region, country), the
region → country table it was built with and each provider list's date. It is written by
``geo_db/build_cloud_ranges.py`` and ``phi-gateway geo update`` and read at start:

```
PHI-GATEWAY-RANGES 1\\n
{"sources": {...}, "labels": [...], "regions": [...], "v4": N4, "v6": N6}\\n
N4 x (IPv4 address: 4 bytes, prefix length: 1, label index: 2)   big-endian
N6 x (IPv6 address: 16 bytes, prefix length: 1, label index: 2)
```

Loading flattens the nested prefixes into disjoint sorted intervals, each carrying the label of
the most specific prefix that covers it; a lookup is one binary search.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import RangesError

MAGIC = b"PHI-GATEWAY-RANGES 1\n"
_V4 = struct.Struct(">IBH")
_V6 = struct.Struct(">QQBH")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True, order=True)
class Label:
    """Where one provider prefix is: a region and its country (None: no single country)."""

    provider: str  # "aws", "gcp", "azure", "oracle", "cloudflare"
    region: str  # "eu-west-1", "us-east-1-bue-1", "global", "AzureFrontDoor.Frontend"
    country: str | None  # ISO code; None for global/anycast ranges
    unsure: bool = False  # the region → country row is a guess

    @property
    def anycast(self) -> bool:
        return self.country is None

    @property
    def source(self) -> str:
        return f"provider:{self.provider}"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One provider list inside a ranges file: its date and what it contributed."""

    date: dt.date | None
    file: str = ""
    sha256: str = ""
    prefixes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat() if self.date else None,
            "file": self.file,
            "sha256": self.sha256,
            "prefixes": self.prefixes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceInfo:
        date = data.get("date")
        return cls(
            dt.date.fromisoformat(date) if date else None,
            str(data.get("file", "")),
            str(data.get("sha256", "")),
            int(data.get("prefixes", 0)),
        )


# One listed prefix: IP version, first address as an int, prefix length, label.
Prefix = tuple[int, int, int, Label]


def prefix_of(network: Network, label: Label) -> Prefix:
    return (network.version, int(network.network_address), network.prefixlen, label)


def network_of(prefix: Prefix) -> Network:
    version, address, length, _ = prefix
    if version == 4:
        return ipaddress.IPv4Network((address, length))
    return ipaddress.IPv6Network((address, length))


class Match:
    """The most specific listed prefix that holds an address."""

    __slots__ = ("_network", "prefix")

    def __init__(self, prefix: Prefix) -> None:
        self.prefix = prefix
        self._network = ""

    @property
    def label(self) -> Label:
        return self.prefix[3]

    @property
    def network(self) -> str:
        """The prefix as text, made on first use (most prefixes are never asked about)."""
        if not self._network:
            self._network = str(network_of(self.prefix))
        return self._network


@dataclass
class RangeSet:
    """Provider prefixes with labels, and where they came from (what a ranges file holds)."""

    entries: list[Prefix] = field(default_factory=list)
    sources: dict[str, SourceInfo] = field(default_factory=dict)
    # The region → country table used (provider, region, country or "ZZ", unsure), kept so
    # that ``geo update`` can map a newly downloaded list without the original table.
    regions: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def replace_provider(self, provider: str, other: RangeSet) -> None:
        """Take one provider's entries and source info from ``other``, keep everyone else's."""
        self.entries = [e for e in self.entries if e[3].provider != provider]
        self.entries += [e for e in other.entries if e[3].provider == provider]
        self.sources.pop(provider, None)
        if provider in other.sources:
            self.sources[provider] = other.sources[provider]

    def write(self, path: Path) -> None:
        self.entries = prune_redundant(self.entries)
        labels = sorted({entry[3] for entry in self.entries})
        index = {label: i for i, label in enumerate(labels)}
        v4 = bytearray()
        v6 = bytearray()
        n4 = n6 = 0
        for version, address, length, label in sorted(self.entries):
            if version == 4:
                v4 += _V4.pack(address, length, index[label])
                n4 += 1
            else:
                v6 += _V6.pack(address >> 64, address & (2**64 - 1), length, index[label])
                n6 += 1
        header = {
            "sources": {name: info.to_json() for name, info in sorted(self.sources.items())},
            "labels": [[lb.provider, lb.region, lb.country, lb.unsure] for lb in labels],
            "regions": [list(row) for row in self.regions],
            "v4": n4,
            "v6": n6,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("wb") as out:
                out.write(MAGIC)
                out.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
                out.write(v4)
                out.write(v6)
            os.replace(partial, path)
        except OSError as exc:
            raise RangesError(f"{path}: cannot write: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)

    @classmethod
    def read(cls, path: Path) -> RangeSet:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RangesError(f"{path}: cannot read provider ranges: {exc.strerror}") from None
        if not data.startswith(MAGIC):
            raise RangesError(f"{path}: not a provider ranges file (bad magic)")
        end = data.find(b"\n", len(MAGIC))
        try:
            header = json.loads(data[len(MAGIC) : end])
            labels = [Label(str(p), str(r), c, bool(u)) for p, r, c, u in header["labels"]]
            n4, n6 = int(header["v4"]), int(header["v6"])
            sources = {k: SourceInfo.from_json(v) for k, v in header["sources"].items()}
            regions = [(str(p), str(r), str(c), bool(u)) for p, r, c, u in header["regions"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RangesError(f"{path}: unreadable header: {exc}") from None
        body = memoryview(data)[end + 1 :]
        if end < 0 or len(body) != n4 * _V4.size + n6 * _V6.size:
            raise RangesError(f"{path}: truncated ({len(body)} bytes of prefixes)")
        try:
            entries: list[Prefix] = [
                (4, address, length, labels[i])
                for address, length, i in _V4.iter_unpack(body[: n4 * _V4.size])
            ]
            entries += [
                (6, (high << 64) | low, length, labels[i])
                for high, low, length, i in _V6.iter_unpack(body[n4 * _V4.size :])
            ]
        except IndexError as exc:
            raise RangesError(f"{path}: corrupt prefix: {exc}") from None
        if any(e[2] > (32 if e[0] == 4 else 128) for e in entries):
            raise RangesError(f"{path}: corrupt prefix length")
        return cls(entries, sources, regions)


class ProviderRanges:
    """Most-specific-prefix lookup over a RangeSet (disjoint intervals, binary search)."""

    def __init__(self, ranges: RangeSet, path: Path | None = None) -> None:
        self.path = path
        self.sources = dict(ranges.sources)
        self.prefixes = len(ranges.entries)
        self._tables = {4: _Intervals(), 6: _Intervals()}
        for version, bits in ((4, 32), (6, 128)):
            chosen = _dedupe(e for e in ranges.entries if e[0] == version)
            self._tables[version].build(chosen, bits)

    @classmethod
    def load(cls, path: Path) -> ProviderRanges:
        return cls(RangeSet.read(path), path)

    @classmethod
    def load_shared(cls, path: Path) -> ProviderRanges:
        """``load``, but a policy reload (SIGHUP) reuses the table while the file is unchanged
        (same inode, size and modification time): building it takes a few hundred ms."""
        try:
            stat = path.stat()
        except OSError:
            return cls.load(path)  # raises the RangesError that names the problem
        key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = _LOADED.get(key)
        if cached is None:
            cached = cls.load(path)
            _LOADED.clear()  # keep only the latest table
            _LOADED[key] = cached
        return cached

    def lookup(self, ip: IPAddress) -> Match | None:
        return self._tables[ip.version].find(int(ip))

    def describe(self) -> str:
        dates = ", ".join(
            f"{name} {info.date.isoformat() if info.date else 'undated'}"
            for name, info in sorted(self.sources.items())
        )
        return f"{self.path} (provider ranges, {self.prefixes} prefixes: {dates})"


_LOADED: dict[tuple[str, int, int, int], ProviderRanges] = {}


def prune_redundant(entries: Iterable[Prefix]) -> list[Prefix]:
    """Drop prefixes that sit inside a listed prefix with the same label (Azure lists most
    addresses twice: in ``AzureCloud.<region>`` and again in each regional service tag).
    Lookups answer exactly as before; the file and the load get smaller. Conflicting
    duplicates are resolved first (``_dedupe``), so pruning cannot pick a side."""
    kept: list[Prefix] = []
    stack: list[tuple[int, int, Label]] = []  # (version, last address, label) of open prefixes
    for prefix in sorted(_dedupe(entries), key=lambda e: (e[0], e[1], e[2])):
        version, address, length, label = prefix
        while stack and (stack[-1][0] != version or stack[-1][1] < address):
            stack.pop()
        if stack and stack[-1][2] == label:
            continue
        kept.append(prefix)
        bits = 32 if version == 4 else 128
        stack.append((version, address + (1 << (bits - length)) - 1, label))
    return kept


def _dedupe(entries: Iterable[Prefix]) -> list[Prefix]:
    """One label per prefix. A prefix listed twice with different countries is ambiguous:
    it gets no country (treated like anycast: unknown), never one of the two at random."""
    by_network: dict[tuple[int, int, int], Label] = {}
    for version, address, length, label in entries:
        key = (version, address, length)
        known = by_network.get(key)
        if known is None or known == label:
            by_network[key] = label
        elif known.country != label.country:
            by_network[key] = Label(label.provider, "conflicting-regions", None)
        elif label.unsure < known.unsure:
            by_network[key] = label
    return [(*key, label) for key, label in by_network.items()]


class _Intervals:
    __slots__ = ("ends", "matches", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.matches: list[Match] = []

    def _emit(self, start: int, end: int, match: Match) -> None:
        if start > end:
            return
        if self.ends and self.ends[-1] == start - 1 and self.matches[-1] is match:
            self.ends[-1] = end
            return
        self.starts.append(start)
        self.ends.append(end)
        self.matches.append(match)

    def build(self, entries: Sequence[Prefix], bits: int) -> None:
        """CIDRs are either nested or disjoint: a sweep with a stack of open prefixes paints
        each stretch of addresses with the innermost prefix that covers it."""
        spans = [
            (prefix[1], prefix[1] + (1 << (bits - prefix[2])) - 1, Match(prefix))
            for prefix in entries
        ]
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[int, Match]] = []
        position = 0
        for start, end, match in spans:
            while stack and stack[-1][0] < start:
                top_end, top = stack.pop()
                self._emit(position, top_end, top)
                position = top_end + 1
            if stack:
                self._emit(position, start - 1, stack[-1][1])
            position = start
            stack.append((end, match))
        while stack:
            top_end, top = stack.pop()
            self._emit(position, top_end, top)
            position = top_end + 1

    def find(self, value: int) -> Match | None:
        i = bisect.bisect_right(self.starts, value) - 1
        if i >= 0 and value <= self.ends[i]:
            return self.matches[i]
        return None
