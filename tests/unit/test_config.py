from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

REPO = Path(__file__).parents[2]


def problems(data: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_empty_config_gets_safe_defaults() -> None:
    config = parse_config({})
    assert config.jurisdiction.allowed_countries == ("US", "PR", "GU", "VI", "AS", "MP", "UM")
    assert config.geo.unknown.value == "foreign"
    assert config.policy.mode.value == "enforce"
    assert config.policy.foreign_phi_action.value == "block"
    assert config.limits.max_body_bytes == 32 * 1024 * 1024


def test_shipped_config_is_valid_and_maps_private_ranges_in_config() -> None:
    config = load_config(REPO / "configs" / "gateway.yaml")
    assert {str(o.cidr) for o in config.geo.overrides} >= {"10.0.0.0/8", "192.168.0.0/16"}
    assert config.proxy.listen == "127.0.0.1:8080"
    assert config.admin.listen == "127.0.0.1:9464"


def test_partial_config_merges_with_defaults() -> None:
    config = parse_config({"policy": {"mode": "monitor"}})
    assert config.policy.mode.value == "monitor"
    assert config.limits.max_body_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"policy": {"mode": "enforcing"}}, "policy.mode", "'enforce' or 'monitor'"),
        (
            {"jurisdiction": {"allowed_countires": ["US"]}},
            "jurisdiction.allowed_countires",
            "unknown key",
        ),
        (
            {"jurisdiction": {"allowed_countries": ["USA"]}},
            "jurisdiction.allowed_countries[0]",
            "pattern",
        ),
        (
            {"geo": {"overrides": [{"cidr": "10.0.0.0/33", "country": "US"}]}},
            "geo.overrides[0].cidr",
            "not a CIDR",
        ),
        (
            {"policy": {"allow_destinations": [{"host": "x.example"}]}},
            "policy.allow_destinations[0].reason",
            "required",
        ),
        (
            {"policy": {"deny_destinations": [{"reason": "r"}]}},
            "policy.deny_destinations[0]",
            "exactly one",
        ),
        ({"proxy": {"listen": "8080"}}, "proxy.listen", "HOST:PORT"),
        ({"limits": {"max_body_bytes": -1}}, "limits.max_body_bytes", "greater than"),
        ({"geo": {"unknown": "maybe"}}, "geo.unknown", "'foreign' or 'domestic'"),
        ({"proxy": {"inspect_domestc": []}}, "proxy.inspect_domestc", "unknown key"),
        (
            {"proxy": {"inspect_domestic": [{"host": "x.example"}]}},
            "proxy.inspect_domestic[0].reason",
            "required",
        ),
        ({"proxy": {"relay_domestic_tls": "maybe"}}, "proxy.relay_domestic_tls", "boolean"),
    ],
)
def test_errors_name_the_key_and_the_problem(data: object, key: str, words: str) -> None:
    found = problems(data)
    assert any(k == key and words in p for k, p in found), found


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  mode: [enforce\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.problems[0][0].startswith("line ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "nope.yaml")


def test_policy_version_changes_with_policy() -> None:
    assert parse_config({}).version == parse_config({}).version
    assert parse_config({}).version != parse_config({"policy": {"mode": "monitor"}}).version


def test_destination_rules_match_hosts_wildcards_and_cidrs() -> None:
    config = parse_config(
        {
            "policy": {
                "allow_destinations": [
                    {"host": "*.Vendor.example", "reason": "BAA"},
                    {"cidr": "203.0.113.0/24", "port": 443, "reason": "BAA"},
                ]
            }
        }
    )
    wildcard, cidr = config.policy.allow_destinations
    assert wildcard.matches("api.vendor.example", 443, ())
    assert wildcard.matches("a.b.VENDOR.example.", 443, ())
    assert not wildcard.matches("vendor.example", 443, ())
    assert not wildcard.matches("evilvendor.example", 443, ())
    assert cidr.matches("x", 443, ("203.0.113.9",))
    assert not cidr.matches("x", 80, ("203.0.113.9",))
    # Every address must be inside: one foreign address in the answer set spoils it.
    assert not cidr.matches("x", 443, ("203.0.113.9", "198.51.100.1"))


@pytest.mark.parametrize(
    "mode",
    [
        "upstream:http://proxy:3128",
        "wireguard",
        "dns",
        "reverse:udp://10.0.0.1:53",
        "reverse:dns://10.0.0.1",
        "reverse:quic://x:443",
        "local",
        "tun",
    ],
)
def test_modes_the_gateway_cannot_inspect_are_refused(mode: str) -> None:
    found = problems({"proxy": {"modes": [mode]}})
    assert found[0][0] == "proxy.modes[0]"
    assert "not supported" in found[0][1]


@pytest.mark.parametrize(
    "mode",
    [
        "regular",
        "regular@8081",
        "transparent",
        "socks5",
        "reverse:https://x.example",
        "reverse:tcp://10.0.0.1:2575@2575",
        "reverse:tls://x.example:6661",
    ],
)
def test_inspectable_modes_are_accepted(mode: str) -> None:
    assert parse_config({"proxy": {"modes": [mode]}}).proxy.modes == (mode,)
