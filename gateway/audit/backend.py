"""What every audit database does, in SQL both SQLite and PostgreSQL understand.

A backend appends events to one instance's chain inside a transaction that holds the chain's
lock (so the head it extends is the real head), records checkpoints, expires old events and
answers read queries. Statements use ``?`` placeholders; a backend rewrites them if its driver
wants another style. Table and column names are ours; every value is a bound parameter.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from gateway.audit.chain import EVENT_FIELDS, GENESIS, Checkpoint, event_hash
from gateway.audit.event import AuditEvent, expiry_event

CHAIN_COLUMNS = ("chain_seq", "prev_hash", "hash")
ROW_COLUMNS = ("seq", *EVENT_FIELDS, *CHAIN_COLUMNS)
CHECKPOINT_COLUMNS = (
    "instance_id",
    "time",
    "chain_seq",
    "hash",
    "reason",
    "key_id",
    "mac",
    "tally",
)
RETENTION_COLUMNS = ("instance_id", "time", "through_seq", "through_hash", "expired", "before")
INTEGER_COLUMNS = frozenset({"port", "chain_seq", "through_seq", "expired"})


class Cursor(Protocol):
    description: Any

    def execute(self, sql: Any, params: Sequence[Any] = ..., /) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def cursor(self) -> Any: ...
    def close(self) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditBackend(ABC):
    """One audit database. Connections are opened per user (writer thread, CLI, API request)."""

    #: where the events live, for messages (a path, or a DSN without its password)
    location: str
    #: driver errors that mean "the database failed" (caught, counted, reported)
    errors: tuple[type[Exception], ...]

    @abstractmethod
    def connect(self) -> Connection:
        """A connection in autocommit mode: transactions are opened explicitly."""

    @abstractmethod
    def begin_chain(self, cur: Cursor, instance_id: str) -> None:
        """Open a write transaction holding the lock on ``instance_id``'s chain."""

    def sql(self, statement: str) -> str:
        return statement

    @abstractmethod
    def interrupt(self, conn: Connection) -> None:
        """Make a call stalled on ``conn`` (from another thread) fail with one of ``errors``."""

    # -- reading -------------------------------------------------------------------------------
    def fetch(
        self, conn: Connection, statement: str, params: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        cur = conn.cursor()
        cur.execute(self.sql(statement), tuple(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def fetch_once(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """``fetch`` over a connection of its own, closed after (one read, one caller)."""
        conn = self.connect()
        try:
            return self.fetch(conn, statement, params)
        finally:
            conn.close()

    def written(self, conn: Connection, incident_ids: Sequence[str]) -> set[str]:
        """Which of these incidents are already in the trail (a commit whose answer was
        lost on a failing connection is not written twice)."""
        found: set[str] = set()
        cur = conn.cursor()
        for start in range(0, len(incident_ids), 500):
            chunk = list(incident_ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            cur.execute(
                self.sql(f"SELECT incident_id FROM audit_events WHERE incident_id IN ({marks})"),  # noqa: S608
                chunk,
            )
            found.update(str(row[0]) for row in cur.fetchall())
        return found

    def head(self, cur: Cursor, instance_id: str) -> tuple[int, str]:
        cur.execute(
            self.sql(
                "SELECT chain_seq, hash FROM audit_events WHERE instance_id = ? "
                "AND chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1"
            ),
            (instance_id,),
        )
        row = cur.fetchall()
        if row:
            return int(row[0][0]), str(row[0][1])
        return 0, GENESIS

    # -- writing -------------------------------------------------------------------------------
    def append(
        self, conn: Connection, instance_id: str, events: Sequence[AuditEvent]
    ) -> tuple[int, str]:
        """Append events to the instance's chain in one transaction; returns the new head."""
        cur = conn.cursor()
        self.begin_chain(cur, instance_id)
        try:
            seq, head = self.head(cur, instance_id)
            seq, head = self._insert(cur, seq, head, events)
            cur.execute("COMMIT")
        except BaseException:
            # The original error is the one to report: after a failed COMMIT (a full disk)
            # or a lost connection there may be no transaction left to roll back.
            with contextlib.suppress(*self.errors):
                cur.execute("ROLLBACK")
            raise
        return seq, head

    def _insert(
        self, cur: Cursor, seq: int, head: str, events: Sequence[AuditEvent]
    ) -> tuple[int, str]:
        columns = (*EVENT_FIELDS, *CHAIN_COLUMNS)
        statement = self.sql(
            f"INSERT INTO audit_events ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        for event in events:
            row = event.as_row()
            seq += 1
            digest = event_hash(row, seq, head)
            cur.execute(statement, (*(row[c] for c in EVENT_FIELDS), seq, head, digest))
            head = digest
        return seq, head

    def add_checkpoint(self, conn: Connection, checkpoint: Checkpoint) -> None:
        cur = conn.cursor()
        cur.execute(
            self.sql(
                f"INSERT INTO audit_checkpoints ({', '.join(CHECKPOINT_COLUMNS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' for _ in CHECKPOINT_COLUMNS)})"
            ),
            tuple(getattr(checkpoint, c) for c in CHECKPOINT_COLUMNS),
        )

    def expire(self, conn: Connection, instance_id: str, policy_version: str, before: str) -> int:
        """Remove this instance's events older than ``before`` (ISO time), recording it twice:
        a retention row (which lets the delete trigger through) and an expiry event in the
        chain (which says where the chain now starts). Returns how many events expired."""
        cur = conn.cursor()
        self.begin_chain(cur, instance_id)
        try:
            expired = self._expire(cur, instance_id, policy_version, before)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return expired

    def _expire(self, cur: Cursor, instance_id: str, policy_version: str, before: str) -> int:
        # The oldest event that is young enough to keep: everything before it in the chain goes
        # (events are near enough in time order that a straggler is kept, never one lost early).
        cur.execute(
            self.sql(
                "SELECT MIN(chain_seq) FROM audit_events WHERE instance_id = ? "
                "AND chain_seq IS NOT NULL AND time >= ?"
            ),
            (instance_id, before),
        )
        keep_from = cur.fetchall()[0][0]
        seq, head = self.head(cur, instance_id)
        through = seq if keep_from is None else int(keep_from) - 1
        cur.execute(
            self.sql(
                "SELECT COUNT(*) FROM audit_events WHERE instance_id = ? "
                "AND chain_seq IS NOT NULL AND chain_seq <= ?"
            ),
            (instance_id, through),
        )
        count = cur.fetchall()[0][0]
        if not count:
            return 0
        cur.execute(
            self.sql("SELECT hash FROM audit_events WHERE instance_id = ? AND chain_seq = ?"),
            (instance_id, through),
        )
        through_hash = str(cur.fetchall()[0][0])
        cur.execute(
            self.sql(
                f"INSERT INTO audit_retention ({', '.join(RETENTION_COLUMNS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' for _ in RETENTION_COLUMNS)})"
            ),
            (instance_id, _now(), through, through_hash, int(count), before),
        )
        event = expiry_event(
            instance_id=instance_id,
            policy_version=policy_version,
            through_seq=through,
            through_hash=through_hash,
            count=int(count),
            before=before,
        )
        self._insert(cur, seq, head, [event])
        cur.execute(
            self.sql("DELETE FROM audit_events WHERE instance_id = ? AND chain_seq <= ?"),
            (instance_id, through),
        )
        return int(count)
