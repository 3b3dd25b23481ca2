"""Document inspection cost, as the proxy pays it: the inspector with its pool of document
reader processes (``gateway.workers``), milliseconds per document and per page for text PDFs,
per document for office files, e-mail and a FHIR Binary carrying a PDF, and (where tesseract
is installed) OCR per scanned page. The issue's target: a 10-page text PDF inspected in under
20 ms. Run: .venv/bin/python -m bench.documents

The proxy's throughput on 200 KB PDFs, beside bare mitmdump, is the ``pdf-200k`` payload of
``python -m bench``."""

from __future__ import annotations

import functools
import shutil
import statistics
import sys
import time
from collections.abc import Callable

from gateway.config import Limits, Ocr
from gateway.inspector import Inspector
from gateway.workers import DocumentWorkers
from tests.support import carriers
from tests.support import documents as docs
from tests.support.patients import make_patient

TARGET_PAGES = 10
TARGET_MS = 20.0


def median_ms(run: Callable[[], object], rounds: int = 30) -> float:
    run()  # warm: the worker has imported its reader
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def cases() -> list[tuple[str, bytes, int]]:
    """(name, body, pages: 0 where pages mean nothing)."""
    patient = make_patient(4242)
    summary = docs.discharge_summary_pdf(patient)
    found = [(f"text PDF, {n} pages", docs.text_pages_pdf(n), n) for n in (1, 10, 60)]
    found += [
        ("discharge summary PDF", summary, 1),
        ("DOCX face sheet", docs.docx_face_sheet(patient), 0),
        ("XLSX worklist", docs.xlsx_worklist(patient), 0),
        ("PPTX case review", docs.pptx_case_review(patient), 0),
        ("ODT letter", docs.odt_letter(patient), 0),
        ("e-mail + PDF", docs.email_with_attachment("R", "See attached.", summary, "a.pdf"), 0),
        ("FHIR Binary + PDF", carriers.fhir_binary(summary), 1),
    ]
    return found


def _ocr(limits: Limits, workers: DocumentWorkers) -> None:
    """OCR (ocr.enabled): seconds per scanned page, where tesseract is installed."""
    if shutil.which("tesseract") is None:
        print("OCR: tesseract not installed (scripts/install-test-tools.sh): not measured")
        return
    inspector = Inspector(limits, workers=workers, ocr=Ocr(enabled=True))
    patient = make_patient(4243)
    for name, body, pages in (
        ("OCR: scanned PDF, 1 page", docs.scanned_pages_pdf(patient), 1),
        ("OCR: scanned PDF, 3 pages", docs.scanned_pages_pdf(None, patient, None), 3),
        ("OCR: PNG page scan", docs.scanned_page_png(patient), 1),
    ):
        result = inspector.inspect(body)
        ms = median_ms(functools.partial(inspector.inspect, body), rounds=5)
        print(f"{name:<26} {len(body):>8} {ms:8.0f} {ms / pages:8.0f}  {result.contains_phi}")


def main() -> int:
    limits = Limits()
    workers = DocumentWorkers(limits.document_workers, limits.max_document_memory_bytes)
    workers.start()
    try:
        inspector = Inspector(limits, workers=workers)
        print(f"{'document':<24} {'bytes':>8} {'ms/doc':>8} {'ms/page':>8}  PHI")
        met, target = False, 0.0
        for name, body, pages in cases():
            result = inspector.inspect(body)
            if not result.inspected:
                print(f"{name}: not inspected ({result.error})", file=sys.stderr)
                return 1
            ms = median_ms(functools.partial(inspector.inspect, body))
            per_page = f"{ms / pages:8.2f}" if pages else f"{'':>8}"
            print(f"{name:<24} {len(body):>8} {ms:8.2f} {per_page}  {result.contains_phi}")
            if pages == TARGET_PAGES and name.startswith("text PDF"):
                met = ms < TARGET_MS
                target = ms
        print(
            f"target: {TARGET_PAGES}-page text PDF under {TARGET_MS:.0f} ms: {target:.1f} ms -> "
            f"{'MET' if met else 'NOT MET'}"
        )
        _ocr(limits, workers)
    finally:
        workers.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
