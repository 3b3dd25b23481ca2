"""The audit trail of a real gateway: no identifier in the database file, a chain that
verifies, survives a kill -9, and a fingerprint an auditor can match."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import BIN, GatewayProcess
from tests.support.patients import fhir_patient_json, fhir_patient_xml, hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
SECRET = {"PHI_GATEWAY_SECRET": "audit-trail-test-secret"}


def phi_gateway(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **SECRET},
        check=False,
    )


@pytest.fixture
def audited(tmp_path: Path, test_mmdb: Path, pki: Pki) -> Iterator[GatewayProcess]:
    """A gateway that redacts PHI bound abroad (block where redaction is refused)."""
    config = gateway_config(
        test_mmdb,
        pki,
        policy={"foreign_phi_action": "redact"},
        audit={"instance_id": "gw-test", "checkpoint_interval_seconds": 1},
    )
    process = GatewayProcess(tmp_path / "gw", config, env=SECRET)
    yield process
    process.stop()


def send_patients(process: GatewayProcess, url: str, seeds: range) -> list[bytes]:
    bodies: list[bytes] = []
    with httpx.Client(proxy=process.proxy_url, verify=trusting(process), timeout=10) as client:
        for seed in seeds:
            patient = make_patient(seed)
            for body in (hl7_adt(patient).encode(), fhir_patient_json(patient)):
                bodies.append(body)
                client.post(f"{url}/p/{seed}", content=body)
            client.post(
                f"{url}/x/{seed}",
                content=fhir_patient_xml(patient),
                headers={"Content-Type": "application/fhir+xml"},
            )
    return bodies


def test_database_file_holds_no_identifier_and_verifies(
    audited: GatewayProcess, upstreams: Upstreams, tmp_path: Path
) -> None:
    seeds = range(300, 320)
    bodies = send_patients(audited, upstreams.foreign.url, seeds)
    rows = audited.audit_rows(wait_for=len(seeds) * 3)
    assert len(rows) == len(seeds) * 3
    assert {r["action"] for r in rows} == {"redact"}  # HL7, FHIR JSON and FHIR XML all redactable
    row = rows[0]
    # Every field the issue lists is there.
    for column in (
        "incident_id", "time", "instance_id", "policy_version", "client", "host", "ip", "port",
        "country", "geo_evidence", "geo_databases", "protocol", "format", "message_type",
        "categories", "locations", "action", "rule", "redaction", "payload_fingerprint",
        "chain_seq", "prev_hash", "hash",
    ):  # fmt: skip
        assert row[column] not in ("", None), column
    assert row["instance_id"] == "gw-test" and row["country"] == "IN"
    assert json.loads(row["geo_databases"])[0]["build"]
    assert audited.stop() == 0
    stored = b"".join(p.read_bytes() for p in (tmp_path / "gw").glob("audit.db*"))
    assert len(stored) > 10_000
    found = [
        value
        for seed in seeds
        for value in make_patient(seed).all_identifiers()
        if value.encode() in stored
    ]
    assert not found, f"{len(found)} identifier value(s) found in the audit database file"

    verified = phi_gateway("audit", "verify", config=audited.config_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"intact, {len(rows)} events, seq 1-{len(rows)}" in verified.stdout

    # The auditor holds the message: its fingerprint finds the event.
    message = tmp_path / "message.hl7"
    message.write_bytes(bodies[0])
    printed = phi_gateway("audit", "fingerprint", str(message), config=audited.config_path)
    assert printed.stdout.strip() == rows[0]["payload_fingerprint"]


def test_trail_survives_kill_9_and_the_chain_continues(
    audited: GatewayProcess, upstreams: Upstreams, tmp_path: Path
) -> None:
    db = Path(audited.config["audit"]["database"])
    stop = threading.Event()
    sent: list[int] = []

    def load() -> None:
        with httpx.Client(proxy=audited.proxy_url, timeout=5) as client:
            body = hl7_adt(make_patient(7)).encode()
            while not stop.is_set():
                try:
                    client.post(f"{upstreams.foreign.url}/k", content=body)
                    sent.append(1)
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    audited.audit_rows(wait_for=40, timeout=20)
    audited.kill()  # in the middle of the load: events queued, a transaction perhaps open
    stop.set()
    for t in threads:
        t.join(10)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    survived = conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    conn.close()
    assert survived >= 40
    verified = phi_gateway("audit", "verify", config=audited.config_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # A new process on the same file continues the same chain, and first writes what the
    # killed one had decided and not committed (its journal): every answer has its row.
    answered = len(sent)
    config: dict[str, Any] = dict(audited.config)
    again = GatewayProcess(tmp_path / "gw2", config, env=SECRET)
    try:
        send_patients(again, upstreams.foreign.url, range(1, 3))
        rows = again.audit_rows(wait_for=answered + 6, timeout=20)
    finally:
        assert again.stop() == 0
    total = len(again.audit_rows())
    assert len(rows) >= answered + 6 and total >= answered + 6, (survived, answered, total)
    verified = phi_gateway("audit", "verify", config=again.config_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"intact, {total} events, seq 1-{total}" in verified.stdout
