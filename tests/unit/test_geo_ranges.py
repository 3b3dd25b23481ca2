"""The provider ranges file, its build from the providers' formats, and `phi-gateway geo update`."""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import ProviderDataError, RangesError
from gateway.geo.providers import read_provider, read_region_table
from gateway.geo.ranges import Label, ProviderRanges, RangeSet, prefix_of, prune_redundant
from tests.support.geo_world import AWS, write_provider_files


def lookup(ranges: ProviderRanges, ip: str) -> tuple[str, str | None, str] | None:
    match = ranges.lookup(ipaddress.ip_address(ip))
    return None if match is None else (match.label.region, match.label.country, match.network)


def table(*entries: tuple[str, Label]) -> ProviderRanges:
    return ProviderRanges(RangeSet([prefix_of(ipaddress.ip_network(n), lb) for n, lb in entries]))


US = Label("aws", "us-east-1", "US")
IE = Label("aws", "eu-west-1", "IE")
DE = Label("oracle", "eu-frankfurt-1", "DE")


def test_nested_prefixes_paint_the_innermost_label() -> None:
    ranges = table(
        ("10.0.0.0/8", US), ("10.1.0.0/16", IE), ("10.1.2.0/24", DE), ("10.200.0.0/16", IE)
    )
    assert lookup(ranges, "10.0.0.0") == ("us-east-1", "US", "10.0.0.0/8")
    assert lookup(ranges, "10.1.1.255") == ("eu-west-1", "IE", "10.1.0.0/16")
    assert lookup(ranges, "10.1.2.7") == ("eu-frankfurt-1", "DE", "10.1.2.0/24")
    assert lookup(ranges, "10.1.3.0") == ("eu-west-1", "IE", "10.1.0.0/16")  # after the /24
    assert lookup(ranges, "10.2.0.0") == ("us-east-1", "US", "10.0.0.0/8")  # after the /16
    assert lookup(ranges, "10.200.255.255")[1] == "IE"  # type: ignore[index]
    assert lookup(ranges, "10.255.255.255")[1] == "US"  # type: ignore[index]
    assert lookup(ranges, "11.0.0.0") is None
    assert lookup(ranges, "9.255.255.255") is None


def test_a_prefix_listed_with_two_countries_has_none() -> None:
    ranges = table(("192.0.2.0/24", US), ("192.0.2.0/24", IE), ("198.51.100.0/24", US))
    match = ranges.lookup(ipaddress.ip_address("192.0.2.1"))
    assert match is not None and match.label.country is None
    assert lookup(ranges, "198.51.100.1")[1] == "US"  # type: ignore[index]


def test_file_round_trip_and_corruption(tmp_path: Path) -> None:
    files = write_provider_files(tmp_path)
    rows = read_region_table(tmp_path / "regions.tsv")
    built = read_provider("aws", files["aws"], rows)
    path = tmp_path / "aws.bin"
    built.write(path)
    again = RangeSet.read(path)
    assert sorted(again.entries) == sorted(built.entries)
    assert again.sources["aws"].date is not None
    assert again.sources["aws"].date.isoformat() == "2026-08-22"
    assert again.regions == rows
    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-3])
    with pytest.raises(RangesError, match="truncated"):
        RangeSet.read(tmp_path / "short.bin")
    (tmp_path / "junk.bin").write_bytes(b"not ranges")
    with pytest.raises(RangesError, match="magic"):
        RangeSet.read(tmp_path / "junk.bin")
    with pytest.raises(RangesError, match="cannot read"):
        RangeSet.read(tmp_path / "missing.bin")


def test_an_unmapped_region_is_an_error_not_a_guess(tmp_path: Path) -> None:
    files = write_provider_files(tmp_path)
    aws = dict(AWS)
    aws["prefixes"] = [
        *AWS["prefixes"],
        {
            "ip_prefix": "198.18.0.0/15",
            "region": "mx-central-1",
            "service": "EC2",
            "network_border_group": "mx-central-1",
        },
    ]
    files["aws"].write_text(json.dumps(aws))
    with pytest.raises(ProviderDataError) as caught:
        read_provider("aws", files["aws"], read_region_table(tmp_path / "regions.tsv"))
    assert caught.value.unmapped == ["aws:mx-central-1"]


