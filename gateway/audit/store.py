"""Append-only SQLite audit store (WAL, synchronous=FULL so a committed event survives a crash).

Writes go through one background thread: the proxy's event loop only puts events on a queue.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import fields
from pathlib import Path

from gateway import metrics
from gateway.audit.event import AuditEvent

log = logging.getLogger(__name__)
_COLUMNS = [f.name for f in fields(AuditEvent)]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {'INTEGER' if c == 'port' else 'TEXT'} NOT NULL" for c in _COLUMNS)}
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_incident ON audit_events(incident_id);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time);
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
"""
# Column names are ours, values are bound parameters.
_INSERT = f"INSERT INTO audit_events ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})"  # noqa: E501, S608
_STOP = object()
_GROUP_COMMIT_SECONDS = 0.005


class AuditError(Exception):
    """The audit database cannot be opened or written."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Databases written by an older version get the newer columns (empty for old rows)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(audit_events)")}
    for column in _COLUMNS:
        if column not in present:
            kind = "INTEGER" if column == "port" else "TEXT"
            conn.execute(f"ALTER TABLE audit_events ADD COLUMN {column} {kind} NOT NULL DEFAULT ''")


class AuditStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(path)
            try:
                conn.executescript(_SCHEMA)
                _add_missing_columns(conn)
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"{path}: cannot open audit database: {exc}") from None
        self._queue: queue.Queue[object] = queue.Queue()
        self.write_errors = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="audit-writer", daemon=True)
            self._thread.start()

    def append(self, event: AuditEvent) -> None:
        """Queue an event; never blocks the caller."""
        if self._thread is None:
            self.start()
        self._queue.put(event)

    def pending(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued event is committed."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(10)
            self._thread = None

    def _writer(self) -> None:
        try:
            conn = connect(self.path)
        except sqlite3.Error as exc:
            log.error("audit database unusable: %s", exc)
            self._drain_failed()
            return
        try:
            while True:
                batch = [self._queue.get()]
                # Group what arrives within a few milliseconds into one transaction: one
                # fsync for many events under load, one event's latency otherwise.
                time.sleep(_GROUP_COMMIT_SECONDS)
                while len(batch) < 500:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                events = [e for e in batch if isinstance(e, AuditEvent)]
                if events:
                    self._write(conn, events)
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
                if any(item is _STOP for item in batch):
                    return
        finally:
            conn.close()

    def _drain_failed(self) -> None:
        """The database went away: count every queued event as failed, release waiters."""
        while True:
            item = self._queue.get()
            if isinstance(item, AuditEvent):
                self.write_errors += 1
                metrics.AUDIT_WRITE_ERRORS.inc()
            elif isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                return

    def _write(self, conn: sqlite3.Connection, events: list[AuditEvent]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, [e.as_row() for e in events])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.write_errors += len(events)
            metrics.AUDIT_WRITE_ERRORS.inc(len(events))
            log.error("audit write failed for %d event(s): %s", len(events), exc)

    def recent(self, limit: int = 50) -> list[dict[str, object]]:
        conn = connect(self.path)
        try:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                f"SELECT seq, {', '.join(_COLUMNS)} FROM audit_events "  # noqa: S608
                "ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [dict(r) for r in rows]
        finally:
            conn.close()
