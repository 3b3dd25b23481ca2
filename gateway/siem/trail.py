"""The audit trail as a SIEM output reads it: chain by chain, in chain order, after a
durable cursor (the last sequence number delivered in each chain).

Per chain, not by the table's row number: with PostgreSQL, concurrent writers' rows become
visible out of row-number order, while a chain's numbers are given under the chain's lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.backend import ROW_COLUMNS, AuditBackend, Connection

# Every chain in the trail, in O(chains x log events) with the (instance_id, chain_seq)
# index (a plain DISTINCT reads the whole index).
_CHAINS = """
WITH RECURSIVE chains(id) AS (
    SELECT MIN(instance_id) FROM audit_events
    UNION ALL
    SELECT (SELECT MIN(instance_id) FROM audit_events WHERE instance_id > chains.id)
    FROM chains WHERE chains.id IS NOT NULL
)
SELECT id FROM chains WHERE id IS NOT NULL
"""


class TrailReader:
    """Reads one trail over its own connection (reopened after a failure)."""

    def __init__(self, backend: AuditBackend) -> None:
        self.backend = backend
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.backend.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*self.backend.errors):
                self._conn.close()
            self._conn = None

    def _fetch(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            return self.backend.fetch(self._connection(), statement, params)
        except self.backend.errors:
            self.close()
            raise

    def chains(self) -> list[str]:
        return [str(row["id"]) for row in self._fetch(_CHAINS)]

    def head(self, chain: str) -> int:
        rows = self._fetch(
            "SELECT MAX(chain_seq) AS n FROM audit_events WHERE instance_id = ?", (chain,)
        )
        value = rows[0]["n"] if rows else None
        return int(value) if value is not None else 0

    def after(self, chain: str, seq: int, limit: int) -> list[dict[str, Any]]:
        return self._fetch(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events "  # noqa: S608
            "WHERE instance_id = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?",
            (chain, seq, limit),
        )

    def time_after(self, chain: str, seq: int) -> str | None:
        """The time of the first event after ``seq`` in the chain (the oldest undelivered)."""
        rows = self._fetch(
            "SELECT time FROM audit_events WHERE instance_id = ? AND chain_seq > ? "
            "ORDER BY chain_seq LIMIT 1",
            (chain, seq),
        )
        return str(rows[0]["time"]) if rows else None


class Cursor:
    """The last sequence number delivered, per chain, of one output: a small JSON file,
    replaced atomically (written, fsync'd, renamed) after every delivery."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.positions: dict[str, int] = {}
        self.existed = False

    def load(self) -> None:
        """Raises ValueError when the file exists but is not a cursor (never guessed: a
        cursor read wrong would resend or skip a whole trail)."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: unreadable SIEM cursor: {exc}") from None
        chains = data.get("chains") if isinstance(data, dict) else None
        if not isinstance(chains, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in chains.items()
        ):
            raise ValueError(f"{self.path}: not a SIEM cursor")
        self.positions = dict(chains)
        self.existed = True

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.tmp")
        payload = orjson.dumps(
            {"version": 1, "chains": self.positions}, option=orjson.OPT_SORT_KEYS
        )
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        with contextlib.suppress(OSError):
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self.existed = True