def test_not_a_provider_file(tmp_path: Path) -> None:
    files = write_provider_files(tmp_path)
    rows = read_region_table(tmp_path / "regions.tsv")
    with pytest.raises(ProviderDataError, match="not a aws range list"):
        read_provider("aws", files["gcp"], rows)


def test_geo_update_replaces_named_providers_and_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_provider_files(tmp_path)
    ranges = tmp_path / "ranges.bin"
    config = tmp_path / "gateway.yaml"
    config.write_text(f"geo:\n  provider_ranges: {ranges}\n")
    args = ["geo", "update", "--config", str(config), "--regions", str(tmp_path / "regions.tsv")]
    every = [f"--{p}={f}" for p, f in files.items()]
    assert main([*args, *every, "--date", "2026-11-01"]) == 0
    first = RangeSet.read(ranges)
    assert set(first.sources) == {"aws", "gcp", "azure", "oracle", "cloudflare"}
    assert first.sources["azure"].date is not None
    assert first.sources["azure"].date.isoformat() == "2026-11-01"
    # A new AWS list only, mapped with the table stored in the file.
    aws = dict(AWS)
    aws["createDate"] = "2026-11-20-00-00-00"
    aws["prefixes"] = AWS["prefixes"][:1]
    newer = tmp_path / "aws-new.json"
    newer.write_text(json.dumps(aws))
    assert main(["geo", "update", "--config", str(config), "--aws", str(newer)]) == 0
    second = RangeSet.read(ranges)
    assert second.sources["aws"].date is not None
    assert second.sources["aws"].date.isoformat() == "2026-11-20"
    assert second.sources["aws"].prefixes == 2  # one IPv4 + one IPv6
    assert second.sources["gcp"] == first.sources["gcp"]
    assert "aws: 2 prefixes, 2026-11-20 (updated)" in capsys.readouterr().out
    loaded = ProviderRanges.load(ranges)
    assert lookup(loaded, "52.1.0.1")[1] == "US"  # type: ignore[index]  # eu-west-1 /16 gone
    assert lookup(loaded, "34.64.0.1")[1] == "BE"  # type: ignore[index]  # GCP kept


def test_geo_update_refuses_unmapped_regions_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_provider_files(tmp_path)
    (tmp_path / "regions.tsv").write_text("aws\tus-east-1\tUS\t\t\n")
    out = tmp_path / "out.bin"
    regions = str(tmp_path / "regions.tsv")
    code = main(["geo", "update", "--aws", str(files["aws"]), "--regions", regions, "-o", str(out)])
    assert code == 2
    assert not out.exists()
    assert "no country for region aws:eu-west-1" in capsys.readouterr().err


def test_geo_update_needs_a_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geo", "update"]) == 2
    assert "name at least one list" in capsys.readouterr().err


def test_pruning_nested_same_label_prefixes_changes_no_answer() -> None:
    rng = random.Random(23)
    labels = [US, IE, DE]
    entries = []
    for _ in range(400):
        length = rng.randrange(8, 29)
        address = rng.getrandbits(length) << (32 - length) | (10 << 24)
        address &= 0xFFFFFFFF
        net = ipaddress.IPv4Network((address >> (32 - length) << (32 - length), length))
        entries.append(prefix_of(net, rng.choice(labels)))
    pruned = prune_redundant(entries)
    assert len(pruned) < len(entries)
    full, small = ProviderRanges(RangeSet(entries)), ProviderRanges(RangeSet(pruned))
    probes = [ipaddress.IPv4Address(e[1] + rng.randrange(1 << (32 - e[2]))) for e in entries]
    probes += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2000)]
    for ip in probes:
        a, b = full.lookup(ip), small.lookup(ip)
        assert (a and a.label) == (b and b.label), ip


def test_reload_reuses_an_unchanged_ranges_file(tmp_path: Path) -> None:
    files = write_provider_files(tmp_path)
    rows = read_region_table(tmp_path / "regions.tsv")
    path = tmp_path / "ranges.bin"
    read_provider("aws", files["aws"], rows).write(path)
    first = ProviderRanges.load_shared(path)
    assert ProviderRanges.load_shared(path) is first
    read_provider("gcp", files["gcp"], rows).write(path)  # a `geo update` replaced the file
    second = ProviderRanges.load_shared(path)
    assert second is not first
    assert set(second.sources) == {"gcp"}
