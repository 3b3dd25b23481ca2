"""RepeatFilter: a record that repeats is written once per interval, with its count."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gateway.logfilter import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[logging.Logger, RepeatFilter, Clock]]:
    clock = Clock()
    repeats = RepeatFilter(60, clock=clock, max_kinds=4)
    logger = logging.getLogger("test.repeats")
    repeats.attach("test.repeats")
    repeats.attach("test.repeats")  # once is enough
    caplog.set_level(logging.INFO, "test.repeats")
    yield logger, repeats, clock
    repeats.detach("test.repeats")
    assert repeats not in logger.filters


def fail(logger: logging.Logger) -> None:
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        logger.error("Unhandled error in task.", exc_info=True)


def hook_failed(logger: logging.Logger, hook: str) -> None:
    logger.warning("%s hook failed with %s", hook, "ValueError")  # one call site, as in the addon


def test_a_burst_is_one_record_then_its_count(
    world: tuple[logging.Logger, RepeatFilter, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    logger, repeats, clock = world
    assert len(logger.filters) == 1
    for _ in range(1000):
        fail(logger)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None  # the first keeps its traceback
    clock.now = 30
    repeats.flush()
    assert len(caplog.records) == 1  # not before the interval is over
    clock.now = 61
    repeats.flush()
    assert len(caplog.records) == 2
    summary = caplog.records[1]
    assert "repeated 999 more times in 60 s" in summary.getMessage()
    assert summary.exc_info is None
    repeats.flush()
    assert len(caplog.records) == 2  # the count is written once


def test_the_next_record_after_the_interval_carries_the_count(
    world: tuple[logging.Logger, RepeatFilter, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    logger, _, clock = world
    for _ in range(5):
        hook_failed(logger, "request")
    clock.now = 60
    hook_failed(logger, "request")
    assert [r.getMessage() for r in caplog.records] == [
        "request hook failed with ValueError",
        "request hook failed with ValueError (4 more like this before it, not shown)",
    ]


def test_kinds_are_told_apart_by_short_arguments_and_exception(
    world: tuple[logging.Logger, RepeatFilter, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    logger, _, _ = world
    for hook in ("request", "tcp_message", "request"):
        hook_failed(logger, hook)
    fail(logger)
    fail(logger)
    assert len(caplog.records) == 3


def test_long_arguments_do_not_make_new_kinds(
    world: tuple[logging.Logger, RepeatFilter, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    logger, _, _ = world
    for n in range(50):
        logger.warning("unexpected data: %s", "x" * 100 + str(n))
    assert len(caplog.records) == 1


def test_the_table_of_kinds_stays_bounded(
    world: tuple[logging.Logger, RepeatFilter, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    logger, repeats, _ = world
    for n in range(100):
        logger.warning("kind %s", n)
    assert len(repeats._kinds) == 4
    assert len(caplog.records) == 100  # different kinds are all written
