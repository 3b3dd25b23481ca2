"""The audit database fails (stopped, restarted, full) and the store has no spool (the spool is
tested in test_audit_spool.py): nothing decided is lost. Events are held in order and written
when it answers again, the chain intact; the store says it is down; a shutdown that cannot
write them says how many; past the bound, losses are counted and `audit verify` names them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import metrics
from gateway.audit import AuditEvent, AuditStore
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.store import ChainSettings
from gateway.audit.verify import verify
from tests.unit.test_audit import decision_for
from tests.unit.test_audit_chain import KEY, SECRET


class FlakyBackend(SqliteBackend):
    """SQLite that fails like a database gone away while ``down`` is set."""

    def __init__(self, path: Path) -> None:
        self.down = False
        super().__init__(path)

    def connect(self) -> sqlite3.Connection:
        if self.down:
            raise sqlite3.OperationalError("unable to open database file")
        return super().connect()

    def append(self, conn: Any, instance_id: str, events: Any) -> tuple[int, str]:
        if self.down:
            raise sqlite3.OperationalError("database or disk is full")
        return super().append(conn, instance_id, events)


def _event() -> AuditEvent:
    return AuditEvent.from_decision(decision_for(b"{}"), "gw-a", "v1")


def _wait(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0])
    finally:
        conn.close()


def test_events_decided_while_the_database_fails_are_written_when_it_is_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    backend = FlakyBackend(db)
    store = AuditStore(backend, ChainSettings(instance_id="gw-a", secret=SECRET))
    states: list[str | None] = []
    store.on_state = lambda message, recording: states.append(message)
    store.append(_event())
    store.flush()
    backend.down = True
    for _ in range(40):
        store.append(_event())
    _wait(lambda: not store.up)
    assert states == ["audit store and spool not writable; events held in memory"]
    assert metrics.AUDIT_STORE_UP._value.get() == 0
    assert store.pending() == 40 and _rows(db) == 1
    backend.down = False
    _wait(lambda: store.pending() == 0)
    assert store.up and states[-1] is None
    store.close()
    assert _rows(db) == 41 and store.unwritten == 0
    result = verify(SqliteBackend(db), KEY)
    assert result.intact, result.describe()
    assert "41 events, seq 1-41" in result.describe()


def test_a_shutdown_that_cannot_write_says_how_many_were_not(tmp_path: Path) -> None:
    backend = FlakyBackend(tmp_path / "audit.db")
    store = AuditStore(backend, ChainSettings(instance_id="gw-a", secret=SECRET))
    store.append(_event())
    store.flush()
    backend.down = True
    for _ in range(7):
        store.append(_event())
    store.close()
    assert store.unwritten == 7


def test_past_the_bound_held_events_are_lost_and_counted(tmp_path: Path) -> None:
    backend = FlakyBackend(tmp_path / "audit.db")
    store = AuditStore(backend, ChainSettings(instance_id="gw-a", secret=SECRET), max_held=100)
    store.append(_event())
    store.flush()
    backend.down = True
    lost = metrics.AUDIT_LOST_EVENTS._value.get()
    for _ in range(150):
        store.append(_event())
    _wait(lambda: metrics.AUDIT_LOST_EVENTS._value.get() == lost + 50)
    assert metrics.AUDIT_HELD_EVENTS._value.get() == 100
    backend.down = False
    _wait(lambda: store.pending() == 0)
    store.close()
    assert _rows(tmp_path / "audit.db") == 101
    # The lost ones were numbered when decided: verification tells they were never written.
    result = verify(SqliteBackend(tmp_path / "audit.db"), KEY)
    assert result.intact and not result.complete
    assert result.chains[0].missing == 50
    assert f"run {store.run}: numbers 102-151" in result.describe()
    assert "INCOMPLETE" in result.describe()


def test_a_store_started_while_its_database_fails_writes_once_it_answers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    backend = FlakyBackend(db)
    backend.down = True
    store = AuditStore(backend, ChainSettings(instance_id="gw-a", secret=SECRET))
    for _ in range(5):
        store.append(_event())
    _wait(lambda: not store.up)
    backend.down = False
    _wait(lambda: store.pending() == 0)
    store.close()
    assert _rows(db) == 5


def test_phi_that_could_not_be_recorded_is_not_sent(tmp_path: Path) -> None:
    from gateway.config import parse_config
    from gateway.engine import Gateway
    from gateway.model import Destination, Jurisdiction, Location, Message, Protocol
    from tests.support.mmdb import build_test_mmdb
    from tests.support.patients import hl7_adt, make_patient

    config = parse_config(
        {
            "geo": {"databases": [{"path": str(build_test_mmdb(tmp_path / "w.mmdb"))}]},
            "audit": {"database": str(tmp_path / "audit.db"), "max_held_events": 100},
            "policy": {"allow_destinations": [{"host": "baa.example", "reason": "BAA 7"}]},
        }
    )
    gateway = Gateway.from_config(config)
    body = hl7_adt(make_patient(77)).encode()
    message = Message(
        protocol=Protocol.HTTP1,
        client="127.0.0.1",
        destination_host="baa.example",
        destination_port=443,
        method="POST",
        path="/",
        query="",
        headers=(),
        content_type="",
        content_encoding="",
        accept="",
        body=body,
        raw_body_size=len(body),
    )
    abroad = (Jurisdiction("127.0.0.2", Location.FOREIGN, "IN", reason="database"),)
    baa = Destination("baa.example", 443, abroad)
    try:
        assert gateway.evaluate(message, baa).verdict.rule == "allow-list"
        gateway.audit.max_held = 0  # as if the store failed and held all it may
        refused = gateway.evaluate(message, baa)
        assert refused.verdict.rule == "unrecordable" and refused.verdict.blocks
        assert refused.incident_id  # the refusal itself is recorded when it can be
        home = Destination(
            "ehr.example", 443, (Jurisdiction("127.0.0.1", Location.DOMESTIC, "US"),)
        )
        assert gateway.evaluate(message, home).verdict.rule == "domestic"
    finally:
        gateway.audit.max_held = 100
        gateway.close()


class LostAnswerBackend(FlakyBackend):
    """Commits, then fails as a connection does whose answer is lost (once)."""

    def __init__(self, path: Path) -> None:
        self.lose_next = False
        super().__init__(path)

    def append(self, conn: Any, instance_id: str, events: Any) -> tuple[int, str]:
        head = super().append(conn, instance_id, events)
        if self.lose_next:
            self.lose_next = False
            raise sqlite3.OperationalError("server closed the connection unexpectedly")
        return head


def test_a_commit_whose_answer_was_lost_is_not_written_twice(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    backend = LostAnswerBackend(db)
    store = AuditStore(backend, ChainSettings(instance_id="gw-a", secret=SECRET))
    store.append(_event())
    store.flush()
    backend.lose_next = True
    for _ in range(5):
        store.append(_event())
    _wait(lambda: store.pending() == 0)
    store.append(_event())
    _wait(lambda: store.pending() == 0)
    store.close()
    assert _rows(db) == 7
    assert verify(SqliteBackend(db), KEY).intact
