"""The audit trail writer: one background thread appends queued events to this instance's hash
chain, writes keyed checkpoints (at start, every ``checkpoint_seconds``, at shutdown) and runs
retention. The proxy's event loop only puts events on a queue: it never waits for a disk.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from gateway import metrics
from gateway.audit.backend import ROW_COLUMNS, AuditBackend, Connection
from gateway.audit.chain import derive_key, make_checkpoint
from gateway.audit.checkpoint_log import append_checkpoint
from gateway.audit.event import AuditEvent
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.errors import AuditError

log = logging.getLogger(__name__)
_STOP = object()
_GROUP_COMMIT_SECONDS = 0.005
_RETENTION_EVERY_SECONDS = 24 * 3600
DEFAULT_RETENTION_DAYS = 2192  # six years (HIPAA documentation retention, 45 CFR 164.316)

__all__ = ["AuditError", "AuditStore", "ChainSettings"]


@dataclass(frozen=True, slots=True)
class ChainSettings:
    instance_id: str = "gateway"
    secret: bytes = b""  # site secret; checkpoints are keyed by a key derived from it
    secret_from_environment: bool = False  # else a random key: checkpoints nobody can verify
    checkpoint_seconds: float = 300.0
    retention_days: int = DEFAULT_RETENTION_DAYS
    # Every checkpoint is also appended here, outside the database (None: not kept).
    checkpoint_log: Path | None = None


class AuditStore:
    def __init__(self, backend: AuditBackend | Path, settings: ChainSettings | None = None) -> None:
        self.backend = SqliteBackend(backend) if isinstance(backend, Path) else backend
        self.settings = settings or ChainSettings()
        self._checkpoint_key = derive_key(self.settings.secret, "checkpoint")
        self._queue: queue.Queue[object] = queue.Queue()
        self.write_errors = 0
        self.head: tuple[int, str] | None = None  # (seq, hash) last written by this process
        self._thread: threading.Thread | None = None

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def instance_id(self) -> str:
        return self.settings.instance_id

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
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        """Commit what is queued, write the shutdown checkpoint, stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(10)
            self._thread = None

    # -- the writer thread -------------------------------------------------------------------
    def _writer(self) -> None:
        try:
            conn = self.backend.connect()
        except self.backend.errors as exc:
            log.error("audit database unusable: %s", exc)
            self._drain_failed()
            return
        try:
            self._checkpoint(conn, "startup")
            self._expire(conn)
            next_checkpoint = time.monotonic() + self.settings.checkpoint_seconds
            next_expiry = time.monotonic() + _RETENTION_EVERY_SECONDS
            dirty = False
            while True:
                try:
                    first = self._queue.get(timeout=max(0.0, next_checkpoint - time.monotonic()))
                except queue.Empty:
                    first = None
                if time.monotonic() >= next_checkpoint:
                    if dirty:
                        self._checkpoint(conn, "interval")
                        dirty = False
                    else:  # nothing new: the last checkpoint still seals the head
                        metrics.AUDIT_LAST_CHECKPOINT.set(time.time())
                    next_checkpoint = time.monotonic() + self.settings.checkpoint_seconds
                if time.monotonic() >= next_expiry:
                    self._expire(conn)
                    next_expiry = time.monotonic() + _RETENTION_EVERY_SECONDS
                if first is None:
                    continue
                batch = self._gather(first)
                events = [e for e in batch if isinstance(e, AuditEvent)]
                if events:
                    dirty = self._write(conn, events) or dirty
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
                if any(item is _STOP for item in batch):
                    self._checkpoint(conn, "shutdown")
                    return
        finally:
            conn.close()

    def _gather(self, first: object) -> list[object]:
        # Group what arrives within a few milliseconds into one transaction: one fsync for
        # many events under load, one event's latency otherwise.
        batch = [first]
        time.sleep(_GROUP_COMMIT_SECONDS)
        while len(batch) < 500:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _drain_failed(self) -> None:
        """The database went away: count every queued event as failed, release waiters."""
        while True:
            item = self._queue.get()
            if isinstance(item, AuditEvent):
                self._failed(1)
            elif isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                return

    def _failed(self, count: int) -> None:
        self.write_errors += count
        metrics.AUDIT_WRITE_ERRORS.inc(count)

    def _write(self, conn: Connection, events: list[AuditEvent]) -> bool:
        # The chain is this store's: every event it appends carries its instance id.
        events = [
            e if e.instance_id == self.instance_id else replace(e, instance_id=self.instance_id)
            for e in events
        ]
        try:
            self.head = self.backend.append(conn, self.instance_id, events)
        except self.backend.errors as exc:
            self._failed(len(events))
            log.error("audit write failed for %d event(s): %s", len(events), exc)
            return False
        metrics.AUDIT_CHAIN_HEAD.set(self.head[0])
        return True

    def _checkpoint(self, conn: Connection, reason: str) -> None:
        """Seal the chain's current head with the keyed checkpoint (nothing to seal: skip)."""
        try:
            cur = conn.cursor()
            seq, head = self.backend.head(cur, self.instance_id)
            if seq == 0:
                return
            now = dt.datetime.now(dt.UTC)
            checkpoint = make_checkpoint(
                self._checkpoint_key,
                instance_id=self.instance_id,
                chain_seq=seq,
                head=head,
                time=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                reason=reason,
            )
            self.backend.add_checkpoint(conn, checkpoint)
        except self.backend.errors as exc:
            metrics.AUDIT_CHECKPOINT_ERRORS.inc()
            log.error("audit checkpoint failed: %s", exc)
            return
        if self.settings.checkpoint_log is not None:
            try:
                append_checkpoint(self.settings.checkpoint_log, checkpoint)
            except OSError as exc:
                metrics.AUDIT_CHECKPOINT_ERRORS.inc()
                log.error(
                    "audit checkpoint log %s not written: %s",
                    self.settings.checkpoint_log,
                    exc.strerror,
                )
                return
        metrics.AUDIT_CHAIN_HEAD.set(seq)
        metrics.AUDIT_LAST_CHECKPOINT.set(now.timestamp())
        log.info(
            "audit checkpoint (%s): %s seq %d %s", reason, self.instance_id, seq, checkpoint.mac
        )

    def _expire(self, conn: Connection) -> None:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.settings.retention_days)
        before = cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            expired = self.backend.expire(conn, self.instance_id, "", before)
        except self.backend.errors as exc:
            metrics.AUDIT_WRITE_ERRORS.inc()
            log.error("audit retention failed: %s", exc)
            return
        if expired:
            metrics.AUDIT_EXPIRED_EVENTS.inc(expired)
            log.warning("audit retention: %d event(s) older than %s expired", expired, before)
            self._checkpoint(conn, "expiry")

    # -- reading -----------------------------------------------------------------------------
    def recent(self, limit: int = 50) -> list[dict[str, object]]:
        conn = self.backend.connect()
        try:
            return self.backend.fetch(
                conn,
                f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events "  # noqa: S608
                "ORDER BY seq DESC LIMIT ?",
                (limit,),
            )
        finally:
            conn.close()
