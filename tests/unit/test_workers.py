"""The document readers' worker processes: a document that hangs, crashes or blows up its
reader costs one worker and comes back as an unreadable payload; the pool carries on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from gateway.workers import DocumentWorkers, WorkerError
from tests.support import documents as docs
from tests.support.patients import make_patient

MEMORY = 512 * 1024 * 1024


@pytest.fixture
def pool() -> Iterator[DocumentWorkers]:
    workers = DocumentWorkers(1, MEMORY, module="tests.support.worker_jobs")
    workers.start()
    yield workers
    workers.close()


def _reads(result: str) -> float:
    value = REGISTRY.get_sample_value("phi_gateway_document_reads_total", {"result": result})
    return value or 0.0


def _args() -> dict[str, int]:
    return {"max_pages": 100, "max_bytes": 10_000_000}


def test_a_pdf_is_read_in_a_worker(pool: DocumentWorkers) -> None:
    patient = make_patient(5)
    answer = pool.run("pdf", docs.discharge_summary_pdf(patient), _args(), 30)
    assert patient.ssn in answer["page_texts"][0]


def test_a_job_past_its_deadline_is_killed_and_the_next_one_is_served(
    pool: DocumentWorkers,
) -> None:
    before = _reads("timeout")
    started = time.monotonic()
    with pytest.raises(WorkerError) as caught:
        pool.run("sleep", b"", {"seconds": 30}, 0.5)
    assert time.monotonic() - started < 5
    assert caught.value.limit == "max_inspection_seconds"
    assert _reads("timeout") == before + 1
    assert pool.run("sleep", b"", {"seconds": 0}, 30) == {"slept": True}


def test_a_worker_that_dies_is_replaced(pool: DocumentWorkers) -> None:
    before = _reads("crashed")
    with pytest.raises(WorkerError, match="stopped"):
        pool.run("die", b"", {}, 30)
    assert _reads("crashed") == before + 1
    assert pool.run("sleep", b"", {"seconds": 0}, 30) == {"slept": True}


def test_memory_past_the_limit_is_refused_not_granted(pool: DocumentWorkers) -> None:
    with pytest.raises(WorkerError, match="more memory"):
        pool.run("allocate", b"", {"bytes": 2 * MEMORY}, 30)
    assert pool.run("allocate", b"", {"bytes": 1024}, 30) == {"allocated": 1024}


def test_an_error_comes_back_by_type_never_by_its_text(pool: DocumentWorkers) -> None:
    with pytest.raises(WorkerError) as caught:
        pool.run("quote", b"Quillfeather 146-32-2440", {}, 30)
    assert str(caught.value) == "document reader failed (ValueError)"


def test_documents_beyond_the_pool_wait_within_their_deadline(pool: DocumentWorkers) -> None:
    busy = threading.Thread(target=pool.run, args=("sleep", b"", {"seconds": 2}, 30))
    busy.start()
    time.sleep(0.3)
    before = _reads("busy")
    with pytest.raises(WorkerError, match="no document reader was free"):
        pool.run("sleep", b"", {"seconds": 0}, 0.3)
    assert _reads("busy") == before + 1
    busy.join()
    assert pool.run("sleep", b"", {"seconds": 0}, 30) == {"slept": True}


def test_a_closed_pool_refuses() -> None:
    workers = DocumentWorkers(1, MEMORY)
    workers.close()
    with pytest.raises(WorkerError, match="shut down"):
        workers.run("pdf", b"%PDF-1.4", _args(), 5)
