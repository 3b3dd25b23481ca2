"""One thread per SIEM output: read the trail after the output's cursor, send in order, retry
with back-off, and move the durable cursor only past what is confirmed delivered.

A restart or an outage loses nothing: what was not confirmed is sent again from the cursor
(the SIEM drops a duplicate by event id). The proxy never waits: the threads only read the
trail, over their own connections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway import metrics
from gateway.audit.backend import AuditBackend
from gateway.audit.event import event_timestamp
from gateway.audit.factory import instance_name
from gateway.config import Audit, FileOutput, GatewayConfig, HttpOutput, Siem, SyslogOutput
from gateway.siem import formats
from gateway.siem.trail import Cursor, TrailReader
from gateway.siem.transport import DeliveryError, Transport, transport_for

log = logging.getLogger(__name__)
Output = SyslogOutput | HttpOutput | FileOutput
_RETRY_FIRST_SECONDS = 0.5
_CHAINS_EVERY_SECONDS = 10.0
_LAG_EVERY_SECONDS = 2.0


def cursor_dir(siem: Siem, audit: Audit) -> Path:
    """Where the outputs' cursors live: configured, or beside the audit database."""
    if siem.cursor_dir is not None:
        return siem.cursor_dir
    if audit.backend == "postgresql":
        return audit.database.parent / f"siem-{instance_name(audit)}"
    return audit.database.with_name(f"{audit.database.name}.siem")


def describe_output(output: Output) -> str:
    """One line for the start banner: name, format, where (never a token)."""
    if isinstance(output, SyslogOutput):
        where = f"syslog {output.transport}{'+tls' if output.tls else ''} {output.address}"
    elif isinstance(output, HttpOutput):
        where = f"http {output.url}"
    else:
        where = f"file {output.path}"
    return f"{output.name}: {output.format} to {where}"


