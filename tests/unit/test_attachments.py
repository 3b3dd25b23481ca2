"""Documents inside FHIR, CDA and XDS.b are read by their own format: a de-identified PDF in a
DocumentReference may go abroad, one that names the patient may not; XDS metadata that
describes the patient is PHI; a redacted FHIR resource carries a placeholder where its
attachment was."""

from __future__ import annotations

import base64
import json
import random

from gateway.config import Limits, RedactionSettings, parse_config
from gateway.formats.cda import CDA
from gateway.formats.fhir import FHIR_JSON, FHIR_XML
from gateway.formats.fhir.redact import PLACEHOLDER_TEXT
from gateway.formats.xds import XDS
from gateway.inspector import Inspector
from gateway.model import Action, Category, Destination, Format, Jurisdiction, Location
from gateway.policy import decide
from gateway.redactor import Redactor
from tests.support import carriers
from tests.support import documents as docs
from tests.support.patients import make_patient

PATIENT = make_patient(47)
SUMMARY = docs.discharge_summary_pdf(PATIENT)
BROCHURE = docs.brochure_pdf()
INSPECTOR = Inspector(Limits())
ABROAD = Destination(
    "vendor.example", 443, (Jurisdiction("127.0.0.2", Location.FOREIGN, "IN", reason="database"),)
)
CONFIG = parse_config({})


def _categories(body: bytes) -> set[Category]:
    return {f.category for f in INSPECTOR.inspect(body).findings}


def test_a_binary_is_read_by_the_format_of_its_data() -> None:
    phi = INSPECTOR.inspect(carriers.fhir_binary(SUMMARY))
    assert phi.format == FHIR_JSON and phi.inspected and phi.contains_phi
    assert {Category.SSN, Category.MRN} <= {f.category for f in phi.findings}
    assert all(f.location.startswith("Binary.data/") for f in phi.findings), phi.findings
    clean = INSPECTOR.inspect(carriers.fhir_binary(BROCHURE))
    assert clean.inspected and not clean.contains_phi and not clean.opaque, clean.findings
    assert decide(ABROAD, clean, CONFIG).action is Action.ALLOW
    assert decide(ABROAD, phi, CONFIG).action is Action.BLOCK


def test_a_document_reference_without_a_subject_goes_when_its_pdf_is_clean() -> None:
    clean = INSPECTOR.inspect(carriers.fhir_document_reference(BROCHURE, None))
    assert clean.inspected and not clean.contains_phi, clean.findings
    named = INSPECTOR.inspect(carriers.fhir_document_reference(SUMMARY, None))
    assert named.contains_phi
    assert any(
        f.location.startswith("DocumentReference.content.attachment.data/") for f in named.findings
    )
    about = INSPECTOR.inspect(carriers.fhir_document_reference(BROCHURE, PATIENT))
    assert about.contains_phi  # the subject names the patient whatever the PDF says


def test_every_fhir_encoding_and_carrier_reads_its_attachments() -> None:
    xml = INSPECTOR.inspect(carriers.fhir_binary_xml(SUMMARY))
    assert xml.format == FHIR_XML and xml.contains_phi
    assert Category.SSN in _categories(carriers.fhir_parameters(SUMMARY))
    ndjson = carriers.fhir_binary(BROCHURE) + b"\n" + carriers.fhir_binary(SUMMARY) + b"\n"
    assert Category.SSN in _categories(ndjson)
    envelope = json.dumps({"items": [json.loads(carriers.fhir_binary(SUMMARY))]}).encode()
    assert Category.SSN in _categories(envelope)


