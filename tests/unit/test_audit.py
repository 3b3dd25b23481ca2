import sqlite3
import time
from pathlib import Path

import pytest

from gateway.audit import AuditEvent, AuditStore
from gateway.audit.event import new_incident_id
from gateway.config import Limits
from gateway.inspector import Inspector
from gateway.model import (
    Action,
    Decision,
    Destination,
    GeoAnswer,
    Jurisdiction,
    Location,
    Message,
    Protocol,
    Verdict,
)
from tests.support.patients import fhir_patient_json, hl7_adt, make_patient

INSPECTOR = Inspector(Limits())


def decision_for(body: bytes) -> Decision:
    destination = Destination(
        "coder.example",
        443,
        (
            Jurisdiction(
                "203.0.113.7",
                Location.FOREIGN,
                "IN",
                (GeoAnswer("db:dbip-country-lite", "IN"),),
                "database",
            ),
        ),
    )
    message = Message(Protocol.HTTP1, "10.1.2.3:5555", "coder.example", 443, body=body)
    verdict = Verdict(Action.BLOCK, "foreign-phi", "payload to IN", record=True)
    return Decision(
        new_incident_id(), message, destination, INSPECTOR.inspect(body), verdict, time.time()
    )


def test_incident_ids_are_unique_and_time_ordered() -> None:
    ids = [new_incident_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids[0].startswith("INC-")


def test_event_holds_categories_not_values(tmp_path: Path) -> None:
    patients = [make_patient(seed) for seed in range(25)]
    store = AuditStore(tmp_path / "audit.db")
    for patient in patients:
        for body in (hl7_adt(patient).encode(), fhir_patient_json(patient)):
            store.append(AuditEvent.from_decision(decision_for(body), "inst", "v1"))
    store.flush()
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for patient in patients:
        for value in patient.identifiers():
            assert value.encode() not in raw, "an identifier reached the audit database"
    rows = AuditStore(tmp_path / "audit.db").recent(100)
    assert len(rows) == 50
    assert rows[0]["country"] == "IN"
    assert '"ssn":1' in str(rows[0]["categories"])
    assert rows[0]["chain_seq"] == 50 and len(str(rows[0]["hash"])) == 64
    assert "db:dbip-country-lite" in str(rows[0]["geo_evidence"])


def test_rows_are_append_only(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.db")
    store.append(AuditEvent.from_decision(decision_for(b"{}"), "inst", "v1"))
    store.flush()
    conn = sqlite3.connect(tmp_path / "audit.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_events SET action = 'allow'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_events")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Exception, match="cannot open audit database"):
        AuditStore(blocker / "audit.db")
