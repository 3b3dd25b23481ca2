"""gRPC and protobuf read without a schema (gateway/formats/grpc.py, protobuf.py): messages
written by the protobuf library, framed as gRPC, compressed as gRPC clients compress them;
the unlabelled-record rule, the limits, bytes no format knows, and the gRPC refusal."""

from __future__ import annotations

import zlib

import pytest

from gateway.config import Limits
from gateway.enforce import block_response
from gateway.envelope import record_findings
from gateway.formats.grpc import GRPC
from gateway.formats.protobuf import PROTOBUF, SMALL_BYTES
from gateway.inspector import UNKNOWN_BINARY, Inspector
from gateway.model import Action, Category, Format, Inspection, Verdict
from tests.support.clean_text import CLEAN_TEXTS
from tests.support.documents import discharge_summary_pdf
from tests.support.notes import family
from tests.support.patients import make_patient
from tests.support.protobuf import clean_record, frame, patient_record, record

INSPECTOR = Inspector(Limits())
PATIENT = make_patient(2101)
NAME = f"{PATIENT.given} {family(PATIENT)}"
NOTE = f"Patient: {NAME}, MRN {PATIENT.mrn}, DOB {PATIENT.birth_date_iso}"


def _categories(inspection: Inspection) -> set[Category]:
    return {f.category for f in inspection.findings}


def test_a_record_in_unnamed_fields_is_a_patient() -> None:
    result = INSPECTOR.inspect(frame(patient_record(PATIENT)))
    assert result.format == GRPC and result.inspected and not result.opaque
    assert result.contains_phi and {Category.NAME, Category.DATE} <= _categories(result)
    assert all(f.location.startswith("grpc[0]") for f in result.findings)


def test_a_note_in_a_repeated_field_and_a_contact_in_a_nested_message() -> None:
    note = INSPECTOR.inspect(frame(clean_record(notes=["Seen today.", NOTE])))
    assert note.contains_phi and Category.MRN in _categories(note)
    contact = INSPECTOR.inspect(
        frame(
            clean_record(contact={"phone": f"Phone: {PATIENT.phone}", "relation": "Name: " + NAME})
        )
    )
    assert contact.contains_phi and Category.PHONE in _categories(contact)


def test_clean_messages_are_read_and_forwardable() -> None:
    for body in (frame(b""), frame(record(status="SERVING")), frame(clean_record())):
        result = INSPECTOR.inspect(body)
        assert result.format == GRPC and result.inspected, body
        assert not result.contains_phi and not result.opaque and not result.findings, body


def test_no_clean_operations_text_is_a_patient_in_a_message() -> None:
    flagged = [
        text
        for text in CLEAN_TEXTS
        if INSPECTOR.inspect(frame(clean_record(notes=[text]))).contains_phi
    ]
    assert flagged == []


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_compressed_messages_are_undone(coding: str) -> None:
    message = patient_record(PATIENT)
    if coding == "gzip":
        body = frame(message, compressed=True)
    else:
        packed = zlib.compress(message) if coding == "deflate" else _zstd(message)
        body = b"\x01" + len(packed).to_bytes(4, "big") + packed
    result = INSPECTOR.inspect(body)
    assert result.inspected and result.contains_phi, coding


def test_a_compression_we_cannot_read_fails_closed() -> None:
    packed = b"\xff\x06\x00\x00sNaPpY" + patient_record(PATIENT)  # a snappy stream's start
    result = INSPECTOR.inspect(b"\x01" + len(packed).to_bytes(4, "big") + packed)
    assert not result.inspected and "compressed" in result.error


def test_many_messages_in_one_stream() -> None:
    body = b"".join(frame(clean_record()) for _ in range(20)) + frame(patient_record(PATIENT))
    result = INSPECTOR.inspect(body)
    assert result.message_type == "21 messages" and result.contains_phi
    assert all(f.location.startswith("grpc[20]") for f in result.findings)


def test_a_document_in_a_string_and_a_pdf_in_a_bytes_field() -> None:
    fhir = (
        '{"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}],'
        f' "birthDate": "{PATIENT.birth_date_iso}"}}'
    )
    in_string = INSPECTOR.inspect(frame(clean_record(notes=[fhir])))
    assert in_string.contains_phi and any(
        "Patient.birthDate" in f.location for f in in_string.findings
    )
    pdf = INSPECTOR.inspect(frame(clean_record(attachment=discharge_summary_pdf(PATIENT))))
    assert pdf.contains_phi and any("grpc[0].5" in f.location for f in pdf.findings)


