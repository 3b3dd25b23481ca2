"""The audit journal: every decided event, written to a file as it is decided.

The writer thread commits queued events a few milliseconds after they are decided, so a
process killed with SIGKILL (or by the kernel's OOM killer) would lose the queue: blocks
already refused, with no row. The journal closes that gap: ``AuditStore.append`` writes each
event here (one ``write()``, no fsync: the page cache outlives the process, not the machine)
before the refusal is sent, and the next start moves whatever a killed run left into the
spool (fsync'd), from where the writer puts in the trail the events it does not hold yet
(by incident id, so an event committed before the kill is not written twice).

Bounded: the journal is two files. When the current one passes ``rotate_bytes`` it becomes
the previous one and a fresh file is started; the previous one is deleted once the writer
has made every event in it durable (written or spooled). A writer that falls behind
(a database down with the spool failing) stops the rotation, and the current file grows
with the events held in memory, which are bounded by ``audit.max_held_events``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import orjson

from gateway import metrics
from gateway.audit.event import AuditEvent
from gateway.audit.spool import FILE_MODE, read_events

log = logging.getLogger(__name__)
ROTATE_BYTES = 4 << 20


def journal_path(spool: Path) -> Path:
    """The journal beside a spool (``audit.db.spool`` -> ``audit.db.journal``)."""
    return spool.with_suffix(".journal")


class Journal:
    """Appended by whoever decides (under the store's numbering lock), settled by the
    writer thread (under the same lock)."""

    def __init__(self, path: Path, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.path = path
        self.previous = path.with_name(f"{path.name}.1")
        self.rotate_bytes = rotate_bytes
        self._fd = -1
        self._size = 0
        self._recorded = 0  # events recorded this run (the store's numbering)
        self._previous_through = 0  # the previous file holds events up to this number
        self._failing = False

    def leftovers(self) -> list[AuditEvent]:
        """The events a run that did not stop cleanly left (the previous file first)."""
        found: list[AuditEvent] = []
        for path in (self.previous, self.path):
            with contextlib.suppress(FileNotFoundError):
                found += read_events(path)
        return found

    def discard(self) -> None:
        """Forget the files (their events are durable elsewhere, or were never decided)."""
        self.close()
        for path in (self.previous, self.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._size = self._previous_through = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def record(self, event: AuditEvent) -> None:
        """Keep the event. Never raises: a journal that fails is counted and logged once,
        and the event still goes to the writer (it is only lost if the process dies)."""
        self._recorded += 1
        if self._fd < 0:
            return
        data = orjson.dumps(event) + b"\n"
        try:
            if os.write(self._fd, data) != len(data):
                raise OSError(28, "short write")
        except OSError as exc:
            metrics.AUDIT_JOURNAL_ERRORS.inc()
            if not self._failing:
                self._failing = True
                log.error("audit journal %s cannot be written: %s", self.path, exc.strerror)
            return
        self._failing = False
        self._size += len(data)
        if self._size >= self.rotate_bytes and not self._previous_through:
            self._rotate()

    def _rotate(self) -> None:
        try:
            os.replace(self.path, self.previous)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            metrics.AUDIT_JOURNAL_ERRORS.inc()
            log.error("audit journal %s cannot be rotated: %s", self.path, exc.strerror)
            return
        os.close(self._fd)
        self._fd, self._size = fd, 0
        self._previous_through = self._recorded

    def settled(self, durable: int) -> None:
        """The writer made this run's first ``durable`` events durable."""
        if self._previous_through and durable >= self._previous_through:
            with contextlib.suppress(FileNotFoundError):
                self.previous.unlink()
            self._previous_through = 0
