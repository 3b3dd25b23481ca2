"""The audit trail writer: one background thread appends queued events to this instance's hash
chain, writes keyed checkpoints (at start, every ``checkpoint_seconds``, at shutdown) and runs
retention. The proxy's event loop only puts events on a queue: it never waits for a disk.

A database that fails (stopped, restarted, full, stalled) loses nothing that was queued: the
writer puts the events, in order, in the durable spool (spool.py), reconnects with back-off,
and writes them from there when it answers again (``phi_gateway_audit_store_up``,
``phi_gateway_audit_spool_events``; readiness says so). Only if the spool fails too are events
held in memory, and then decisions that need a record are refused (``accepting``).

Every event is numbered as it is decided (``run_seq``), and each checkpoint's tally says how
many this run had numbered: ``audit verify`` reports a number no event carries as an event
decided and never written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from gateway import metrics
from gateway.audit.backend import ROW_COLUMNS, AuditBackend, Connection
from gateway.audit.chain import derive_key, make_checkpoint
from gateway.audit.checkpoint_log import append_checkpoint
from gateway.audit.event import AuditEvent, event_timestamp
from gateway.audit.journal import Journal
from gateway.audit.spool import Spool, SpoolFull
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.errors import AuditError

log = logging.getLogger(__name__)
_STOP = object()
# Events arriving within this are one transaction: under load, one commit for many (an
# insert alone costs several times its share of a batch). The journal, not the commit,
# keeps an event through a kill, so the window costs no durability.
_GROUP_COMMIT_SECONDS = 0.005
# A failed write is retried after this, doubling up to the most.
_RETRY_FIRST_SECONDS = 0.5
_RETRY_MOST_SECONDS = 30.0
_BATCH = 500  # events in one transaction
_SPOOL_BATCHES = 20  # spooled batches written before the queue is looked at again
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
        *,
        max_held: int = 100_000,
        spool: Spool | None = None,
        write_timeout: float = 10.0,
        forward_while_spooling: bool = True,
        journal: Journal | None = None,
    ) -> None:
        self.backend = SqliteBackend(backend) if isinstance(backend, Path) else backend
        self.settings = settings or ChainSettings()
        self._checkpoint_key = derive_key(self.settings.secret, "checkpoint")
        self._queue: queue.Queue[object] = queue.Queue()
        self.write_errors = 0
        self.head: tuple[int, str] | None = None  # (seq, hash) last written by this process
        self._thread: threading.Thread | None = None
        self.up = True  # the last write (or connection) worked
        # Events taken from the queue, not yet written or spooled, in order.
        self._held: list[AuditEvent] = []
        self.max_held = max_held
        self.spool = spool
        # Every event as it is decided, so a killed process loses none (journal.py).
        self.journal = journal if spool is not None else None
        self.write_timeout = write_timeout
        self.forward_while_spooling = forward_while_spooling
        self.durable = True  # the store or the spool took the last events it was given
        self._reported_durable = True
        self._lost_logged = False
        self._spool_failure = ""  # the spool's last failure, logged once until it works again
        self.unwritten = 0  # events neither written nor spooled when the writer stopped
        self.spooled = 0  # events left in the spool when the writer stopped
        # Told when the store stops or starts taking events: (message or None when back,
        # whether decisions are still recorded durably, i.e. spooled).
        self.on_state: Callable[[str | None, bool], None] | None = None
        # Each event is numbered as it is decided: "<run>/<n>" (see tally_event).
        self.run = secrets.token_hex(4)
        self._numbered = 0
        self._number_lock = threading.Lock()
        self._taken = 0  # of this run's numbered events, how many the writer has taken
        self._busy: tuple[float, Connection] | None = None  # a database call in progress
        self._stopped = threading.Event()

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def decided(self) -> int:
        """Events of this run the writer has taken (written, spooled, held or lost)."""
        return self._taken

    @property
    def instance_id(self) -> str:
        return self.settings.instance_id

    def start(self) -> None:
        if self._thread is None:
            self._recover()
            self._stopped.clear()
            metrics.AUDIT_QUEUED_EVENTS.set_function(self._queue.qsize)
            self._thread = threading.Thread(target=self._writer, name="audit-writer", daemon=True)
            self._thread.start()
            threading.Thread(target=self._watch, name="audit-watchdog", daemon=True).start()

    def append(self, event: AuditEvent) -> None:
        """Number and queue an event; never blocks the caller."""
        self.append_made(lambda run_seq: replace(event, run_seq=run_seq))

    def append_made(self, make: Callable[[str], AuditEvent]) -> None:
        """Number, make (``make(run_seq)``) and queue an event: the decision path builds its
        event with its number instead of copying it."""
        if self._thread is None:
            self.start()
        with self._number_lock:  # numbers follow the queue's order
            self._numbered += 1
            event = make(f"{self.run}/{self._numbered}")
            if self.journal is not None:
                self.journal.record(event)
            self._queue.put(event)

    def _recover(self) -> None:
        """Put in the spool what a run that was killed left in the journal; the writer
        writes the events the trail does not hold yet."""
        journal, spool = self.journal, self.spool
        if journal is None or spool is None:
            return
        leftovers = journal.leftovers()
        if leftovers:
            try:
                spool.append(leftovers)
            except (SpoolFull, OSError) as exc:
                log.error(
                    "audit journal %s: %d event(s) a killed run left cannot be spooled (%s): "
                    "kept for the next start; this run keeps no journal",
                    journal.path,
                    len(leftovers),
                    exc,
                )
                self.journal = None
                return
            log.warning(
                "audit journal %s: %d event(s) left by a run that did not stop cleanly are "
                "spooled; the ones not in the trail yet are written",
                journal.path,
                len(leftovers),
            )
        try:
            journal.discard()
            journal.open()
        except OSError as exc:
            log.error("audit journal %s cannot be opened: %s", journal.path, exc.strerror)
            self.journal = None

    def accepting(self) -> bool:
        """Can another event still be recorded: written, or spooled durably? (Events held
        in memory past both are not a record.)"""
        if not self.durable or (not self.up and not self.forward_while_spooling):
            return False
        return len(self._held) < self.max_held

    def pending(self) -> int:
        """Events decided and not yet written: queued, held or spooled while the store fails."""
        spooled = self.spool.events if self.spool is not None else 0
        return self._queue.qsize() + len(self._held) + spooled

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued event is committed (or, while the store fails, spooled)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued (or spool it), seal the chain, stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            # A stalled database call is cut after write_timeout; then the events are spooled.
            self._thread.join(self.write_timeout + 10)
            if self._thread.is_alive():
                self.unwritten = self._queue.qsize() + len(self._held)
                log.error("audit: %d decided event(s) not written at shutdown", self.unwritten)
            journal = self.journal
            if journal is not None:
                with self._number_lock:
                    if self.unwritten:  # kept: the next start writes them
                        journal.close()
                    else:
                        journal.discard()
            self._stopped.set()
            self._thread = None

    # -- the writer thread -------------------------------------------------------------------
    def _writer(self) -> None:
        """Append queued events in order. When the database fails (down, restarted, full,
        stalled), the events go to the spool, in order, and are written from it when it
        answers again: the writer reconnects with back-off; meanwhile the store reports
        itself down (and, if the spool fails too, not recording)."""
        conn: Connection | None = None
        backlog = self._held
        waiters: list[threading.Event] = []
        retry_at, backoff = 0.0, _RETRY_FIRST_SECONDS
        next_checkpoint = time.monotonic()  # the startup checkpoint, once connected
        next_expiry = time.monotonic()
        dirty, started, stopping, failed = False, False, False, False
        written_at_stop = 0
        try:
            while True:
                now = time.monotonic()
                if conn is None:  # waiting to reconnect (checkpoints wait for a database)
                    wait = max(0.0, retry_at - now)
                elif self._spooled():
                    wait = 0.0  # drain the spool, a few batches at a time
                else:
                    wait = max(0.0, next_checkpoint - now)
                    if backlog:
                        wait = min(wait, max(0.0, retry_at - now))
                try:
                    first = self._queue.get(timeout=0.0 if stopping else wait)
                except queue.Empty:
                    first = None
                for item in self._gather(first) if first is not None else []:
                    if isinstance(item, AuditEvent):
                        self._taken += 1
                        self._hold(item)
                    elif isinstance(item, threading.Event):
                        waiters.append(item)
                    elif item is _STOP:
                        stopping = True
                now = time.monotonic()
                if conn is None and failed and backlog:
                    # Durable before trying a database that may take its connect timeout
                    # to answer (a hung server accepts, then says nothing).
                    self._to_spool(backlog)
                # At shutdown a failing database is not tried again: the spool is quicker.
                if conn is None and now >= retry_at and not (stopping and failed):
                    conn = self._connect(started)
                    if conn is not None and not started:
                        self._checkpoint(conn, "startup")
                        started = True
                if conn is not None and (now >= retry_at or stopping or self._spooled()):
                    ok, written = self._drain(conn, backlog, everything=stopping)
                    dirty = dirty or written > 0
                    if stopping:
                        written_at_stop += written
                    if ok:
                        backoff, failed = _RETRY_FIRST_SECONDS, False
                    else:  # the database failed: a fresh connection next time
                        conn.close()
                        conn = None
                        failed = True
                if conn is None:
                    failed = failed or bool(backlog) or not started
                if backlog and (conn is None or self._spooled()):
                    self._to_spool(backlog)  # keeps the order: the spool is drained first
                if conn is None and failed and now >= retry_at:
                    retry_at = now + backoff
                    backoff = min(backoff * 2, _RETRY_MOST_SECONDS)
                self._settle(len(backlog))
                self._report(conn is not None and not backlog and not self._spooled())
                if not backlog:
                    for waiter in waiters:
                        waiter.set()
                    waiters = []
                quiet = not backlog and not self._spooled()
                if conn is not None and quiet and (now >= next_checkpoint or stopping):
                    if dirty or stopping:
                        self._checkpoint(conn, "shutdown" if stopping else "interval")
                        dirty = False
                    elif started:  # nothing new: the last checkpoint still seals the head
                        metrics.AUDIT_LAST_CHECKPOINT.set(time.time())
                    next_checkpoint = now + self.settings.checkpoint_seconds
                if conn is not None and now >= next_expiry:
                    self._expire(conn)
                    next_expiry = now + _RETENTION_EVERY_SECONDS
                if stopping:
                    self._stop(backlog, written_at_stop)
                    for waiter in waiters:
                        waiter.set()
                    return
        finally:
            if conn is not None:
                conn.close()

    def _settle(self, held: int) -> None:
        """Tell the journal how many of this run's events are durable (taken from the queue
        in number order; held ones are not)."""
        if self.journal is not None:
            with self._number_lock:
                self.journal.settled(self._taken - held)

    def _spooled(self) -> bool:
        return self.spool is not None and self.spool.events > 0

    def _stop(self, backlog: list[AuditEvent], written: int) -> None:
        """Say where the decided events went."""
        self.unwritten = len(backlog)
        self.spooled = self.spool.events if self.spool is not None else 0
        if self.spooled or self.unwritten:
            log.error(
                "audit: shutdown with the store failing: %d event(s) written, %d in the "
                "spool %s (written at the next start), %d not recorded",
                written,
                self.spooled,
                self.spool.path if self.spool is not None else "-",
                self.unwritten,
            )

    def _drain(
        self, conn: Connection, backlog: list[AuditEvent], everything: bool
    ) -> tuple[bool, int]:
        """Write the spool, then the backlog: (False when the database failed, how many
        events were written)."""
        spool = self.spool
        batches = written = 0
        while spool is not None and spool.events and (everything or batches < _SPOOL_BATCHES):
            events, offset = spool.read(_BATCH)
            fresh = self._unwritten(conn, events)
            if fresh is None or (fresh and not self._write(conn, fresh)):
                return False, written
            spool.advance(offset, len(events))
            self._report_spool()
            batches += 1
            written += len(fresh)
        if spool is not None and spool.events:
            return True, written  # more next time round; the backlog waits behind it
        while backlog:
            batch = backlog[:_BATCH]
            if not self.up:  # after a failure a commit's answer may have been lost
                fresh = self._unwritten(conn, batch)
                if fresh is None:
                    return False, written
                batch = fresh
            if batch and not self._write(conn, batch):
                return False, written
            written += len(batch)
            del backlog[:_BATCH]
        return True, written

    def _to_spool(self, backlog: list[AuditEvent]) -> None:
        if self.spool is None:
            self.durable = len(backlog) < self.max_held
            return
        try:
            self.spool.append(backlog)
        except (SpoolFull, OSError) as exc:
            problem = str(exc) if isinstance(exc, SpoolFull) else str(exc.strerror or exc)
            metrics.AUDIT_SPOOL_ERRORS.inc()
            if problem != self._spool_failure:
                self._spool_failure = problem
                log.error(
                    "audit spool %s cannot take events: %s; %d event(s) held in memory",
                    self.spool.path,
                    problem,
                    len(backlog),
                )
            self.durable = False
            return
        backlog.clear()
        if self._spool_failure:
            log.warning("audit spool %s takes events again", self.spool.path)
        self._spool_failure = ""
        self.durable = True
        self._report_spool()

    def _report_spool(self) -> None:
        spool = self.spool
        if spool is None:
            return
        metrics.AUDIT_SPOOL_EVENTS.set(spool.events)
        metrics.AUDIT_SPOOL_BYTES.set(spool.size)
        oldest = event_timestamp(spool.oldest)
        metrics.AUDIT_SPOOL_OLDEST.set(oldest)

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
                "audit: more than %d events held while neither the store nor the spool takes "
                "them: further events are lost (counted in phi_gateway_audit_lost_events_total)",
                self.max_held,
            )

    def _unwritten(self, conn: Connection, events: list[AuditEvent]) -> list[AuditEvent] | None:
        """The events the trail does not hold yet (a commit whose answer was lost with the
        connection, or a spool replayed after a crash, is not written twice); None when the
        database failed."""
        try:
            with self._calling(conn):
                written = self.backend.written(conn, [e.incident_id for e in events])
        except self.backend.errors as exc:
            log.error("audit: cannot check which held events were written: %s", exc)
            return None
        fresh: dict[str, AuditEvent] = {}
        for event in events:  # the spool may hold an event twice (journal and spool)
            if event.incident_id not in written:
                fresh.setdefault(event.incident_id, event)
        return list(fresh.values())

    def _connect(self, started: bool) -> Connection | None:
        try:
            return self.backend.connect()
        except self.backend.errors as exc:
            # Before the first connection this is a warning: mitmproxy ends a start-up that
            # logs an error, and a gateway must start (and spool) while its database is down.
            (log.error if started else log.warning)("audit database unusable: %s", exc)
            return None

    @contextlib.contextmanager
    def _calling(self, conn: Connection) -> Iterator[None]:
        """Marks a database call the watchdog may cut when it stalls."""
        self._busy = (time.monotonic(), conn)
        try:
            yield
        finally:
            self._busy = None

    def _watch(self) -> None:
        """A database that stops answering (a stalled server, a hung disk) would hold the
        writer forever: after write_timeout its call is interrupted and fails like any other."""
        while not self._stopped.wait(min(1.0, self.write_timeout / 4)):
            busy = self._busy
            if busy is not None and time.monotonic() - busy[0] > self.write_timeout:
                log.error(
                    "audit database call stalled for more than %.0f s: interrupted",
                    self.write_timeout,
                )
                self._busy = None
                self.backend.interrupt(busy[1])

    def _report(self, up: bool) -> None:
        if up:
            self.durable = True
        metrics.AUDIT_STORE_UP.set(1 if up else 0)
        metrics.AUDIT_HELD_EVENTS.set(len(self._held))
        state = (up, self.durable)
        if state != (self.up, self._reported_durable):
            self.up, self._reported_durable = state
            if self.on_state is None:
                return
            if up:
                self.on_state(None, True)
            elif self.durable and self.spool is not None:
                where = self.spool.path
                self.on_state(f"audit store not writable; events spooled to {where}", True)
            else:
                self.on_state("audit store and spool not writable; events held in memory", False)

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
            with self._calling(conn):
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
            with self._calling(conn):
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
                    # Taken only when nothing is held: every number up to it was written
                    # or lost (a gap `audit verify` reports).
                    tally=f"{self.run}/{self._taken}" if self._taken else "",
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