def test_unknown_bytes_in_a_field_are_opaque_only_when_long() -> None:
    small = INSPECTOR.inspect(frame(clean_record(attachment=bytes(range(200, 256)) * 4)))
    assert small.inspected and not small.opaque  # an id, a hash, a key
    large = bytes((i * 131 + 7) % 256 for i in range(SMALL_BYTES * 8))
    opaque = INSPECTOR.inspect(frame(clean_record(attachment=b"\x8e\x8f\x90" + large)))
    assert opaque.opaque.startswith(UNKNOWN_BINARY) and not opaque.contains_phi


def test_a_body_no_format_knows_is_opaque() -> None:
    body = bytes((i * 197 + 13) % 256 for i in range(4096))
    result = INSPECTOR.inspect(b"\xff\x00" + body)
    assert result.format == Format.BINARY and result.inspected and result.opaque == UNKNOWN_BINARY


def test_a_bare_protobuf_body_is_read_even_when_it_starts_with_a_blank() -> None:
    body = patient_record(PATIENT)
    assert body[:1] == b"\n"  # field 1, length-delimited: a blank to the text readers
    result = INSPECTOR.inspect(body)
    assert result.format == PROTOBUF and result.contains_phi


def test_json_messages_in_grpc_frames_are_read_by_the_registry() -> None:
    body = frame(f'{{"note": "{NOTE}"}}'.encode())
    result = INSPECTOR.inspect(body)
    assert result.format == GRPC and result.contains_phi


def test_the_field_limit_fails_closed() -> None:
    small = Inspector(Limits(max_protobuf_fields=100))
    result = small.inspect(frame(record(notes=["ok"] * 150)))
    assert not result.inspected and result.limit == "max_protobuf_fields"
    assert (
        Inspector(Limits(max_protobuf_fields=200))
        .inspect(frame(record(notes=["ok"] * 150)))
        .inspected
    )


def test_the_depth_limit_fails_closed() -> None:
    message = b"\x08\x01"
    for _ in range(40):
        message = b"\x12" + _varint(len(message)) + message
    result = INSPECTOR.inspect(frame(message))
    assert not result.inspected and result.limit == "max_protobuf_depth"
    assert Inspector(Limits(max_protobuf_depth=64)).inspect(frame(message)).inspected


def _zstd(data: bytes) -> bytes:
    from backports import zstd

    return bytes(zstd.compress(data))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_frames_that_do_not_tile_the_body_are_not_grpc() -> None:
    message = patient_record(PATIENT)
    short = b"\x00" + (len(message) + 9).to_bytes(4, "big") + message
    assert INSPECTOR.inspect(short).format != GRPC


def test_the_record_rule() -> None:
    assert record_findings([NAME, PATIENT.birth_date_iso], "m")
    assert record_findings([NAME.upper(), "01/02/1970"], "m")
    assert not record_findings(["Final Report", "2026-11-02"], "m")  # a status, not a name
    assert not record_findings([NAME, "2026-11-02T10:15:00Z"], "m")  # an event time
    assert not record_findings([NAME], "m") and not record_findings(["1970-01-02"], "m")
    assert not record_findings(["Patient Portal", "1970-01-02"], "m")


def test_the_refusal_speaks_grpc() -> None:
    verdict = Verdict(Action.BLOCK, "foreign-phi", "grpc payload identifying a patient")
    inspection = Inspection(GRPC, contains_phi=True)
    answer = block_response(verdict, inspection, "inc-1", content_type="application/grpc+proto")
    assert answer.status == 200 and answer.content_type == "application/grpc+proto"
    trailers = dict(answer.trailers)
    assert trailers["grpc-status"] == "7" and "inc-1" in trailers["grpc-message"]
    assert ("X-PHI-Gateway-Incident", "inc-1") in answer.headers
    assert all(0x20 <= ord(c) < 0x7F for c in trailers["grpc-message"])
    web = block_response(verdict, inspection, "inc-2", content_type="application/grpc-web+proto")
    assert dict(web.headers)["grpc-status"] == "7" and not web.trailers
    # An unreadable body a gRPC client sent is refused in gRPC too.
    unread = Inspection(Format.BINARY, error="gRPC message compressed in a coding ...")
    assert block_response(verdict, unread, "inc-3", content_type="application/grpc").trailers
    assert block_response(verdict, inspection, "inc-4", content_type="").status == 451
