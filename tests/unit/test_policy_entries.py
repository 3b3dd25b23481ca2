"""Allow/deny-list entries that expire, name their ticket and owner, and apply to some clients
only; ``policy explain``; the expiry's record in the trail."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import REGISTRY

from gateway import entry_expiry, metrics
from gateway.audit import AuditStore
from gateway.audit.store import ChainSettings
from gateway.audit.verify import verify
from gateway.cli import main
from gateway.config import GatewayConfig, parse_config, parse_config_text
from gateway.errors import ConfigError
from gateway.model import Action, Destination, Jurisdiction, Location, split_client
from gateway.policy import client_address, decide, explain
from tests.unit.test_audit_chain import KEY, SECRET
from tests.unit.test_policy import CLEAN, PHI

REPO = Path(__file__).resolve().parents[2]
VENDOR = Destination(
    "ai.vendor.example", 443, (Jurisdiction("203.0.113.7", Location.FOREIGN, "IN"),)
)
NOON = dt.datetime(2027, 3, 30, 12, 0, tzinfo=dt.UTC).timestamp()


def config(**policy: Any) -> GatewayConfig:
    return parse_config({"policy": policy})


def problems_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "t.yaml")
    return caught.value.problems


def allow(**entry: Any) -> dict[str, Any]:
    return {"host": "ai.vendor.example", "reason": "BAA 2026-14", **entry}


# -- expires, ticket, owner ----------------------------------------------------------------------
def test_a_date_expires_at_the_start_of_that_day_utc() -> None:
    rule = config(allow_destinations=[allow(expires="2027-03-31")]).policy.allow_destinations[0]
    assert rule.expires == dt.datetime(2027, 3, 31, tzinfo=dt.UTC)
    # YAML's own date type reads the same.
    text = (
        "policy:\n  allow_destinations:\n    - {host: a.example, reason: r, expires: 2027-03-31}\n"
    )
    parsed = parse_config_text(text, "t").policy.allow_destinations[0]
    assert parsed.expires_at == rule.expires_at


def test_a_time_needs_its_zone_and_the_error_names_the_key() -> None:
    text = (
        "policy:\n  allow_destinations:\n"
        "    - {host: a.example, reason: r, expires: 2027-03-31T10:00:00}\n"
    )
    assert problems_of(text) == [
        (
            "policy.allow_destinations[0].expires",
            "give the time zone of the time (Z or +HH:MM), or a date only",
        )
    ]
    bad = "policy:\n  deny_destinations:\n    - {host: a.example, reason: r, expires: soon}\n"
    [(key, message)] = problems_of(bad)
    assert key == "policy.deny_destinations[0].expires" and "not a date" in message
    zoned = config(allow_destinations=[allow(expires="2027-03-31T10:00:00+02:00")])
    assert zoned.policy.allow_destinations[0].expires_at == (
        dt.datetime(2027, 3, 31, 8, tzinfo=dt.UTC).timestamp()
    )


def test_an_entry_stops_applying_at_the_moment_it_expires() -> None:
    policy = config(allow_destinations=[allow(expires="2027-03-31", ticket="CHG-1", owner="ciso")])
    at = dt.datetime(2027, 3, 31, tzinfo=dt.UTC).timestamp()
    before = decide(VENDOR, PHI, policy, now=at - 0.001)
    assert (before.action, before.rule) == (Action.ALLOW, "allow-list")
    assert "(ticket CHG-1)" in before.reason  # the trail names the exception
    after = decide(VENDOR, PHI, policy, now=at)
    assert (after.action, after.rule) == (Action.BLOCK, "foreign-phi")
    # A deny entry that expired no longer blocks what the location allows.
    deny = config(deny_destinations=[allow(expires="2027-03-31")])
    assert decide(VENDOR, CLEAN, deny, now=at - 1).rule == "deny-list"
    assert decide(VENDOR, CLEAN, deny, now=at).rule == "foreign-no-phi"


def test_entries_without_expiry_apply_forever() -> None:
    policy = config(allow_destinations=[allow()])
    assert decide(VENDOR, PHI, policy, now=4e9).rule == "allow-list"


# -- client scope --------------------------------------------------------------------------------
RADIOLOGY = {
    "client_groups": {"radiology": ["10.20.0.0/16", "fd00:20::/32"]},
    "allow_destinations": [allow(action="redact", clients=["radiology"])],
}


def test_a_rule_for_a_client_group_applies_to_its_clients_only() -> None:
    policy = config(**RADIOLOGY)
    radiology = decide(VENDOR, PHI, policy, "10.20.4.5:51000")
    assert (radiology.action, radiology.rule) == (Action.REDACT, "redact-list")
    assert decide(VENDOR, PHI, policy, "[fd00:20::9]:443").action is Action.REDACT
    # A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6 addresses.
    assert decide(VENDOR, PHI, policy, "::ffff:10.20.4.5:51000").action is Action.REDACT
    for other in ("10.21.4.5:51000", "", "not-an-address"):
        verdict = decide(VENDOR, PHI, policy, other)
        assert (verdict.action, verdict.rule) == (Action.BLOCK, "foreign-phi"), other


def test_clients_may_be_cidrs_and_addresses_too() -> None:
    policy = config(allow_destinations=[allow(clients=["192.0.2.0/28", "198.51.100.7"])])
    assert decide(VENDOR, PHI, policy, "192.0.2.15:1").rule == "allow-list"
    assert decide(VENDOR, PHI, policy, "198.51.100.7:1").rule == "allow-list"
    assert decide(VENDOR, PHI, policy, "192.0.2.16:1").rule == "foreign-phi"
    # A deny entry for some clients blocks only theirs.
    deny = config(deny_destinations=[allow(clients=["192.0.2.0/28"])])
    assert decide(VENDOR, CLEAN, deny, "192.0.2.1:1").rule == "deny-list"
    assert decide(VENDOR, CLEAN, deny, "192.0.2.99:1").rule == "foreign-no-phi"


def test_an_unknown_client_group_or_bad_cidr_names_the_key() -> None:
    text = (
        "policy:\n  client_groups: {radiology: [10.20.0.0/16]}\n  allow_destinations:\n"
        "    - {host: a.example, reason: r}\n"
        "    - {host: b.example, reason: r, clients: [radiology, radiolgy]}\n"
    )
    [(key, message)] = problems_of(text)
    assert key == "policy.allow_destinations[1].clients[1]"
    assert "no client group 'radiolgy'" in message and "defined: radiology" in message
    bad = (
        "policy:\n  allow_destinations:\n"
        "    - {host: a.example, reason: r, clients: [10.0.0.0/33]}\n"
    )
    [(key, message)] = problems_of(bad)
    assert key == "policy.allow_destinations[0].clients" and "10.0.0.0/33" in message
    groups = "policy:\n  client_groups: {radiology: [10.0.0.300/8]}\n"
    [(key, message)] = problems_of(groups)
    assert key == "policy.client_groups" and "radiology" in message


def test_client_addresses_as_the_front_ends_write_them() -> None:
    assert split_client("10.0.0.5:51234") == ("10.0.0.5", 51234)
    assert split_client("::1:443") == ("::1", 443)
    assert split_client("[2001:db8::1]:9") == ("2001:db8::1", 9)
    assert split_client("2001:db8::1") == ("2001:db8::1", None)
    assert split_client("") == ("", None)
    assert client_address("::ffff:10.1.2.3:80") == ipaddress.ip_address("10.1.2.3")
    assert client_address("garbage:1") is None


# -- warnings, metrics -----------------------------------------------------------------------
def _expiring() -> GatewayConfig:
    return config(
        allow_destinations=[
            allow(expires="2027-03-31", ticket="CHG-1", owner="ciso"),  # in 12 hours
            allow(host="b.example", expires="2027-04-10"),  # in 11 days
            allow(host="c.example", expires="2027-05-30"),  # beyond 14 days
        ],
        deny_destinations=[allow(host="d.example", expires="2027-03-01")],  # expired
    )


def test_notices_name_expired_and_soon_expiring_entries_soonest_first() -> None:
    lines = entry_expiry.notices(_expiring().policy, NOON)
    assert lines == [
        "deny_destinations[0] (d.example) expired at 2027-03-01T00:00:00Z and no longer applies",
        "allow_destinations[0] (ai.vendor.example, ticket CHG-1, owner ciso) expires at "
        "2027-03-31T00:00:00Z (in 12 hour(s))",
        "allow_destinations[1] (b.example) expires at 2027-04-10T00:00:00Z (in 10 day(s))",
    ]
    assert entry_expiry.counts(_expiring().policy, NOON) == {"soon": 2, "expired": 1}
    quiet = config(expiry_warning_days=0, allow_destinations=[allow(expires="2027-03-31")])
    assert entry_expiry.notices(quiet.policy, NOON) == []


def test_metrics_give_each_entry_its_expiry_and_count_the_soon_and_expired() -> None:
    policy = config(
        allow_destinations=[allow(expires="2020-01-01"), allow(expires="2099-01-01")]
    ).policy
    entry_expiry.publish(policy)
    gauge = metrics.POLICY_ENTRY_EXPIRY.labels("allow_destinations[0]")
    assert gauge._value.get() == dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()
    assert _expiring_now("expired") == 1
    assert _expiring_now("soon") == 0
    # A reload to a policy without them removes the old entries' series.
    entry_expiry.publish(config().policy)
    samples = [s.labels for m in metrics.POLICY_ENTRY_EXPIRY.collect() for s in m.samples]
    assert samples == []
    assert _expiring_now("expired") == 0


def _expiring_now(state: str) -> float | None:
    name = "phi_gateway_policy_entries_expiring"
    return REGISTRY.get_sample_value(name, {"state": state})


def test_check_config_warns_about_expiring_entries_but_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.yaml"
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).date().isoformat()
    data = {
        "geo": {
            "provider_ranges": None,
            "databases": [str(REPO / "geo_db/geo-whois-asn-country.mmdb")],
        },
        "audit": {"database": str(tmp_path / "audit.db")},
        "policy": {
            "allow_destinations": [allow(expires=soon, ticket="CHG-9"), allow(expires="2020-01-01")]
        },
    }
    path.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: policy entry allow_destinations[0] (ai.vendor.example, ticket CHG-9) "
        f"expires at {soon}T00:00:00Z" in err
    )
    assert "allow_destinations[1] (ai.vendor.example) expired at 2020-01-01" in err


# -- the expiry in the trail ---------------------------------------------------------------------
def test_each_expiry_is_recorded_once_across_restarts(tmp_path: Path) -> None:
    policy = config(
        allow_destinations=[
            allow(expires="2020-01-01", ticket="CHG-1", owner="ciso", clients=["10.0.0.0/8"]),
            allow(host="later.example", expires="2099-01-01"),
        ]
    ).policy
    settings = ChainSettings(instance_id="gw-a", secret=SECRET)
    store = AuditStore(tmp_path / "audit.db", settings)
    store.start()
    watch = entry_expiry.ExpiryWatch()
    assert watch.record_due(policy, store, "v1", time.time()) == 1
    assert watch.record_due(policy, store, "v1", time.time()) == 0  # remembered
    store.close()
    # A restart (a new watch, the same trail) finds it there.
    store = AuditStore(tmp_path / "audit.db", settings)
    store.start()
    assert entry_expiry.ExpiryWatch().record_due(policy, store, "v1", time.time()) == 0
    rows = [r for r in store.recent(10) if r["kind"] == "entry-expiry"]
    store.close()
    assert len(rows) == 1
    row = rows[0]
    assert (row["action"], row["rule"], row["host"]) == (
        "entry-expired",
        "allow-list",
        "ai.vendor.example",
    )
    detail = orjson.loads(str(row["detail"]))
    assert detail["entry"] == "allow_destinations[0]"
    assert (detail["ticket"], detail["owner"], detail["expires"]) == (
        "CHG-1",
        "ciso",
        "2020-01-01T00:00:00Z",
    )
    assert str(row["subject"]).startswith("entry:allow_destinations:ai.vendor.example:")
    result = verify(store.backend, KEY)
    assert result.intact, result


def test_the_watch_records_an_expiry_at_its_moment(tmp_path: Path) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    policy = config(allow_destinations=[allow(expires=soon.isoformat())]).policy
    store = AuditStore(tmp_path / "audit.db", ChainSettings(instance_id="gw-a", secret=SECRET))
    store.start()
    watch = entry_expiry.ExpiryWatch()
    watch.apply(policy, store, "v1")
    try:
        deadline = time.monotonic() + 10
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline and not rows:
            time.sleep(0.1)
            store.flush()
            rows = [r for r in store.recent(10) if r["kind"] == "entry-expiry"]
        assert rows, "no expiry event within 10 s"
        recorded = dt.datetime.fromisoformat(str(rows[0]["time"]).replace("Z", "+00:00"))
        assert recorded >= soon.replace(microsecond=0)
    finally:
        watch.stop()
        store.close()


# -- policy explain ------------------------------------------------------------------------------
def test_explain_names_the_deciding_entry_and_why_the_others_do_not() -> None:
    policy = config(
        client_groups={"radiology": ["10.20.0.0/16"]},
        deny_destinations=[{"host": "*.bad.example", "reason": "exfil"}],
        allow_destinations=[
            allow(expires="2020-01-01"),
            allow(action="redact", clients=["radiology"]),
            allow(),
        ],
    )
    found = explain(VENDOR, policy, "10.20.0.9")
    assert found.groups == ("radiology",)
    assert [e.outcome for e in found.entries] == [
        "destination",
        "expired",
        "decides",
        "not reached",
    ]
    verdicts = dict(found.verdicts)
    assert verdicts["PHI"].action is Action.REDACT
    assert verdicts["unreadable"].rule == "uninspectable"  # what cannot be read is not redacted
    other = explain(VENDOR, policy, "10.99.0.9")
    assert [e.outcome for e in other.entries] == ["destination", "expired", "client", "decides"]
    assert dict(other.verdicts)["PHI"].rule == "allow-list"


def test_policy_explain_prints_which_rule_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.yaml"
    data = {
        "geo": {
            "provider_ranges": None,
            "databases": [str(REPO / "geo_db/geo-whois-asn-country.mmdb")],
            "overrides": [{"cidr": "127.0.0.2/32", "country": "IN"}],
        },
        "policy": {
            "client_groups": {"radiology": ["10.20.0.0/16"]},
            "allow_destinations": [
                {
                    "host": "127.0.0.2",
                    "reason": "AI reading BAA",
                    "action": "redact",
                    "clients": ["radiology"],
                    "ticket": "CHG-7",
                }
            ],
        },
    }
    path.write_text(yaml.safe_dump(data))
    args = ["policy", "explain", "--config", str(path), "--destination", "127.0.0.2:8443"]
    assert main([*args, "--client", "10.20.1.1"]) == 0
    out = capsys.readouterr().out
    assert "client 10.20.1.1 (client groups: radiology) -> 127.0.0.2:8443" in out
    assert "127.0.0.2: IN (foreign, by override)" in out
    assert "allow_destinations[0] (127.0.0.2, ticket CHG-7, clients radiology): DECIDES" in out
    assert "PHI:" in out and "redact by redact-list" in out
    assert main([*args, "--client", "10.30.1.1"]) == 0
    out = capsys.readouterr().out
    assert "names it, for clients radiology only" in out
    assert "block by foreign-phi" in out
    with pytest.raises(SystemExit):
        main([*args, "--client", "radiology"])
    assert "not an IP address" in capsys.readouterr().err
