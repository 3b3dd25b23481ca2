"""``RepeatFilter``: a log record that repeats is written once per interval, with its count.

Under load one cause fails many connections or requests the same way (the event loop's
``accept()`` when descriptors run out, a hook failing on every request): one line per
event buried the log at a megabyte a second. Records of one *kind* — the same logging call,
level and exception type, and for our own loggers the same short arguments — are let through
the first time, then held back for the interval; the next one after it says how many were
held, and ``flush()`` (called every second by the connection watch) writes the count of a
burst that stopped. The count never repeats a held record's text beyond the last one's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

INTERVAL_SECONDS = 60.0
_SUMMARY = "phi_gateway_repeat_summary"
# Arguments this short name the kind (a hook, an exception type); longer ones are text.
_SHORT_ARGUMENT = 64


@dataclass(slots=True)
class _Kind:
    written: float  # when a record of this kind last went through
    held: int = 0
    last: logging.LogRecord | None = None


class RepeatFilter(logging.Filter):
    """Attach to the loggers whose records repeat (``attach``); one instance may serve many."""

    def __init__(
        self,
        interval: float = INTERVAL_SECONDS,
        *,
        max_kinds: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.max_kinds = max_kinds
        self._clock = clock
        self._kinds: dict[Hashable, _Kind] = {}
        self._lock = threading.Lock()

    def attach(self, *names: str) -> None:
        for name in names:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

    def detach(self, *names: str) -> None:
        for name in names:
            logging.getLogger(name).removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        key = _kind_of(record)
        now = self._clock()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None:
                if len(self._kinds) >= self.max_kinds:
                    # The oldest kind goes: an unbounded variety of records never grows this.
                    del self._kinds[next(iter(self._kinds))]
                self._kinds[key] = _Kind(now)
                return True
            if now - kind.written < self.interval:
                kind.held += 1
                kind.last = record
                return False
            held, kind.written, kind.held, kind.last = kind.held, now, 0, None
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this before it, not shown)"
            record.args = None
        return True

    def flush(self) -> None:
        """Write the count of every burst whose interval has passed with records held."""
        now = self._clock()
        summaries: list[logging.LogRecord] = []
        with self._lock:
            for kind in self._kinds.values():
                if kind.held and kind.last is not None and now - kind.written >= self.interval:
                    summaries.append(_summary(kind.last, kind.held, self.interval))
                    kind.written, kind.held, kind.last = now, 0, None
        for summary in summaries:
            logging.getLogger(summary.name).handle(summary)


def _kind_of(record: logging.LogRecord) -> Hashable:
    exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
    args = record.args if isinstance(record.args, tuple) else ()
    short = tuple(
        a for a in args if isinstance(a, str | int | float) and len(str(a)) <= _SHORT_ARGUMENT
    )
    return (record.name, record.levelno, record.pathname, record.lineno, exc_type, short)


def _summary(last: logging.LogRecord, held: int, interval: float) -> logging.LogRecord:
    summary = logging.makeLogRecord(dict(last.__dict__))
    summary.msg = f"{last.getMessage()} (repeated {held} more times in {interval:g} s)"
    summary.args = None
    summary.exc_info = summary.exc_text = summary.stack_info = None
    summary.created = time.time()
    setattr(summary, _SUMMARY, True)
    return summary
