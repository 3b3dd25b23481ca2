"""Charts leave as documents: PDFs, images and dictation sent through the real gateway. The
foreign receiver gets none that identifies a patient (nor media nobody can read); the
domestic receiver gets every one byte-identical; clean documents go abroad untouched."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams, gateway_config
from tests.support import carriers, hostile_pdfs
from tests.support import documents as docs
from tests.support.evasion import identifiers_in
from tests.support.gateway_process import GatewayProcess
from tests.support.patients import make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
PATIENT = make_patient(9090)
NOTE = f"Patient: {PATIENT.given} {PATIENT.family.rstrip('0123456789')}, MRN {PATIENT.mrn}"
SUMMARY = docs.discharge_summary_pdf(PATIENT)
REFUSED = {
    "pdf-text": SUMMARY,
    "pdf-in-pieces": docs.summary_in_pieces_pdf(PATIENT),
    "pdf-metadata": docs.metadata_only_pdf(PATIENT),
    "pdf-annotation": docs.annotated_pdf(PATIENT),
    "pdf-attached-pdf": docs.attachment_pdf(PATIENT, SUMMARY),
    "pdf-form": docs.form_pdf(PATIENT),
    "pdf-encrypted": docs.encrypted_pdf(PATIENT),
    "pdf-scan": docs.scanned_pdf(),
    "png-comment": docs.photo_png(NOTE),
    "jpeg-exif": docs.photo_jpeg_exif(NOTE),
    "jpeg-iptc": docs.photo_jpeg_iptc(NOTE),
    "mp3-dictation": docs.dictation_mp3(NOTE),
    "png-no-metadata": docs.photo_png(),  # pixels nobody reads: blocked by default
    "email-pdf-attachment": docs.email_with_attachment(
        "Records", "See attached.", SUMMARY, "a.pdf"
    ),
    "email-html-body": docs.html_email(PATIENT),
    "html-face-sheet": docs.html_face_sheet(PATIENT),
    "rtf-letter": docs.rtf_letter(PATIENT),
    "xml-label-and-value": f"<note><p><b>SSN</b> {PATIENT.ssn}</p></note>".encode(),
    "docx-face-sheet": docs.docx_face_sheet(PATIENT),
    "xlsx-worklist": docs.xlsx_worklist(PATIENT),
    "pptx-notes": docs.pptx_case_review(PATIENT),
    "odt-letter": docs.odt_letter(PATIENT),
    "fhir-binary-pdf": carriers.fhir_binary(SUMMARY),
    "fhir-xml-binary-pdf": carriers.fhir_binary_xml(SUMMARY),
    "fhir-document-reference-pdf": carriers.fhir_document_reference(SUMMARY, None),
    "fhir-parameters-pdf": carriers.fhir_parameters(SUMMARY),
    "cda-non-xml-body-pdf": carriers.cda_non_xml_body(SUMMARY, None),
    "xds-inline": carriers.xds_inline(PATIENT, docs.brochure_pdf()),
    "xds-mtom": carriers.xds_mtom(PATIENT, SUMMARY)[0],
    # Hostile: refused however harmless their text (tests/unit/test_hostile_documents.py).
    "pdf-flate-bomb": hostile_pdfs.flate_bomb(),
    "pdf-deeply-nested": hostile_pdfs.deeply_nested(),
    "pdf-many-pages": hostile_pdfs.many_pages(),
    "pdf-page-tree-cycle": hostile_pdfs.page_tree_cycle(),
}
CLEAN = {
    "brochure": docs.brochure_pdf(),
    "blank-form": docs.form_pdf(None),
    "manual": docs.text_pages_pdf(5),
    "newsletter-email": docs.email_with_attachment(
        "Newsletter", "The cafeteria opens at 7.", docs.brochure_pdf(), "brochure.pdf"
    ),
    "marketing-page": docs.marketing_page(),
    "rtf-memo": docs.rtf_letter(None),
    "docx-parking": docs.docx_face_sheet(None),
    "xlsx-supplies": docs.xlsx_worklist(None),
    "pptx-goals": docs.pptx_case_review(None),
    "odt-notice": docs.odt_letter(None),
    "fhir-binary-brochure": carriers.fhir_binary(docs.brochure_pdf()),
    "fhir-document-reference-brochure": carriers.fhir_document_reference(docs.brochure_pdf(), None),
    "cda-non-xml-body-brochure": carriers.cda_non_xml_body(docs.brochure_pdf(), None),
}


def _multipart(name: str, body: bytes) -> tuple[bytes, str]:
    boundary = "----documents0boundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return form, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_documents_abroad_are_refused_and_nothing_arrives(
    client: httpx.Client, upstreams: Upstreams, name: str
) -> None:
    body = REFUSED[name]
    form, form_type = _multipart(f"{name}.bin", body)
    for kind, content, headers in (
        ("raw", body, {"content-type": "application/octet-stream"}),
        ("multipart", form, {"content-type": form_type}),
    ):
        tag = f"doc-foreign-{name}-{kind}"
        response = client.post(
            f"{upstreams.foreign.url}/upload?case={tag}", content=content, headers=headers
        )
        assert response.status_code == 451, (name, kind, response.status_code)
        assert response.headers.get("x-phi-gateway-incident")
        arrived = [r for r in upstreams.foreign.received if f"case={tag}" in r.path]
        assert not arrived


@pytest.mark.parametrize("name", sorted(REFUSED) + sorted(CLEAN))
def test_the_same_documents_arrive_at_home_byte_identical(
    client: httpx.Client, upstreams: Upstreams, name: str
) -> None:
    body = REFUSED.get(name) or CLEAN[name]
    tag = f"doc-domestic-{name}"
    response = client.post(f"{upstreams.domestic.url}/upload?case={tag}", content=body)
    assert response.status_code == 200
    arrived = [r for r in upstreams.domestic.received if f"case={tag}" in r.path]
    assert len(arrived) == 1 and arrived[0].body == body


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_documents_go_abroad_untouched(
    client: httpx.Client, upstreams: Upstreams, name: str
) -> None:
    tag = f"doc-clean-{name}"
    response = client.post(f"{upstreams.foreign.url}/upload?case={tag}", content=CLEAN[name])
    assert response.status_code == 200, name
    arrived = [r for r in upstreams.foreign.received if f"case={tag}" in r.path]
    assert len(arrived) == 1 and arrived[0].body == CLEAN[name]
    assert identifiers_in(arrived[0].body, PATIENT) == []


def test_the_refused_documents_do_carry_the_patient() -> None:
    # The text-layer PDFs hold the identifiers as text a reader extracts; the guard that the
    # cases are not empty is that an in-process read finds them.
    from gateway.config import Limits
    from gateway.inspector import Inspector

    inspector = Inspector(Limits())
    for name in (
        "pdf-text",
        "pdf-in-pieces",
        "pdf-form",
        "png-comment",
        "mp3-dictation",
        "email-pdf-attachment",
        "html-face-sheet",
        "rtf-letter",
        "docx-face-sheet",
        "xlsx-worklist",
        "pptx-notes",
        "fhir-binary-pdf",
        "fhir-document-reference-pdf",
        "cda-non-xml-body-pdf",
        "xds-inline",
        "xds-mtom",
    ):
        assert inspector.inspect(REFUSED[name]).contains_phi, name


@pytest.fixture(scope="module")
def ocr_gateway(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract missing: scripts/install-test-tools.sh installs tesseract-ocr")
    config = gateway_config(test_mmdb, pki, ocr={"enabled": True})
    process = GatewayProcess(tmp_path_factory.mktemp("ocr"), config)
    yield process
    process.stop()


def test_with_ocr_a_clean_scan_goes_abroad_and_a_named_one_does_not(
    ocr_gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    memo, named = docs.scanned_pages_pdf(None), docs.scanned_page_png(PATIENT)
    with httpx.Client(proxy=ocr_gateway.proxy_url) as client:
        sent = client.post(f"{upstreams.foreign.url}/upload?case=ocr-memo", content=memo)
        refused = client.post(f"{upstreams.foreign.url}/upload?case=ocr-named", content=named)
    assert sent.status_code == 200
    assert [r.body for r in upstreams.foreign.received if "case=ocr-memo" in r.path] == [memo]
    assert refused.status_code == 451
    assert not [r for r in upstreams.foreign.received if "case=ocr-named" in r.path]
    assert ocr_gateway.metric("phi_gateway_ocr_pages_total", result="read") >= 2
