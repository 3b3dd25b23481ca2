"""PDF, images and audio as formats: read the way their own software reads them, judged like
any text, failing closed on what cannot be read."""

from __future__ import annotations

import base64

import pytest

from gateway.config import Limits, parse_config
from gateway.formats.email import EMAIL
from gateway.formats.markup import HTML, RTF, html_text, rtf_text
from gateway.formats.media import MEDIA, id3_texts
from gateway.formats.office import OFFICE
from gateway.formats.pdf import PDF
from gateway.inspector import Inspector
from gateway.model import Category, Destination, Format, Jurisdiction, Location
from gateway.policy import decide
from tests.support import documents as docs
from tests.support.patients import make_patient

PATIENT = make_patient(31)
INSPECTOR = Inspector(Limits(max_pdf_pages=50))
ABROAD = Destination(
    "vendor.example", 443, (Jurisdiction("127.0.0.2", Location.FOREIGN, "IN", reason="database"),)
)


def _phi_pdfs() -> dict[str, bytes]:
    summary = docs.discharge_summary_pdf(PATIENT)
    found = {
        "text": summary,
        "text-in-pieces": docs.summary_in_pieces_pdf(PATIENT),
        "document-information": docs.metadata_only_pdf(PATIENT),
        "annotation": docs.annotated_pdf(PATIENT),
        "embedded-pdf": docs.attachment_pdf(PATIENT, summary),
        "form-fields": docs.form_pdf(PATIENT),
    }
    if docs.DEJAVU.is_file():
        found["cid-font"] = docs.summary_cid_font_pdf(PATIENT)
    return found


@pytest.mark.parametrize(("name", "body"), sorted(_phi_pdfs().items()))
def test_a_pdf_that_names_the_patient_is_phi(name: str, body: bytes) -> None:
    result = INSPECTOR.inspect(body)
    assert result.format == PDF, name
    assert result.inspected, result.error
    assert result.contains_phi, (name, result.findings)
    assert not result.opaque


def test_the_cid_font_case_runs_where_the_font_is_installed() -> None:
    if not docs.DEJAVU.is_file():
        pytest.skip(f"{docs.DEJAVU} missing: scripts/install-test-tools.sh installs it")
    result = INSPECTOR.inspect(docs.summary_cid_font_pdf(PATIENT))
    assert {Category.SSN, Category.MRN} <= {f.category for f in result.findings}


def test_findings_say_where_in_the_pdf_never_what() -> None:
    result = INSPECTOR.inspect(docs.discharge_summary_pdf(PATIENT))
    assert any(f.location.startswith("pdf.page[1]") for f in result.findings)
    assert all(
        PATIENT.ssn not in f.location and PATIENT.mrn not in f.location for f in result.findings
    )
    embedded = INSPECTOR.inspect(docs.attachment_pdf(PATIENT, docs.discharge_summary_pdf(PATIENT)))
    assert any(f.location.startswith("pdf.attachment[0]/pdf.page[1]") for f in embedded.findings)


@pytest.mark.parametrize(
    "body",
    [docs.brochure_pdf(), docs.form_pdf(None), docs.text_pages_pdf(3)],
    ids=["brochure", "blank-form", "manual"],
)
def test_clean_pdfs_are_not_phi(body: bytes) -> None:
    result = INSPECTOR.inspect(body)
    assert result.format == PDF and result.inspected and not result.opaque
    assert not result.contains_phi, result.findings
    assert decide(ABROAD, result, parse_config({})).action.value == "allow"


def test_what_cannot_be_read_fails_closed() -> None:
    encrypted = INSPECTOR.inspect(docs.encrypted_pdf(PATIENT))
    assert encrypted.error.startswith("PDF is encrypted")
    too_long = INSPECTOR.inspect(docs.many_pages_pdf(51))
    assert too_long.limit == "max_pdf_pages"
    truncated = INSPECTOR.inspect(docs.discharge_summary_pdf(PATIENT)[:300])
    assert not truncated.inspected
    for result in (encrypted, too_long, truncated):
        assert decide(ABROAD, result, parse_config({})).rule == "uninspectable"


def test_a_scan_is_content_no_reader_sees_into() -> None:
    result = INSPECTOR.inspect(docs.scanned_pdf())
    assert result.inspected and result.opaque.startswith("scanned-pdf")
    blocked = decide(ABROAD, result, parse_config({}))
    assert blocked.blocks and blocked.rule == "unreadable-media"
    allowed = decide(ABROAD, result, parse_config({"policy": {"unreadable_media": "allow"}}))
    assert allowed.action.value == "allow"


