"""The durable audit spool: what the database cannot take is fsync'd to the gateway's disk and
written from there, in order, once — also by the next run after a shutdown or a crash. When
the spool cannot take events either, the store stops accepting decisions that need a record.
A database call that stalls is cut. Verification counts what was decided and never written."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway import metrics
from gateway.audit import AuditEvent, AuditStore
from gateway.audit.backend import Connection
from gateway.audit.spool import Spool, spooled_events
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.store import ChainSettings
from gateway.audit.verify import verify
from gateway.errors import AuditError
from tests.unit.test_audit_chain import KEY, SECRET
from tests.unit.test_audit_outage import FlakyBackend, _event, _rows, _wait


def _store(backend: SqliteBackend, spool: Path, **options: Any) -> AuditStore:
    return AuditStore(
        backend,
        ChainSettings(instance_id="gw-a", secret=SECRET),
        spool=Spool(spool, options.pop("max_bytes", 1 << 30)),
        **options,
    )


def _order(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT run_seq FROM audit_events ORDER BY chain_seq").fetchall()
    finally:
        conn.close()
    return [str(r[0]) for r in rows]


def test_events_spool_while_the_database_fails_and_are_written_in_order(
    tmp_path: Path,
) -> None:
    db, spool = tmp_path / "audit.db", tmp_path / "audit.db.spool"
    backend = FlakyBackend(db)
    store = _store(backend, spool)
    states: list[tuple[str | None, bool]] = []
    store.on_state = lambda message, recording: states.append((message, recording))
    store.append(_event())
    store.flush()
    backend.down = True
    for _ in range(30):
        store.append(_event())
    _wait(lambda: spooled_events(spool) == 30)
    # On disk, not in memory; decisions are still recorded, so still accepted.
    assert metrics.AUDIT_HELD_EVENTS._value.get() == 0
    assert metrics.AUDIT_SPOOL_EVENTS._value.get() == 30
    assert metrics.AUDIT_SPOOL_OLDEST._value.get() > 0
    assert store.accepting()
    assert states == [(f"audit store not writable; events spooled to {spool}", True)]
    assert stat.S_IMODE(spool.stat().st_mode) & 0o007 == 0
    assert _rows(db) == 1
    backend.down = False
    _wait(lambda: store.pending() == 0 and states[-1] == (None, True))
    assert spool.stat().st_size == 0  # emptied once written
    assert metrics.AUDIT_SPOOL_OLDEST._value.get() == 0
    store.close()
    assert _order(db) == [f"{store.run}/{n}" for n in range(1, 32)]
    result = verify(SqliteBackend(db), KEY)
    assert result.intact and result.complete, result.describe()


def test_a_shutdown_while_the_database_fails_leaves_the_events_to_the_next_run(
    tmp_path: Path,
) -> None:
    db, spool = tmp_path / "audit.db", tmp_path / "audit.db.spool"
    backend = FlakyBackend(db)
    first = _store(backend, spool)
    first.append(_event())
    first.flush()
    backend.down = True
    for _ in range(12):
        first.append(_event())
    first.close()
    assert (first.spooled, first.unwritten) == (12, 0)
    assert spooled_events(spool) == 12 and _rows(db) == 1
    backend.down = False
    second = _store(FlakyBackend(db), spool)
    second.append(_event())
    _wait(lambda: second.pending() == 0)
    second.close()
    order = _order(db)
    assert order[:13] == [f"{first.run}/{n}" for n in range(1, 14)]
    assert order[13:] == [f"{second.run}/1"]
    assert spool.stat().st_size == 0
    result = verify(SqliteBackend(db), KEY)
    assert result.intact and result.complete, result.describe()


def test_a_spool_replayed_after_a_crash_writes_each_event_once(tmp_path: Path) -> None:
    db, path = tmp_path / "audit.db", tmp_path / "audit.db.spool"
    store = _store(FlakyBackend(db), path)
    for _ in range(3):
        store.append(_event())
    store.close()
    reader = SqliteBackend(db)
    written = reader.fetch(reader.connect(), "SELECT * FROM audit_events")
    # A crash after the commit, before the spool was emptied: those events are in both.
    names = {f.name for f in dataclasses.fields(AuditEvent)}
    again = [AuditEvent(**{k: v for k, v in row.items() if k in names}) for row in written]
    spool = Spool(path, 1 << 30)
    spool.append(again)
    with path.open("ab") as half:
        half.write(b'{"incident_id": "INC-cut-')  # and the write a crash cut short
    restarted = _store(FlakyBackend(db), path)
    assert restarted.spool is not None and restarted.spool.events == 3
    restarted.start()
    _wait(lambda: restarted.pending() == 0)
    restarted.close()
    assert _rows(db) == 3
    assert verify(SqliteBackend(db), KEY).intact


def test_when_the_spool_cannot_take_events_decisions_needing_a_record_are_refused(
    tmp_path: Path,
) -> None:
    db, spool = tmp_path / "audit.db", tmp_path / "audit.db.spool"
    backend = FlakyBackend(db)
    store = _store(backend, spool, max_bytes=1024 * 1024)
    states: list[tuple[str | None, bool]] = []
    store.on_state = lambda message, recording: states.append((message, recording))
    store.append(_event())
    store.flush()
    errors = metrics.AUDIT_SPOOL_ERRORS._value.get()
    backend.down = True
    assert store.spool is not None
    store.spool.max_bytes = store.spool.size + 3000  # room for a couple of events
    for _ in range(20):
        store.append(_event())
    _wait(lambda: not store.accepting())
    assert metrics.AUDIT_SPOOL_ERRORS._value.get() > errors
    assert states[-1] == ("audit store and spool not writable; events held in memory", False)
    assert metrics.AUDIT_HELD_EVENTS._value.get() > 0
    backend.down = False
    _wait(lambda: store.pending() == 0 and states[-1] == (None, True))
    assert store.accepting()
    store.close()
    assert _rows(db) == 21
    result = verify(SqliteBackend(db), KEY)
    assert result.intact and result.complete, result.describe()


def test_stricter_no_phi_forwarded_while_only_spooled(tmp_path: Path) -> None:
    backend = FlakyBackend(tmp_path / "audit.db")
    store = _store(backend, tmp_path / "spool", forward_while_spooling=False)
    store.append(_event())
    store.flush()
    assert store.accepting()
    backend.down = True
    store.append(_event())
    _wait(lambda: not store.up)
    assert not store.accepting()
    backend.down = False
    _wait(lambda: store.up)
    assert store.accepting()
    store.close()


class StallingBackend(FlakyBackend):
    """A database that stops answering mid-call until the call is interrupted."""

    def __init__(self, path: Path) -> None:
        self.stall = False
        self.interrupted = threading.Event()
        super().__init__(path)

    def append(self, conn: Any, instance_id: str, events: Any) -> tuple[int, str]:
        if self.stall:
            if not self.interrupted.wait(30):
                raise AssertionError("never interrupted")
            raise sqlite3.OperationalError("interrupted")
        return super().append(conn, instance_id, events)

    def interrupt(self, conn: Connection) -> None:
        self.stall = False
        self.interrupted.set()


def test_a_stalled_database_call_is_cut_and_its_events_spooled(tmp_path: Path) -> None:
    db, spool = tmp_path / "audit.db", tmp_path / "spool"
    backend = StallingBackend(db)
    store = _store(backend, spool, write_timeout=1.0)
    store.append(_event())
    store.flush()
    backend.stall = True
    for _ in range(4):
        store.append(_event())
    _wait(backend.interrupted.is_set, seconds=10)
    _wait(lambda: store.pending() == 0)  # written on the next connection
    store.close()
    assert _rows(db) == 5
    assert verify(SqliteBackend(db), KEY).complete


def test_a_spool_that_cannot_be_created_is_a_start_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AuditError, match="cannot open the audit spool"):
        Spool(blocker / "spool", 1 << 20)


def test_an_unreachable_postgresql_is_not_a_start_error() -> None:
    from gateway.audit.postgres_backend import PostgresBackend

    backend = PostgresBackend("host=127.0.0.1 port=1 dbname=audit user=gateway", 1)
    with pytest.raises(backend.errors):
        backend.connect()
    with pytest.raises(AuditError, match="postgresql"):
        PostgresBackend("host=127.0.0.1 this is not a connection string")