class Forwarder:
    def __init__(
        self,
        output: Output,
        backend: AuditBackend,
        cursor_path: Path,
        *,
        poll_seconds: float = 0.5,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.name = output.name
        self.reader = TrailReader(backend)
        self.backend = backend
        self.cursor = Cursor(cursor_path)
        self.poll_seconds = poll_seconds
        self.transport = transport or transport_for(output)
        self.clock = clock
        self.sent: dict[str, int] = {}  # sent, maybe not yet confirmed
        self._unconfirmed: list[tuple[float, dict[str, int], int]] = []
        self._chains: list[str] = []
        self._chains_at = -_CHAINS_EVERY_SECONDS
        self._lag_at = -_LAG_EVERY_SECONDS
        self._next = 0  # round-robin position among chains
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry = _RETRY_FIRST_SECONDS
        self.last_error = ""
        self.encode = formats.encode(output.format)

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Read the cursor (raises ValueError when it is not one)."""
        self.cursor.load()
        if not self.cursor.existed and self.output.start_at == "end":
            self.cursor.positions = {
                chain: self.reader.head(chain) for chain in self.reader.chains()
            }
            self.cursor.save()
        self.sent = dict(self.cursor.positions)
        metrics.SIEM_UP.labels(self.name).set(1)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"siem-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.transport.close()
        self.reader.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._measure()
            try:
                busy = self.step()
                self._retry = _RETRY_FIRST_SECONDS
                metrics.SIEM_UP.labels(self.name).set(1)
                self.last_error = ""
            except DeliveryError as exc:
                self._failed(str(exc))
                continue
            except self.backend.errors as exc:
                self._failed(f"reading the audit trail failed: {type(exc).__name__}")
                continue
            except Exception as exc:  # a bug: counted, retried, never a silent stop
                log.exception("SIEM output %s: unexpected error", self.name)
                self._failed(f"internal error: {type(exc).__name__}")
                continue
            if not busy:
                self._stop.wait(self.poll_seconds)
        self._drain()

    def _measure(self) -> None:
        """The lag gauges, every few seconds, through outages too."""
        now = self.clock()
        if now - self._lag_at < _LAG_EVERY_SECONDS:
            return
        self._lag_at = now
        try:
            if not self._chains:
                self._chains = self.reader.chains()
            self._update_lag()
        except self.backend.errors:
            pass  # counted by the reading step itself

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("SIEM output %s: %s; retrying", self.name, message)
        self.last_error = message
        metrics.SIEM_FAILURES.labels(self.name).inc()
        metrics.SIEM_UP.labels(self.name).set(0)
        self.transport.close()
        self.sent = dict(self.cursor.positions)  # everything unconfirmed goes again
        self._unconfirmed.clear()
        self._stop.wait(self._retry)
        self._retry = min(self._retry * 2, self.output.retry_max_seconds)

    def _drain(self) -> None:
        """At shutdown: give what was sent its chance to be confirmed."""
        if not self._unconfirmed:
            return
        deadline = self.clock() + self.transport.confirm_seconds
        while self._unconfirmed and self.clock() < deadline + 0.05:
            time.sleep(0.05)
            try:
                self._confirm()
            except DeliveryError:
                return

    # -- one step ----------------------------------------------------------------------------
    def step(self) -> bool:
        """Confirm what is due, send one batch; True when a batch was sent."""
        self._confirm()
        now = self.clock()
        if now - self._chains_at >= _CHAINS_EVERY_SECONDS:
            self._chains = self.reader.chains()
            self._chains_at = now
        return self._send_one()

    def _send_one(self) -> bool:
        chains = self._chains
        for offset in range(len(chains)):
            chain = chains[(self._next + offset) % len(chains)]
            rows = self.reader.after(chain, self.sent.get(chain, 0), self.output.batch_events)
            if not rows:
                continue
            messages = [
                (formats.syslog_severity(row), formats.event_id(row), self.encode(row))
                for row in rows
            ]
            self.transport.send(messages)
            self.sent[chain] = int(rows[-1]["chain_seq"])
            self._next = (self._next + offset + 1) % len(chains)
            self._unconfirmed.append((self.clock(), dict(self.sent), len(rows)))
            if self.transport.confirm_seconds <= 0:
                self._confirm()
            return True
        return False

    def _confirm(self) -> None:
        if not self._unconfirmed:
            return
        if not self.transport.alive():
            raise DeliveryError("the receiver closed the connection before confirming")
        due = self.clock() - self.transport.confirm_seconds
        confirmed = 0
        positions: dict[str, int] | None = None
        while self._unconfirmed and self._unconfirmed[0][0] <= due:
            _, positions, count = self._unconfirmed.pop(0)
            confirmed += count
        if positions is not None:
            self.cursor.positions = dict(positions)
            self.cursor.save()
            metrics.SIEM_DELIVERED.labels(self.name).inc(confirmed)

    def _update_lag(self) -> None:
        events = 0
        oldest: str | None = None
        for chain in self._chains:
            delivered = self.cursor.positions.get(chain, 0)
            behind = self.reader.head(chain) - delivered
            if behind > 0:
                events += behind
                first = self.reader.time_after(chain, delivered)
                if first is not None and (oldest is None or first < oldest):
                    oldest = first
        metrics.SIEM_LAG_EVENTS.labels(self.name).set(events)
        seconds = 0.0
        when = event_timestamp(oldest) if oldest is not None else 0.0
        if when:
            seconds = max(0.0, time.time() - when)
        metrics.SIEM_LAG_SECONDS.labels(self.name).set(seconds)


class SiemService:
    """The forwarders of a config's ``siem.outputs``; a reload restarts only the outputs
    whose settings changed (a cursor is kept by name, so a restarted output resumes)."""

    def __init__(self) -> None:
        self.forwarders: dict[str, Forwarder] = {}

    def apply(self, config: GatewayConfig, backend: AuditBackend) -> list[str]:
        """Start, keep, restart or stop forwarders to match ``config``; returns problems
        (an output that could not start is named; the others run).

        ``backend``: the running store's own (a reload never moves it). Never a second
        SqliteBackend in this process: opening one opens and closes the database file,
        and closing any descriptor of it drops the process's POSIX locks that the store's
        connections rely on."""
        siem = config.siem
        problems: list[str] = []
        wanted = {o.name: o for o in siem.outputs}
        for name in list(self.forwarders):
            if name not in wanted or self.forwarders[name].output != wanted[name]:
                self.forwarders.pop(name).stop()
        if not wanted:
            return problems
        directory = cursor_dir(siem, config.audit)
        for name, output in wanted.items():
            if name in self.forwarders:
                continue
            forwarder = Forwarder(
                output, backend, directory / f"{name}.cursor", poll_seconds=siem.poll_seconds
            )
            failures: tuple[type[Exception], ...] = (ValueError, OSError, *backend.errors)
            try:
                forwarder.open()
            except failures as exc:
                problems.append(f"siem.outputs {name}: {exc}")
                continue
            forwarder.start()
            self.forwarders[name] = forwarder
        return problems

    def stop(self) -> None:
        for forwarder in self.forwarders.values():
            forwarder.stop()
        self.forwarders.clear()