def test_images_and_audio_are_media_and_their_metadata_is_read() -> None:
    note = f"Patient: {PATIENT.given} {PATIENT.family.rstrip('0123456789')}, MRN {PATIENT.mrn}"
    for body in (
        docs.photo_png(note),
        docs.photo_jpeg_exif(note),
        docs.photo_jpeg_iptc(note),
        docs.dictation_mp3(note),
    ):
        result = INSPECTOR.inspect(body)
        assert result.format == MEDIA and result.opaque in ("image", "audio")
        assert result.contains_phi, result.message_type
        # PHI in the metadata is PHI whatever the media policy says.
        allow = parse_config({"policy": {"unreadable_media": "allow"}})
        assert decide(ABROAD, result, allow).rule == "foreign-phi"
    clean = INSPECTOR.inspect(docs.photo_png())
    assert clean.format == MEDIA and not clean.contains_phi
    assert decide(ABROAD, clean, parse_config({})).rule == "unreadable-media"
    allow = parse_config({"policy": {"unreadable_media": "allow"}})
    assert decide(ABROAD, clean, allow).action.value == "allow"


def test_id3_frames_are_read_within_the_tag() -> None:
    assert id3_texts(docs.dictation_mp3("Dictation for chart 4711")) == [
        ("TIT2", "Dictation for chart 4711")
    ]
    assert id3_texts(b"ID3\x03\x00\x00\x7f\x7f\x7f\x7f" + b"\xff" * 40) == []  # lies about size


def test_email_parts_are_decoded_and_read_by_their_own_format() -> None:
    attached = docs.email_with_attachment(
        "Records request",
        "Please see the attachment.",
        docs.discharge_summary_pdf(PATIENT),
        "a.pdf",
    )
    result = INSPECTOR.inspect(attached)
    assert result.format == EMAIL and result.contains_phi
    assert any("/pdf.page[1]" in f.location for f in result.findings)
    html = INSPECTOR.inspect(docs.html_email(PATIENT))
    assert html.contains_phi and any("text/html" in f.location for f in html.findings)
    newsletter = docs.email_with_attachment(
        "Newsletter", "The cafeteria opens at 7.", docs.brochure_pdf(), "brochure.pdf"
    )
    clean = INSPECTOR.inspect(newsletter)
    assert clean.format == EMAIL and clean.inspected and not clean.contains_phi


def test_html_and_rtf_are_read_as_the_text_people_see() -> None:
    page = INSPECTOR.inspect(docs.marketing_page())
    assert page.format == HTML and page.inspected and not page.contains_phi
    sheet = INSPECTOR.inspect(docs.html_face_sheet(PATIENT))
    assert sheet.format == HTML and sheet.contains_phi
    assert {Category.SSN, Category.DATE} <= {f.category for f in sheet.findings}
    assert html_text("<p>a<script>SSN 146-32-2440</script>b</p>") == "ab"
    memo = INSPECTOR.inspect(docs.rtf_letter(None))
    assert memo.format == RTF and memo.inspected and not memo.contains_phi
    letter = INSPECTOR.inspect(docs.rtf_letter(PATIENT))
    assert letter.format == RTF and letter.contains_phi
    assert "Helvetica" not in rtf_text(docs.rtf_letter(None).decode("latin-1"))
    assert rtf_text(r"{\rtf1 caf\'e9 \u8364? ok}") == "café € ok"


def test_generic_xml_pairs_a_label_with_the_value_after_it() -> None:
    result = INSPECTOR.inspect(f"<note><p><b>SSN</b> {PATIENT.ssn} on file</p></note>".encode())
    assert result.format == Format.XML and result.contains_phi
    soap = (
        "<Envelope><Body><upload><file>"
        + base64.b64encode(docs.discharge_summary_pdf(PATIENT)).decode()
        + "</file></upload></Body></Envelope>"
    ).encode()
    inner = INSPECTOR.inspect(soap)
    assert inner.contains_phi and any("/pdf.page[1]" in f.location for f in inner.findings)


OFFICE_DOCUMENTS = {
    "docx": docs.docx_face_sheet,
    "xlsx": docs.xlsx_worklist,
    "pptx": docs.pptx_case_review,
    "odt": docs.odt_letter,
}


@pytest.mark.parametrize("kind", sorted(OFFICE_DOCUMENTS))
def test_office_documents_are_read_in_document_order(kind: str) -> None:
    build = OFFICE_DOCUMENTS[kind]
    result = INSPECTOR.inspect(build(PATIENT))
    assert result.format == OFFICE and result.inspected, result.error
    assert result.contains_phi, (kind, result.findings)
    clean = INSPECTOR.inspect(build(None))
    assert clean.format == OFFICE and clean.inspected and not clean.contains_phi, clean.findings


def test_a_spreadsheet_reads_as_a_table_with_its_dates() -> None:
    result = INSPECTOR.inspect(docs.xlsx_worklist(PATIENT))
    assert any(":column" in f.location for f in result.findings)  # the table rule fired
    assert {Category.MRN, Category.DATE} <= {f.category for f in result.findings}


def test_a_face_sheet_pairs_each_label_with_its_cell() -> None:
    result = INSPECTOR.inspect(docs.docx_face_sheet(PATIENT))
    categories = {f.category for f in result.findings}
    assert {Category.SSN, Category.DATE, Category.MRN} <= categories
    assert any(f.location.startswith("office.word/header") for f in result.findings)
