"""Read the providers' own published range lists into a RangeSet.

- AWS ``ip-ranges.json``: ``network_border_group`` when it differs from ``region`` (Local Zones
  listed under ``us-east-1`` sit in Buenos Aires, Lima, Querétaro, Santiago); ``GLOBAL`` is
  anycast (CloudFront, Global Accelerator, Route 53).
- GCP ``cloud.json``: ``scope``; ``global`` is anycast.
- Azure Service Tags: every tag with a region (``AzureCloud.<region>``, and regional service
  tags such as ``AzureMonitor.WestEurope``: 50 of their prefixes lie outside any
  ``AzureCloud.<region>`` tag); ``AzureFrontDoor.Frontend`` is Front Door's anycast edge.
  Region-less tags are aggregates (``AzureCloud``, ``Storage``) or global.
- Oracle ``public_ip_ranges.json``: ``regions[].region``.
- Cloudflare ``ips-v4`` + ``ips-v6``: every range is anycast.

Every region must have a row in the region → country table (``ZZ``: no single country):
an unmapped region is an error, never a silent guess.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from gateway.errors import ProviderDataError
from gateway.geo.ranges import Label, Network, Prefix, RangeSet, SourceInfo, prefix_of

PROVIDERS = ("aws", "gcp", "azure", "oracle", "cloudflare")
NO_COUNTRY = "ZZ"
# Azure tags with no region that are anycast edges clients connect to.
AZURE_ANYCAST_TAGS = ("AzureFrontDoor.Frontend",)

RegionRow = tuple[str, str, str, bool]  # provider, region, country or ZZ, unsure


def read_region_table(path: Path) -> list[RegionRow]:
    """``provider<TAB>region<TAB>country<TAB>unsure(?)<TAB>note`` rows; ``#`` comments."""
    rows: list[RegionRow] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ProviderDataError(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#") or line.startswith("provider\t"):
            continue
        cells = line.split("\t")
        if len(cells) < 3 or len(cells[2]) != 2 or not cells[2].isalpha():
            raise ProviderDataError(f"{path}:{number}: expected provider, region, country")
        unsure = len(cells) > 3 and cells[3].strip() == "?"
        rows.append((cells[0].strip(), cells[1].strip(), cells[2].strip().upper(), unsure))
    if not rows:
        raise ProviderDataError(f"{path}: no region rows")
    return rows


class _Mapper:
    def __init__(self, rows: Iterable[RegionRow]) -> None:
        self.table = {(p, r.lower()): (c, u) for p, r, c, u in rows}
        self.unmapped: set[str] = set()

    def has(self, provider: str, region: str) -> bool:
        return (provider, region.lower()) in self.table

    def label(self, provider: str, region: str, *, table: str | None = None) -> Label | None:
        found = self.table.get((table or provider, region.lower()))
        if found is None:
            self.unmapped.add(f"{table or provider}:{region}")
            return None
        country, unsure = found
        return Label(provider, region, None if country == NO_COUNTRY else country, unsure)


def _network(text: object) -> Network:
    if not isinstance(text, str):
        raise ValueError(f"not a prefix: {text!r}")
    return ipaddress.ip_network(text.strip(), strict=False)


def _aws(data: Any, mapper: _Mapper) -> Iterator[tuple[Network, Label]]:
    for key, field in (("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")):
        for item in data[key]:
            region, group = item["region"], item.get("network_border_group") or item["region"]
            if group != region and mapper.has("aws-nbg", group):
                label = mapper.label("aws", group, table="aws-nbg")
            elif group != region:
                mapper.unmapped.add(f"aws-nbg:{group}")
                label = None
            else:
                label = mapper.label("aws", region)
            if label is not None:
                yield _network(item[field]), label


def _gcp(data: Any, mapper: _Mapper) -> Iterator[tuple[Network, Label]]:
    for item in data["prefixes"]:
        prefix = item.get("ipv4Prefix") or item.get("ipv6Prefix")
        if (label := mapper.label("gcp", item["scope"])) is not None:
            yield _network(prefix), label


def _azure(data: Any, mapper: _Mapper) -> Iterator[tuple[Network, Label]]:
    for tag in data["values"]:
        name = tag["name"]
        if name in AZURE_ANYCAST_TAGS:
            label: Label | None = Label("azure", name, None)
        elif region := tag["properties"].get("region"):
            label = mapper.label("azure", region)
        else:
            continue  # aggregates of regional tags (AzureCloud, Storage, ...) and global tags
        if label is not None:
            for prefix in tag["properties"]["addressPrefixes"]:
                yield _network(prefix), label


def _oracle(data: Any, mapper: _Mapper) -> Iterator[tuple[Network, Label]]:
    for region in data["regions"]:
        if (label := mapper.label("oracle", region["region"])) is not None:
            for item in region["cidrs"]:
                yield _network(item["cidr"]), label


def _cloudflare(text: str) -> Iterator[tuple[Network, Label]]:
    label = Label("cloudflare", "anycast", None)
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            yield _network(line), label


def _file_date(provider: str, data: Any) -> dt.date | None:
    """The date a provider file says it was made, where it says one."""
    stamp = None
    if provider == "aws":
        stamp = data.get("createDate", "")[:10]
    elif provider == "gcp":
        stamp = data.get("creationTime", "")[:10]
    elif provider == "oracle":
        stamp = data.get("last_updated_timestamp", "")[:10]
    try:
        return dt.date.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


_PARSERS: dict[str, Callable[[Any, _Mapper], Iterator[tuple[Network, Label]]]] = {
    "aws": _aws,
    "gcp": _gcp,
    "azure": _azure,
    "oracle": _oracle,
}


def read_provider(
    provider: str, path: Path, regions: Iterable[RegionRow], date: dt.date | None = None
) -> RangeSet:
    """One provider's list as a RangeSet. ``date`` is needed where the file carries none
    (Azure, Cloudflare); otherwise the file's own date wins."""
    if provider not in PROVIDERS:
        raise ProviderDataError(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProviderDataError(f"{path}: {exc.strerror}") from None
    mapper = _Mapper(regions)
    try:
        if provider == "cloudflare":
            entries = list(_cloudflare(raw.decode("utf-8")))
            data: Any = {}
        else:
            data = json.loads(raw)
            entries = list(_PARSERS[provider](data, mapper))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProviderDataError(f"{path}: not a {provider} range list: {exc!r}") from None
    if mapper.unmapped:
        raise ProviderDataError(
            f"{path}: {len(mapper.unmapped)} region(s) without a country in the region table",
            mapper.unmapped,
        )
    if not entries:
        raise ProviderDataError(f"{path}: no prefixes")
    info = SourceInfo(
        _file_date(provider, data) or date,
        path.name,
        hashlib.sha256(raw).hexdigest(),
        len(entries),
    )
    prefixes: list[Prefix] = [prefix_of(network, label) for network, label in entries]
    return RangeSet(prefixes, {provider: info}, list(regions))
