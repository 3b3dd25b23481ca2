"""The audit trail writer: one background thread appends queued events to this instance's hash
chain, writes keyed checkpoints (at start, every ``checkpoint_seconds``, at shutdown) and runs
retention. The proxy's event loop only puts events on a queue: it never waits for a disk.

A database that fails (stopped, restarted, full) loses nothing that was queued: the writer keeps
the events in order, reconnects with back-off, and writes them when it answers again
(``phi_gateway_audit_store_up``, ``phi_gateway_audit_held_events``; readiness says so).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
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
# A failed write is retried after this, doubling up to the most.
_RETRY_FIRST_SECONDS = 0.5
_RETRY_MOST_SECONDS = 30.0
_BATCH = 500  # events in one transaction
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
    def __init__(
        self,
        backend: AuditBackend | Path,
        settings: ChainSettings | None = None,
        max_held: int = 100_000,
    ) -> None:
        self.backend = SqliteBackend(backend) if isinstance(backend, Path) else backend
        self.settings = settings or ChainSettings()
        self._checkpoint_key = derive_key(self.settings.secret, "checkpoint")
        self._queue: queue.Queue[object] = queue.Queue()
        self.write_errors = 0
        self.head: tuple[int, str] | None = None  # (seq, hash) last written by this process
        self._thread: threading.Thread | None = None
        self.up = True  # the last write (or connection) worked
        # Events taken from the queue, not yet written (the database is failing), in order.
        self._held: list[AuditEvent] = []
        self.max_held = max_held
        self._lost_logged = False
        self.unwritten = 0  # events still held when the writer stopped
        # Told when the store stops or starts taking events (None: it is back).
        self.on_state: Callable[[str | None], None] | None = None

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

    def accepting(self) -> bool:
        """Can another event still be written or held (not lost)?"""
        return len(self._held) < self.max_held

    def pending(self) -> int:
        """Events decided and not yet written: queued, or held while the store fails."""
        return self._queue.qsize() + len(self._held)

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
            if self._thread.is_alive():  # still trying a database that does not answer
                self.unwritten = self.pending()
                log.error("audit: %d decided event(s) not written at shutdown", self.unwritten)
            self._thread = None

    # -- the writer thread -------------------------------------------------------------------
    def _writer(self) -> None:
        """Append queued events in order. When the database fails (down, restarted, full), the
        events are kept, in order, and written when it answers again: the writer reconnects
        with back-off and retries; meanwhile the store reports itself down."""
        conn: Connection | None = None
        backlog = self._held
        waiters: list[threading.Event] = []
        retry_at, backoff = 0.0, _RETRY_FIRST_SECONDS
        next_checkpoint = time.monotonic()  # the startup checkpoint, once connected
        next_expiry = time.monotonic()
        dirty, started, stopping = False, False, False
        try:
            while True:
                now = time.monotonic()
                if conn is None:  # waiting to reconnect (checkpoints wait for a database)
                    wait = max(0.0, retry_at - now)
                else:
                    wait = max(0.0, next_checkpoint - now)
                    if backlog:
                        wait = min(wait, max(0.0, retry_at - now))
                try:
                    first = self._queue.get(timeout=wait)
                except queue.Empty:
                    first = None
                for item in self._gather(first) if first is not None else []:
                    if isinstance(item, AuditEvent):
                        self._hold(item)
                    elif isinstance(item, threading.Event):
                        waiters.append(item)
                    elif item is _STOP:
                        stopping = True
                now = time.monotonic()
                if conn is None and (now >= retry_at or stopping):
                    conn = self._connect()
                    if conn is not None and backlog and started:
                        self._forget_written(conn, backlog)
                    if conn is not None and not started:
                        self._checkpoint(conn, "startup")
                        started = True
                if conn is not None and backlog and (now >= retry_at or stopping):
                    while backlog and self._write(conn, backlog[:_BATCH]):
                        del backlog[:_BATCH]
                        dirty, backoff = True, _RETRY_FIRST_SECONDS
                    if backlog:  # the database failed: a fresh connection next time
                        conn.close()
                        conn = None
                if conn is None and (backlog or not started):
                    retry_at = now + backoff
                    backoff = min(backoff * 2, _RETRY_MOST_SECONDS)
                self._report(conn is not None and not backlog, len(backlog))
                if not backlog:
                    for waiter in waiters:
                        waiter.set()
                    waiters = []
                if conn is not None and now >= next_checkpoint:
                    if dirty:
                        self._checkpoint(conn, "interval")
                        dirty = False
                    elif started:  # nothing new: the last checkpoint still seals the head
                        metrics.AUDIT_LAST_CHECKPOINT.set(time.time())
                    next_checkpoint = now + self.settings.checkpoint_seconds
                if conn is not None and now >= next_expiry:
                    self._expire(conn)
                    next_expiry = now + _RETENTION_EVERY_SECONDS
                if stopping:
                    if conn is not None:
                        self._checkpoint(conn, "shutdown")
                    self.unwritten = len(backlog)
                    if backlog:
                        log.error(
                            "audit: %d decided event(s) could not be written before shutdown",
                            len(backlog),
                        )
                    for waiter in waiters:
                        waiter.set()
                    return
        finally:
            if conn is not None:
                conn.close()

    def _hold(self, event: AuditEvent) -> None:
        if len(self._held) >= self.max_held:
            # Past the bound, an event is lost, counted: memory stays bounded.
            self._lost(1)
            return
        self._held.append(event)

    def _lost(self, count: int) -> None:
        metrics.AUDIT_LOST_EVENTS.inc(count)
        if not self._lost_logged:
            self._lost_logged = True
            log.error(
                "audit: more than %d events held while the store is down: further events are "
                "lost (counted in phi_gateway_audit_lost_events_total)",
                self.max_held,
            )

    def _forget_written(self, conn: Connection, held: list[AuditEvent]) -> None:
        """After a failure, drop the held events the database did commit (its answer was
        lost with the connection): each event is in the trail once."""
        try:
            written = self.backend.written(conn, [e.incident_id for e in held])
        except self.backend.errors as exc:
            log.error("audit: cannot check which held events were written: %s", exc)
            return
        if written:
            held[:] = [e for e in held if e.incident_id not in written]

    def _connect(self) -> Connection | None:
        try:
            return self.backend.connect()
        except self.backend.errors as exc:
            log.error("audit database unusable: %s", exc)
            return None

    def _report(self, up: bool, held: int) -> None:
        metrics.AUDIT_STORE_UP.set(1 if up else 0)
        metrics.AUDIT_HELD_EVENTS.set(held)
        if up != self.up:
            self.up = up
            if self.on_state is not None:
                self.on_state(None if up else "audit store not writable; events held in memory")

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