def test_attachments_that_cannot_be_read_fail_closed() -> None:
    broken = json.dumps(
        {"resourceType": "Binary", "contentType": "application/pdf", "data": "%%% not base64"}
    ).encode()
    result = INSPECTOR.inspect(broken)
    assert not result.inspected and "base64" in result.error
    # Bytes no format claims: a fixed first byte (random ones sometimes start like XML).
    opaque_bytes = b"\x01" + random.Random(14).randbytes(2047)
    unknown = INSPECTOR.inspect(carriers.fhir_binary(opaque_bytes, "application/x-dicom"))
    assert unknown.inspected and unknown.opaque
    assert decide(ABROAD, unknown, CONFIG).rule == "unreadable-media"
    scan = INSPECTOR.inspect(carriers.fhir_binary(docs.scanned_pdf()))
    assert scan.opaque and decide(ABROAD, scan, CONFIG).action is Action.BLOCK
    truncated = INSPECTOR.inspect(carriers.fhir_binary(SUMMARY[: len(SUMMARY) // 2]))
    assert decide(ABROAD, truncated, CONFIG).action is Action.BLOCK


def test_a_cda_non_xml_body_is_read_as_its_media_type() -> None:
    clean = INSPECTOR.inspect(carriers.cda_non_xml_body(BROCHURE, None))
    assert clean.format == CDA and clean.inspected and not clean.contains_phi, clean.findings
    named = INSPECTOR.inspect(carriers.cda_non_xml_body(SUMMARY, None))
    assert named.contains_phi
    assert any("nonXMLBody/text/" in f.location for f in named.findings)


def test_xds_metadata_names_the_patient() -> None:
    result = INSPECTOR.inspect(carriers.xds_inline(PATIENT, BROCHURE))
    assert result.format == XDS and result.inspected and result.contains_phi
    metadata = {f.location: f.category for f in result.findings if f.location.startswith("xds/")}
    assert metadata["xds/Slot[sourcePatientInfo]/PID-5"] is Category.NAME
    assert metadata["xds/Slot[sourcePatientInfo]/PID-7"] is Category.DATE
    assert metadata["xds/Slot[sourcePatientInfo]/PID-11"] is Category.GEOGRAPHY
    assert metadata["xds/ExternalIdentifier[patientId]"] is Category.MRN
    assert "xds/Slot[sourcePatientInfo]/PID-8" not in metadata  # sex identifies no one


def test_xds_documents_are_read_inline_and_as_mtom_parts() -> None:
    inline = INSPECTOR.inspect(carriers.xds_inline(PATIENT, SUMMARY))
    assert any(
        f.category is Category.SSN and f.location.startswith("soap/") for f in inline.findings
    )
    body, content_type = carriers.xds_mtom(PATIENT, SUMMARY)
    assert content_type.startswith("multipart/related")
    mtom = INSPECTOR.inspect(body)
    assert mtom.format == Format.MULTIPART and mtom.contains_phi
    locations = [f.location for f in mtom.findings]
    assert any("xds/Slot[sourcePatientInfo]" in loc for loc in locations), locations
    assert any(f.category is Category.SSN and "xds/" not in f.location for f in mtom.findings), (
        locations
    )


def test_bodies_carrying_encoded_documents_are_inspected_off_the_loop() -> None:
    assert INSPECTOR.slow(carriers.fhir_binary(BROCHURE))
    assert INSPECTOR.slow(carriers.xds_inline(PATIENT, BROCHURE))
    assert not INSPECTOR.slow(json.dumps({"resourceType": "Patient", "id": "p"}).encode())


def _redacted(body: bytes) -> dict[str, object]:
    inspection = INSPECTOR.inspect(body)
    outcome = Redactor(RedactionSettings(), b"k" * 32).redact(inspection)
    assert not outcome.error, outcome.error
    result = json.loads(outcome.body)
    assert isinstance(result, dict)
    return result


def test_redaction_puts_a_labelled_placeholder_where_the_attachment_was() -> None:
    binary = _redacted(carriers.fhir_binary(SUMMARY))
    assert binary["contentType"] == "text/plain"
    assert base64.b64decode(str(binary["data"])) == PLACEHOLDER_TEXT
    reference = _redacted(carriers.fhir_document_reference(SUMMARY, PATIENT))
    content = reference["content"]
    assert isinstance(content, list)
    attachment = content[0]["attachment"]
    assert base64.b64decode(attachment["data"]) == PLACEHOLDER_TEXT
    assert attachment["contentType"] == "text/plain"
    assert attachment["size"] == len(PLACEHOLDER_TEXT)
    assert "title" not in attachment
    for resource in (binary, reference):
        meta = resource["meta"]
        assert isinstance(meta, dict)
        assert "REDACTED" in {s["code"] for s in meta["security"]}
    parameters = _redacted(carriers.fhir_parameters(SUMMARY))
    assert json.dumps(parameters).count(PATIENT.ssn) == 0
    value = parameters["parameter"][0]["valueBase64Binary"]  # type: ignore[index]
    assert base64.b64decode(value) == PLACEHOLDER_TEXT
