"""Hostile PDFs read the way the proxy reads them (the pool of reader processes): each gets a
counted decision within the time budget, never a crash and never a pass abroad; the plain
control built the same way is read and passes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway.config import Limits, parse_config
from gateway.formats.pdf.extract import inflated_bytes
from gateway.inspector import Inspector
from gateway.model import Action, Destination, Jurisdiction, Location
from gateway.policy import decide
from gateway.workers import DocumentWorkers
from tests.support import hostile_pdfs

LIMITS = Limits()
ABROAD = Destination(
    "vendor.example", 443, (Jurisdiction("127.0.0.2", Location.FOREIGN, "IN", reason="database"),)
)
HOSTILE = {
    "flate-bomb": (hostile_pdfs.flate_bomb, "max_decompressed_bytes"),
    "deeply-nested": (hostile_pdfs.deeply_nested, "max_nesting_depth"),
    "many-pages": (hostile_pdfs.many_pages, "max_pdf_pages"),
    "page-tree-cycle": (hostile_pdfs.page_tree_cycle, ""),
}


@pytest.fixture(scope="module")
def inspector() -> Iterator[Inspector]:
    workers = DocumentWorkers(1, LIMITS.max_document_memory_bytes)
    workers.start()
    yield Inspector(LIMITS, workers=workers)
    workers.close()


def test_the_control_is_read_and_passes(inspector: Inspector) -> None:
    result = inspector.inspect(hostile_pdfs.plain())
    assert result.inspected and not result.contains_phi, result.error
    assert decide(ABROAD, result, parse_config({})).action is Action.ALLOW


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pdfs_are_refused_within_the_budget(inspector: Inspector, name: str) -> None:
    build, limit = HOSTILE[name]
    body = build()
    assert len(body) < 2 * 1024 * 1024  # small on the wire: the harm is in the reading
    started = time.monotonic()
    result = inspector.inspect(body)
    assert time.monotonic() - started < LIMITS.max_inspection_seconds + 1
    assert not result.inspected and not result.internal, (name, result)
    assert result.limit == limit, (name, result.error)
    verdict = decide(ABROAD, result, parse_config({}))
    assert verdict.action is Action.BLOCK and verdict.rule == "uninspectable"
    # The reader survives: the next document is read.
    assert inspector.inspect(hostile_pdfs.plain()).inspected


def test_inflation_is_counted_only_up_to_the_budget() -> None:
    bomb = hostile_pdfs.flate_bomb()
    assert 1024 < inflated_bytes(bomb, 1024) < 2 * 1024 * 1024  # stopped just past it
    assert inflated_bytes(hostile_pdfs.plain(), 1 << 20) == 0  # not compressed
    assert inflated_bytes(b"stream\n" + b"\x78\x9c garbage", 1 << 20) == 0


def test_a_long_pdf_is_shared_among_idle_readers() -> None:
    from gateway import metrics
    from tests.support import documents as docs
    from tests.support.patients import make_patient

    patient = make_patient(808)
    workers = DocumentWorkers(2, LIMITS.max_document_memory_bytes)
    workers.start()
    try:
        inspector = Inspector(LIMITS, workers=workers)
        read = metrics.DOCUMENT_WORKERS.labels("read")
        before = read._value.get()
        result = inspector.inspect(docs.long_summary_pdf(patient, 12))
        assert read._value.get() == before + 2  # two shares, one per idle reader
        assert result.contains_phi
        assert any(f.location.startswith("pdf.page[12]") for f in result.findings)
        short = inspector.inspect(docs.long_summary_pdf(patient, 2))
        assert read._value.get() == before + 3 and short.contains_phi  # read whole
    finally:
        workers.close()
