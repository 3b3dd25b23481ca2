"""The geo keys of the config: defaults, validation errors that name the key, check-config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import CombineRule, UnknownTreatment, load_config, parse_config
from gateway.errors import ConfigError

REPO = Path(__file__).parents[2]


def test_defaults_are_the_safe_choices() -> None:
    geo = parse_config({}).geo
    assert geo.combine is CombineRule.ANY_FOREIGN
    assert geo.anycast is UnknownTreatment.FOREIGN
    assert geo.unknown is UnknownTreatment.FOREIGN
    assert geo.max_source_age_days == 45
    assert geo.provider_ranges == Path("geo_db/cloud-ranges.bin")
    assert [db.path.name for db in geo.databases] == [
        "dbip-country-lite.mmdb",
        "geo-whois-asn-country.mmdb",
    ]


def test_shipped_config_states_the_defaults() -> None:
    shipped = load_config(REPO / "configs" / "gateway.yaml").geo
    defaults = parse_config({}).geo
    for key in ("databases", "combine", "provider_ranges", "anycast", "max_source_age_days"):
        assert getattr(shipped, key) == getattr(defaults, key), key


@pytest.mark.parametrize(
    ("geo", "key", "words"),
    [
        ({"combine": "majority"}, "geo.combine", "'first' or 'any-foreign'"),
        ({"anycast": "allow"}, "geo.anycast", "'foreign' or 'domestic'"),
        ({"max_source_age_days": 0}, "geo.max_source_age_days", "greater than or equal to 1"),
        ({"databases": ["a/x.mmdb", "b/x.mmdb"]}, "geo.databases", "share a file name"),
        ({"provider_range": "x.bin"}, "geo.provider_range", "unknown key"),
    ],
)
def test_bad_geo_keys_are_named(geo: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"geo": geo})
    assert any(k == key and words in problem for k, problem in caught.value.problems), (
        caught.value.problems
    )


def test_check_config_names_an_unusable_ranges_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "ranges.bin"
    junk.write_bytes(b"nope")
    config = tmp_path / "gateway.yaml"
    data = {
        "geo": {
            "provider_ranges": str(junk),
            "databases": [str(REPO / "geo_db/dbip-country-lite.mmdb")],
        },
        "audit": {"database": str(tmp_path / "audit.db")},
    }
    config.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "geo.provider_ranges:" in err and "not a provider ranges file" in err


def test_check_config_warns_about_stale_data_but_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    data = {
        "geo": {
            "provider_ranges": str(REPO / "geo_db/cloud-ranges.bin"),
            "databases": [str(REPO / "geo_db/geo-whois-asn-country.mmdb")],
            "max_source_age_days": 1,
        },
        "audit": {"database": str(tmp_path / "audit.db")},
    }
    config.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "warning: stale geo data: db:geo-whois-asn-country: built 2026-06-17" in err
    assert "provider:oracle: built 2025-07-21" in err


def test_start_banner_names_every_source_and_warns_when_stale(tmp_path: Path) -> None:
    import argparse

    from addons.runner import banner
    from gateway.engine import Gateway

    config = parse_config(
        {
            "geo": {
                "databases": [str(REPO / "geo_db/geo-whois-asn-country.mmdb")],
                "provider_ranges": str(REPO / "geo_db/cloud-ranges.bin"),
                "max_source_age_days": 1,
            },
            "audit": {"database": str(tmp_path / "audit.db")},
        }
    )
    gateway = Gateway.from_config(config)
    try:
        text = banner(
            config, argparse.Namespace(config="x.yaml"), gateway, ["127.0.0.1:8080"], ("h", 1)
        )
    finally:
        gateway.close()
    assert "geo:     databases combined by any-foreign" in text
    assert "cloud-ranges.bin (provider ranges, " in text
    assert "geo:     WARNING stale data: db:geo-whois-asn-country: built 2026-06-17" in text
