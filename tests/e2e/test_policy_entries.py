"""Exceptions that expire and rules for departments, in a running gateway: a redact entry for
one client group only, an allow entry that expires two seconds after a reload (PHI sent after
that is blocked, and the expiry is in the trail), the warnings ahead of time."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import BIN, GatewayProcess
from tests.support.mmdb import FOREIGN_IP, FOREIGN_IP_2
from tests.support.patients import hl7_rich, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
PATIENT = make_patient(91)
RADIOLOGY_IP = "127.0.0.5"
SECRET = "entries-test-secret"
SOON = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).date().isoformat()


def policy(*extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_groups": {"radiology": [f"{RADIOLOGY_IP}/32"]},
        "allow_destinations": [
            {
                "cidr": f"{FOREIGN_IP}/32",
                "action": "redact",
                "clients": ["radiology"],
                "reason": "AI reading vendor: de-identified studies only",
                "ticket": "BAA-2026-31",
                "owner": "radiology-it",
            },
            {
                "host": "renewal.example",
                "reason": "coding vendor",
                "ticket": "CHG-88",
                "expires": SOON,
            },
            *extra,
        ],
    }


@pytest.fixture(scope="module")
def entries(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    config = gateway_config(test_mmdb, pki, policy=policy())
    process = GatewayProcess(
        tmp_path_factory.mktemp("entries"), config, env={"PHI_GATEWAY_SECRET": SECRET}
    )
    yield process
    process.stop()


class Sent:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.body = status, body


def send(gateway: GatewayProcess, url: str, body: bytes, source: str = "127.0.0.1") -> Sent:
    """A POST through the gateway as an explicit proxy, from the client address ``source``
    (http.client binds it; httpx does not bind proxy connections)."""
    connection = http.client.HTTPConnection(
        gateway.listen_host, gateway.port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(
            "POST", url, body=body, headers={"Content-Type": "x-application/hl7-v2+er7"}
        )
        response = connection.getresponse()
        return Sent(response.status, response.read())
    finally:
        connection.close()


def identifiers_in(body: bytes) -> list[str]:
    text = body.decode("latin-1").lower()
    return [v for v in PATIENT.all_identifiers() if v.lower() in text]


def test_a_department_rule_applies_to_that_department_only(
    entries: GatewayProcess, upstreams: Upstreams
) -> None:
    body = hl7_rich(PATIENT).encode()
    radiology = send(entries, upstreams.foreign.url + "/radiology", body, source=RADIOLOGY_IP)
    assert radiology.status_code == 200
    received = upstreams.foreign.first_at("/radiology")
    assert received.body.startswith(b"MSH|") and identifiers_in(received.body) == []
    other = send(entries, upstreams.foreign.url + "/billing", body)
    assert other.status_code == 451
    assert "/billing" not in upstreams.foreign.paths()
    rows = entries.audit_rows(wait_for=2)
    by_client = {r["client"].rpartition(":")[0]: r for r in rows if r["kind"] == "decision"}
    assert (by_client[RADIOLOGY_IP]["action"], by_client[RADIOLOGY_IP]["rule"]) == (
        "redact",
        "redact-list",
    )
    assert "(ticket BAA-2026-31)" in by_client[RADIOLOGY_IP]["reason"]
    assert (by_client["127.0.0.1"]["action"], by_client["127.0.0.1"]["rule"]) == (
        "block",
        "foreign-phi",
    )


def test_the_start_banner_and_metrics_warn_ahead_of_expiry(entries: GatewayProcess) -> None:
    banner = entries.output()
    assert (
        f"policy:  WARNING allow_destinations[1] (renewal.example, ticket CHG-88) expires at "
        f"{SOON}T00:00:00Z" in banner
    )
    assert entries.metric("phi_gateway_policy_entries_expiring", state="soon") == 1
    expiry = dt.datetime.fromisoformat(f"{SOON}T00:00:00+00:00").timestamp()
    assert entries.metric(
        "phi_gateway_policy_entry_expiry_timestamp_seconds", entry="allow_destinations[1]"
    ) == pytest.approx(expiry)


def test_an_allow_entry_expiring_in_two_seconds_stops_applying(
    entries: GatewayProcess, upstreams: Upstreams
) -> None:
    reloads = entries.metric("phi_gateway_config_reloads_total", result="success")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    temporary = {
        "cidr": f"{FOREIGN_IP_2}/32",
        "reason": "coding vendor pilot",
        "ticket": "CHG-99",
        "owner": "him",
        "expires": expires.isoformat(),
    }
    entries.config["policy"] = policy(temporary)
    entries.write_config(entries.config)
    entries.reload()
    deadline = time.monotonic() + 10
    while entries.metric("phi_gateway_config_reloads_total", result="success") <= reloads:
        assert time.monotonic() < deadline, entries.output()
        time.sleep(0.05)
    body = hl7_rich(PATIENT).encode()
    before = send(entries, upstreams.foreign_2.url + "/pilot-before", body)
    assert dt.datetime.now(dt.UTC) < expires, "the reload took too long for this test"
    assert before.status_code == 200  # allow-listed: PHI goes, and is recorded
    assert identifiers_in(upstreams.foreign_2.first_at("/pilot-before").body)
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    after = send(entries, upstreams.foreign_2.url + "/pilot-after", body)
    assert after.status_code == 451
    assert "/pilot-after" not in upstreams.foreign_2.paths()

    deadline = time.monotonic() + 10
    expired: list[dict[str, Any]] = []
    while not expired and time.monotonic() < deadline:
        expired = [r for r in entries.audit_rows() if r["kind"] == "entry-expiry"]
        time.sleep(0.1)
    assert len(expired) == 1, "the expiry is not in the trail"
    detail = json.loads(expired[0]["detail"])
    assert (detail["entry"], detail["ticket"], detail["owner"]) == (
        "allow_destinations[2]",
        "CHG-99",
        "him",
    )
    assert expired[0]["time"] >= expires.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    decisions = {r["incident_id"]: r for r in entries.audit_rows() if r["kind"] == "decision"}
    rules = sorted(r["rule"] for r in decisions.values() if r["ip"] == FOREIGN_IP_2)
    assert rules == ["allow-list", "foreign-phi"]
    assert entries.metric("phi_gateway_policy_entries_expiring", state="expired") == 1

    verify = subprocess.run(
        [str(BIN), "audit", "verify", "--config", str(entries.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PHI_GATEWAY_SECRET": SECRET},
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert identifiers_in((verify.stdout + entries.output()).encode()) == []


def test_policy_explain_agrees_with_the_running_gateway(entries: GatewayProcess) -> None:
    def explain(client: str) -> str:
        done = subprocess.run(
            [
                str(BIN),
                "policy",
                "explain",
                "--config",
                str(entries.config_path),
                "--client",
                client,
                "--destination",
                f"{FOREIGN_IP}:{80}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    radiology = explain(RADIOLOGY_IP)
    assert "(client groups: radiology)" in radiology
    assert "allow_destinations[0]" in radiology and "DECIDES" in radiology
    assert "redact by redact-list" in radiology
    billing = explain("127.0.0.1")
    assert "names it, for clients radiology only" in billing
    assert "block by foreign-phi" in billing
