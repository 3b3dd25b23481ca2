"""The audit spool: decided events the store could not take, kept on the gateway's own disk.

While the database fails (down, restarting, full, stalled), the writer appends the events it
holds to this file — one JSON object per line, fsync'd before they leave memory — and writes
them to the trail, in order, when the store answers again; then the file is emptied. A
gateway killed meanwhile finds the file at its next start and writes it first. An event the
database committed but whose answer was lost may be in the spool too: the writer drops the
ones the trail already holds (by incident id), so each event is written once.

The file is bounded (``audit.spool_max_bytes``): past it, events stay in memory and the store
stops accepting decisions that need a record (see AuditStore.accepting).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from gateway.audit.event import AuditEvent
from gateway.errors import AuditError

FILE_MODE = 0o640  # like the trail: it names destinations and clients
_FIELDS = frozenset(f.name for f in dataclasses.fields(AuditEvent))
_READ_CHUNK = 1 << 20


class SpoolFull(Exception):
    """The events would take the spool past its size limit."""


def _event(line: bytes) -> AuditEvent | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    # A spool written by another version: unknown fields dropped, newer ones take defaults.
    try:
        return AuditEvent(**{k: v for k, v in data.items() if k in _FIELDS})
    except TypeError:
        return None


class Spool:
    """Append at the end, read from a cursor; used by the writer thread only."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._offset = 0  # where the first event not yet written starts
        self.events = 0  # events in the file after the cursor
        self.bad_lines = 0  # lines found at start that are not events (skipped, counted)
        self.oldest = ""  # time of the oldest event not yet written ("" when empty)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                self._size = self._recover(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"{path}: cannot open the audit spool: {exc.strerror}") from None
        self._peek_oldest()

    @property
    def size(self) -> int:
        return self._size

    def _recover(self, fd: int) -> int:
        """Count the events a previous run left, cutting a line a crash left half written."""
        size = os.fstat(fd).st_size
        end = 0
        position = 0
        remainder = b""
        while position < size:
            chunk = os.pread(fd, _READ_CHUNK, position)
            if not chunk:
                break
            position += len(chunk)
            data = remainder + chunk
            lines = data.split(b"\n")
            remainder = lines.pop()
            for line in lines:
                end += len(line) + 1
                if not line.strip():
                    continue
                if _event(line) is None:
                    self.bad_lines += 1
                else:
                    self.events += 1
        if end < size:
            os.ftruncate(fd, end)
            os.fsync(fd)
        return end

    def append(self, events: Sequence[AuditEvent]) -> None:
        """Write the events durably, or not at all. Raises SpoolFull or OSError."""
        data = b"".join(orjson.dumps(dataclasses.asdict(e)) + b"\n" for e in events)
        if self._size + len(data) > self.max_bytes:
            raise SpoolFull(f"{len(events)} event(s) would pass audit.spool_max_bytes")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(28, "No space left on device (short write)")
                os.fsync(fd)
            except OSError:
                # A disk that filled mid-write leaves half a line: take it back.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)
                raise
        finally:
            os.close(fd)
        self._size += len(data)
        if not self.events:
            self.oldest = events[0].time if events else ""
        self.events += len(events)

    def read(self, limit: int) -> tuple[list[AuditEvent], int]:
        """Up to ``limit`` events from the cursor, and the offset after them (for advance)."""
        found: list[AuditEvent] = []
        position = self._offset
        with self.path.open("rb") as spool:
            spool.seek(position)
            while len(found) < limit and position < self._size:
                line = spool.readline()
                if not line.endswith(b"\n"):
                    break
                position += len(line)
                if not line.strip():
                    continue
                event = _event(line)
                if event is not None:  # else counted in bad_lines when the spool was opened
                    found.append(event)
        return found, position

    def advance(self, offset: int, count: int) -> None:
        """These events are in the trail: move the cursor; an emptied spool is truncated."""
        self._offset = offset
        self.events = max(0, self.events - count)
        if self._offset >= self._size:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._offset = self._size = self.events = 0
        self._peek_oldest()

    def _peek_oldest(self) -> None:
        if self.events <= 0:
            self.oldest = ""
            return
        events, _ = self.read(1)
        self.oldest = events[0].time if events else ""


def read_events(path: Path) -> list[AuditEvent]:
    """Every whole event line of a file of them (a line cut by a crash is skipped)."""
    with path.open("rb") as source:
        lines = source.read().split(b"\n")
    lines.pop()  # after the last newline: empty, or a line cut short
    return [event for line in lines if line.strip() and (event := _event(line)) is not None]


def spooled_events(path: Path) -> int:
    """Events a spool file holds (read only; 0 when there is none), for ``audit verify``."""
    try:
        with path.open("rb") as spool:
            return sum(1 for line in spool if line.endswith(b"\n") and _event(line))
    except OSError:
        return 0
