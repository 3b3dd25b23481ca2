"""OCR (ocr.enabled, tesseract): scans and pictures of print are read and judged like text; a
scan with no PHI may go abroad, one that names the patient may not; what OCR does not read
(a photo, a page past its limits, a failure) stays unreadable media, never a pass."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import metrics
from gateway.cli import main
from gateway.config import Limits, Ocr, parse_config
from gateway.errors import ConfigError
from gateway.formats import ocr as ocr_module
from gateway.inspector import Inspector
from gateway.model import Action, Category, Destination, Jurisdiction, Location
from gateway.policy import decide
from gateway.workers import DocumentWorkers
from tests.support import documents as docs
from tests.support.patients import make_patient

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract missing: scripts/install-test-tools.sh installs tesseract-ocr",
)
PATIENT = make_patient(606)
ABROAD = Destination(
    "vendor.example", 443, (Jurisdiction("127.0.0.2", Location.FOREIGN, "IN", reason="database"),)
)
CONFIG = parse_config({})
OCR = Inspector(Limits(), ocr=Ocr(enabled=True))


@pytest.fixture(scope="module")
def pooled() -> Iterator[Inspector]:
    workers = DocumentWorkers(1, Limits().max_document_memory_bytes)
    workers.start()
    yield Inspector(Limits(), workers=workers, ocr=Ocr(enabled=True))
    workers.close()


def test_a_scan_that_names_the_patient_is_phi(pooled: Inspector) -> None:
    for body in (docs.scanned_pages_pdf(PATIENT), docs.scanned_page_png(PATIENT)):
        result = pooled.inspect(body)
        assert result.inspected and not result.opaque, result.error
        assert {Category.SSN, Category.MRN} <= {f.category for f in result.findings}
        assert any(".ocr[1]" in f.location for f in result.findings)
        assert decide(ABROAD, result, CONFIG).action is Action.BLOCK


def test_a_scan_without_phi_goes_abroad_only_with_ocr() -> None:
    memo = docs.scanned_pages_pdf(None)
    read = OCR.inspect(memo)
    assert read.inspected and not read.opaque and not read.contains_phi, read.findings
    assert decide(ABROAD, read, CONFIG).action is Action.ALLOW
    unread = Inspector(Limits()).inspect(memo)  # OCR off, the default
    assert unread.opaque and decide(ABROAD, unread, CONFIG).rule == "unreadable-media"


def test_what_ocr_does_not_read_stays_unreadable() -> None:
    photo = OCR.inspect(docs.photo_without_text())
    assert photo.opaque == "image (OCR read no text)"
    assert decide(ABROAD, photo, CONFIG).rule == "unreadable-media"
    limited = Inspector(Limits(), ocr=Ocr(enabled=True, max_pages=1))
    before = metrics.OCR_PAGES.labels("unread")._value.get()
    two = limited.inspect(docs.scanned_pages_pdf(None, PATIENT))  # the patient is on page 2
    assert two.opaque == "scanned-pdf (page 2)" and not two.contains_phi
    assert decide(ABROAD, two, CONFIG).action is Action.BLOCK
    assert metrics.OCR_PAGES.labels("unread")._value.get() == before + 1


def test_a_failing_ocr_is_no_worse_than_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr_module, "TESSERACT", "no-such-tesseract")
    before = metrics.OCR_PAGES.labels("failed")._value.get()
    result = OCR.inspect(docs.scanned_pages_pdf(None))
    assert result.inspected and result.opaque.startswith("scanned-pdf")
    assert metrics.OCR_PAGES.labels("failed")._value.get() == before + 1


def test_ocr_time_is_its_own() -> None:
    # Recognising a page takes longer than this whole inspection budget; the text it
    # returns is still read within the budget that is left.
    tight = Inspector(Limits(max_inspection_seconds=0.2), ocr=Ocr(enabled=True))
    result = tight.inspect(docs.scanned_page_png(PATIENT))
    assert result.inspected and result.contains_phi, result.error


def test_bad_ocr_settings_name_their_key() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"ocr": {"enabled": True, "languages": "eng; rm -rf /"}})
    assert any(key == "ocr.languages" for key, _ in raised.value.problems)


def test_check_config_says_when_ocr_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"audit:\n  database: {tmp_path / 'audit.db'}\nocr:\n  enabled: true\n"
        "  languages: eng+qqq\n"
    )
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "ocr.enabled:" in err and "qqq" in err
