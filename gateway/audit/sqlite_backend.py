"""The embedded audit database: SQLite in WAL mode with ``synchronous=FULL`` (a committed event
survives a kill -9 or a power cut), append-only by trigger except for events a retention row
has expired."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from gateway.audit.backend import (
    CHAIN_COLUMNS,
    INTEGER_COLUMNS,
    AuditBackend,
    Connection,
    Cursor,
)
from gateway.audit.chain import EVENT_FIELDS
from gateway.errors import AuditError


def _column(name: str, required: bool = True) -> str:
    kind = "INTEGER" if name in INTEGER_COLUMNS else "TEXT"
    return f"{name} {kind}" + (" NOT NULL DEFAULT ''" if required and kind == "TEXT" else "")


_APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(_column(c) for c in EVENT_FIELDS)},
    {", ".join(_column(c, required=False) for c in CHAIN_COLUMNS)}
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL, time TEXT NOT NULL, chain_seq INTEGER NOT NULL,
    hash TEXT NOT NULL, reason TEXT NOT NULL, key_id TEXT NOT NULL, mac TEXT NOT NULL,
    tally TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit_retention (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL, time TEXT NOT NULL, through_seq INTEGER NOT NULL,
    through_hash TEXT NOT NULL, expired INTEGER NOT NULL, before TEXT NOT NULL
);
{_APPEND_ONLY.format(table="audit_checkpoints")}
{_APPEND_ONLY.format(table="audit_retention")}
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
"""
# Only events a retention row has expired may be deleted (databases written before retention
# had an unconditional trigger under the same name: replaced when opened).
_DELETE_GUARD = """
DROP TRIGGER IF EXISTS audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.chain_seq IS NULL OR OLD.chain_seq > COALESCE(
    (SELECT MAX(through_seq) FROM audit_retention WHERE instance_id = OLD.instance_id), 0)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
"""
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_incident ON audit_events(incident_id);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_chain ON audit_events(instance_id, chain_seq);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events(subject);
CREATE INDEX IF NOT EXISTS audit_events_fingerprint ON audit_events(payload_fingerprint);
CREATE INDEX IF NOT EXISTS audit_events_host ON audit_events(host, time);
CREATE INDEX IF NOT EXISTS audit_events_country ON audit_events(country, time);
CREATE INDEX IF NOT EXISTS audit_events_action ON audit_events(action, time);
CREATE INDEX IF NOT EXISTS audit_events_rule ON audit_events(rule, time);
"""


# The trail names destinations, clients and fingerprints: owner and group only (SQLite gives
# its -wal and -shm files the database file's mode).
FILE_MODE = 0o640


def _private(path: Path) -> None:
    """Create the database file with FILE_MODE, or take away what others may do with it."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o007:
        os.chmod(path, mode & ~0o007)


class SqliteBackend(AuditBackend):
    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _private(path)
            conn = self.connect()
            try:
                conn.executescript(_SCHEMA)
                self._add_missing_columns(conn)
                conn.executescript(_DELETE_GUARD + _INDEXES)
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"{path}: cannot open audit database: {exc}") from None

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def interrupt(self, conn: Connection) -> None:
        if isinstance(conn, sqlite3.Connection):
            conn.interrupt()

    def begin_chain(self, cur: Cursor, instance_id: str) -> None:
        # One writer at a time for the whole file: the head read inside is the real head.
        cur.execute("BEGIN IMMEDIATE")

    @staticmethod
    def _add_missing_columns(conn: sqlite3.Connection) -> None:
        """Databases written by an older version get the newer columns (empty for old rows;
        rows without chain columns are reported by verification as written before the chain)."""
        present = {row[1] for row in conn.execute("PRAGMA table_info(audit_events)")}
        for column in EVENT_FIELDS:
            if column not in present:
                conn.execute(f"ALTER TABLE audit_events ADD COLUMN {_column(column)}")
        for column in CHAIN_COLUMNS:
            if column not in present:
                conn.execute(
                    f"ALTER TABLE audit_events ADD COLUMN {_column(column, required=False)}"
                )
        checkpoint_columns = {
            row[1] for row in conn.execute("PRAGMA table_info(audit_checkpoints)")
        }
        if "tally" not in checkpoint_columns:
            conn.execute("ALTER TABLE audit_checkpoints ADD COLUMN tally TEXT NOT NULL DEFAULT ''")
