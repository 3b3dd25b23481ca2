import gzip
import json
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Limits
from gateway.formats.fhir import FHIR_JSON, FHIR_NDJSON, FHIR_XML
from gateway.formats.hl7v2 import HL7V2
from gateway.formats.hl7v2.identifiers import RECORD_ID_CATEGORIES
from gateway.formats.hl7v2.verify import DEIDENTIFIED_CHECKS
from gateway.inspector import Inspector
from gateway.model import Category, Format
from gateway.phi.safe_harbor import SAFE_ADDRESS_TOKEN, SAFE_TOKEN
from tests.support.corpus import CORPUS, labelled
from tests.support.patients import (
    CAPABILITY_STATEMENT,
    fhir_observation_bundle,
    fhir_patient_json,
    fhir_patient_xml,
    hl7_adt,
    make_patient,
)

INSPECTOR = Inspector(Limits(max_body_bytes=1024 * 1024))
PATIENT = make_patient(7)


def categories(body: bytes, encoding: str = "") -> set[Category]:
    return {f.category for f in INSPECTOR.inspect(body, encoding).findings}


def test_hl7_adt_finds_every_identifier_field() -> None:
    result = INSPECTOR.inspect(hl7_adt(PATIENT).encode())
    assert result.format == HL7V2
    assert result.contains_phi
    assert result.message_type == "ADT^A01"
    assert result.reply["control_id"] == "MSG00001"
    assert result.reply["version"] == "2.5.1"
    assert {"PID-3", "PID-5", "PID-7", "PID-11", "PID-13", "PID-18", "PID-19", "NK1-2"} <= set(
        result.locations()
    )


@pytest.mark.parametrize("segment_end", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("delimiters", ["|^~\\&", "$%~\\&", "#^~\\&"])
def test_hl7_any_delimiters_and_line_ends(delimiters: str, segment_end: str) -> None:
    body = hl7_adt(PATIENT, delimiters=delimiters, segment_end=segment_end).encode()
    result = INSPECTOR.inspect(body)
    assert result.contains_phi
    assert Category.SSN in {f.category for f in result.findings}


def test_hl7_batch_with_fhs_bhs() -> None:
    body = (
        "FHS|^~\\&|EPIC\rBHS|^~\\&|EPIC\r"
        + hl7_adt(PATIENT)
        + hl7_adt(make_patient(8))
        + "BTS|2\rFTS|1\r"
    ).encode()
    result = INSPECTOR.inspect(body)
    assert result.contains_phi
    assert sum(1 for f in result.findings if f.location == "PID-19") == 2


def test_hl7_ack_and_empty_pid_are_not_phi() -> None:
    ack = b"MSH|^~\\&|A|B|C|D|20240101||ACK^A01|1|P|2.5\rMSA|AA|MSG1\r"
    assert not INSPECTOR.inspect(ack).contains_phi
    empty = b'MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||""|^^^||^^\r'
    assert not INSPECTOR.inspect(empty).contains_phi


def test_hl7_malformed_header_is_an_error_not_a_pass() -> None:
    result = INSPECTOR.inspect(b"MSHA^~\\&|broken\rPID|1||123||DOE^JOHN\r")
    assert result.format != HL7V2 or result.error


def test_fhir_patient_json_and_xml() -> None:
    for body, fmt in (
        (fhir_patient_json(PATIENT), FHIR_JSON),
        (fhir_patient_xml(PATIENT), FHIR_XML),
    ):
        result = INSPECTOR.inspect(body)
        assert result.format is fmt
        assert result.contains_phi
        assert {Category.NAME, Category.MRN, Category.DATE} <= {f.category for f in result.findings}
    assert Category.SSN in categories(fhir_patient_json(PATIENT))


def test_fhir_bundle_reference_by_urn_uuid() -> None:
    bundle = fhir_observation_bundle(PATIENT)
    entries = bundle["entry"]
    assert isinstance(entries, list)
    observation_only = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            entries[1],
            {"fullUrl": entries[0]["fullUrl"], "resource": {"resourceType": "Patient"}},
        ],
    }
    result = INSPECTOR.inspect(json.dumps(observation_only).encode())
    assert result.contains_phi
    assert "Observation.subject" in result.locations()


def test_fhir_ndjson() -> None:
    body = b"\n".join([json.dumps(CAPABILITY_STATEMENT).encode(), fhir_patient_json(PATIENT)])
    result = INSPECTOR.inspect(body)
    assert result.format == FHIR_NDJSON
    assert result.contains_phi


def _records(*rows: dict[str, str]) -> bytes:
    return b"\n".join(json.dumps(row).encode() for row in rows) + b"\n"


def test_json_lines_of_an_applications_own_records_are_read() -> None:
    """An NDJSON export that is no FHIR: each line is read as the JSON it is (it was taken
    for clean JSON before, unread)."""
    rows = [
        {"last_name": PATIENT.family, "first_name": PATIENT.given, "dob": PATIENT.birth_date_iso},
        {"last_name": "Okafor", "first_name": "Harriet", "dob": "1971-04-09", "mrn": PATIENT.mrn},
    ]
    result = INSPECTOR.inspect(_records(*rows))
    assert result.format == Format.JSON and result.inspected
    assert result.contains_phi
    assert any(f.location.startswith("line[2]/") for f in result.findings)
    clean = INSPECTOR.inspect(_records({"ticket": "7", "status": "open"}, {"ticket": "8"}))
    assert clean.inspected and not clean.contains_phi


def test_ndjson_mixing_fhir_and_other_records_reads_both_and_is_not_redactable() -> None:
    body = json.dumps(CAPABILITY_STATEMENT).encode() + b"\n" + _records({"ssn": PATIENT.ssn})
    result = INSPECTOR.inspect(body)
    assert result.format == FHIR_NDJSON
    assert result.contains_phi and result.document is None
    assert any(f.category is Category.SSN for f in result.findings)


def test_conformance_resources_are_not_phi() -> None:
    assert not INSPECTOR.inspect(json.dumps(CAPABILITY_STATEMENT).encode()).contains_phi


def test_practitioner_only_is_not_phi() -> None:
    body = json.dumps(
        {
            "resourceType": "Practitioner",
            "name": [{"family": "Careful"}],
            "identifier": [{"value": "NPI123"}],
        }
    ).encode()
    assert not INSPECTOR.inspect(body).contains_phi


def test_observation_referencing_patient_is_phi() -> None:
    body = json.dumps(
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": "Patient/example", "display": "Jo Bloggs"},
        }
    )
    result = INSPECTOR.inspect(body.encode())
    assert result.contains_phi
    assert {Category.PATIENT_REFERENCE, Category.NAME} <= {f.category for f in result.findings}


def test_fhir_resource_wrapped_in_json_is_found() -> None:
    body = json.dumps({"job": 17, "payload": {"data": [json.loads(fhir_patient_json(PATIENT))]}})
    result = INSPECTOR.inspect(body.encode())
    assert result.contains_phi


def test_content_type_is_ignored_and_bom_stripped() -> None:
    assert INSPECTOR.inspect(b"\xef\xbb\xbf" + hl7_adt(PATIENT).encode()).contains_phi


def test_gzip_second_member_is_inspected() -> None:
    body = gzip.compress(b"") + gzip.compress(hl7_adt(PATIENT).encode())
    assert INSPECTOR.inspect(body, "gzip").contains_phi


def test_errors_are_values() -> None:
    assert INSPECTOR.inspect(b"x" * (2 * 1024 * 1024)).limit == "max_body_bytes"
    assert INSPECTOR.inspect(b"abc", "snappy").error == "unknown content-encoding"
    assert INSPECTOR.inspect(b'{"resourceType": "Patient", ').error
    assert INSPECTOR.inspect(b"<Patient xmlns='http://hl7.org/fhir'><name>").error


def test_xml_entities_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b'<Patient xmlns="http://hl7.org/fhir">&a;</Patient>'
    )
    assert INSPECTOR.inspect(bomb).error == "XML declares entities"


def test_plain_text_and_empty_bodies() -> None:
    assert INSPECTOR.inspect(b"").format is Format.EMPTY
    result = INSPECTOR.inspect(b"quarterly volume report, nothing else")
    assert result.format is Format.TEXT
    assert not result.contains_phi


@pytest.mark.skipif(not labelled(), reason=f"labelled corpus not found at {CORPUS}")
@pytest.mark.parametrize(("path", "expected"), labelled())
def test_labelled_corpus(path: str, expected: str) -> None:
    result = Inspector(Limits()).inspect((CORPUS / path).read_bytes())
    assert not result.error, result.error
    assert result.contains_phi is (expected == "phi"), result.category_counts()


def test_hostile_payload_text_never_becomes_a_location_or_type() -> None:
    body = json.dumps(
        {
            "resourceType": "Aurelio Quillfeather 123-45-6789",
            "Aurelio Quillfeather DOB": {"subject": {"reference": "Patient/1"}},
        }
    )
    result = INSPECTOR.inspect(body.encode())
    assert result.contains_phi
    assert "Aurelio" not in result.message_type
    assert all("Aurelio" not in loc for loc in result.locations())


def test_scanner_bugs_are_errors_not_passes() -> None:
    for body in (b"MSH\rPID|1||123\r", b'{"resourceType":"Patient","identifier":[{"type":5}]}'):
        result = INSPECTOR.inspect(body)
        assert result.contains_phi or result.error


def test_deep_nesting_is_an_error() -> None:
    body = '{"resourceType":"Observation","a":' * 1 + '{"b":' * 200 + "1" + "}" * 201
    result = INSPECTOR.inspect(body.encode())
    assert result.error


def test_huge_hl7_batch_findings_are_bounded() -> None:
    body = (
        "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r"
        + "PID|1||MRN1||DOE^JANE||19800101|F|||1 Main St^^X^OH^44004\r" * 15000
    )
    result = INSPECTOR.inspect(body.encode())
    assert result.contains_phi
    assert len(result.findings) <= 1000


def test_nested_hl7_xml_fields_scan_linearly() -> None:
    body = (
        '<ADT_A01 xmlns="urn:hl7-org:v2xml">'
        + "<PID.5>" * 20000
        + "x"
        + "</PID.5>" * 20000
        + "</ADT_A01>"
    )
    result = INSPECTOR.inspect(body.encode())
    assert result.contains_phi


def test_cda_whose_attached_document_cannot_be_read_fails_closed() -> None:
    body = (
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget><patientRole>'
        b'<id nullFlavor="NI"/></patientRole></recordTarget><component><nonXMLBody>'
        b'<text mediaType="application/pdf" representation="B64">JVBERi0=</text>'
        b"</nonXMLBody></component></ClinicalDocument>"
    )
    result = INSPECTOR.inspect(body)  # "%PDF-" and nothing after it: a truncated PDF
    assert not result.inspected and "nonXMLBody" in result.error


def test_conditional_patient_reference() -> None:
    body = json.dumps(
        {
            "resourceType": "Observation",
            "subject": {"reference": "Patient?identifier=urn:mrn|12345", "display": "John Smith"},
        }
    )
    result = INSPECTOR.inspect(body.encode())
    assert result.contains_phi
    assert Category.NAME in {f.category for f in result.findings}


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
)
def test_wide_text_is_decoded_and_inspected(encoding: str) -> None:
    for text in (fhir_patient_json(PATIENT).decode(), hl7_adt(PATIENT)):
        result = INSPECTOR.inspect(text.encode(encoding))
        assert result.contains_phi and not result.error


def test_malformed_wide_text_fails_closed() -> None:
    assert INSPECTOR.inspect(b"\xff\xfe" + "MSH|^~".encode("utf-16-le") + b"\x00\xd8").error


def test_mllp_start_byte_before_bom() -> None:
    assert INSPECTOR.inspect(b"\x0b\xef\xbb\xbf" + hl7_adt(PATIENT).encode()).contains_phi


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode(),
        lambda text: text.encode("utf-16"),  # orjson reads UTF-8 only: json reads the rest
        lambda text: b"\xef\xbb\xbf" + text.encode(),
        lambda text: text.replace('"active": true', '"active": NaN').encode(),
        lambda text: text.replace('"active": true', '"active": 1' + "0" * 30).encode(),
        lambda text: text.replace('"active": true', '"active": "\\ud800"').encode(),
    ],
    ids=["utf-8", "utf-16", "bom", "nan", "long-integer", "lone-surrogate"],
)
def test_json_that_orjson_refuses_is_still_read(encode: Any) -> None:
    patient = json.dumps(
        {"resourceType": "Patient", "active": True, "name": [{"family": "Quillfeather"}]}
    )
    result = INSPECTOR.inspect(encode(patient))
    assert result.format == FHIR_JSON, result.error
    assert result.contains_phi
    assert "Patient.name" in {f.location for f in result.findings}


def _token_by_token(value: str, empty_chars: str, category: Category) -> bool:
    """The de-identified field check as it was written first: split into tokens, match each
    (kept here as the reference for the one-pattern check)."""
    if not value.strip(empty_chars):
        return False
    if category in RECORD_ID_CATEGORIES:
        component, repetition = empty_chars[0], empty_chars[1]
        value = repetition.join(r.split(component, 1)[0] for r in value.split(repetition))
    safe = SAFE_ADDRESS_TOKEN if category is Category.GEOGRAPHY else SAFE_TOKEN
    tokens = re.split(f"[{re.escape(empty_chars)}]+", value)
    return any(token and safe.match(token) is None for token in tokens)


_FIELD_PIECES = st.sampled_from(
    ["REDACTED", "PSNABCDEFGHIJKLMNOP", "PSNABC", "2005", "200", "20051225", "OH", "USA",
     "Ohio", "SMITH", "\n", "^", "~", "&", "\\", " ", '"', "x", "7", "é", "٣"]
)  # fmt: skip


@given(
    pieces=st.lists(_FIELD_PIECES, max_size=12),
    category=st.sampled_from([Category.NAME, Category.GEOGRAPHY, Category.MRN, Category.DATE]),
    empty_chars=st.sampled_from(['^~\\&" ', '#!$%" ', '^~" ']),
)
def test_the_deidentified_field_check_is_the_token_by_token_check(
    pieces: list[str], category: Category, empty_chars: str
) -> None:
    value = "".join(pieces)
    check = DEIDENTIFIED_CHECKS[category]
    assert check(value, empty_chars) == _token_by_token(value, empty_chars, category)


def test_a_long_run_of_delimiters_before_an_unsafe_token_is_decided_at_once() -> None:
    check = DEIDENTIFIED_CHECKS[Category.NAME]
    started = time.perf_counter()
    assert check("^" * 200_000 + "SMITH", '^~\\&" ')
    assert not check("^ " * 100_000 + "2005", '^~\\&" ')
    assert time.perf_counter() - started < 5  # exponential backtracking would never finish


NARRATIVE_PATIENT = make_patient(1804)


def test_hl7_report_text_names_its_patient_without_a_pid() -> None:
    header = "MSH|^~\\&|LAB|HOSP|RCV|X|20261114||ORU^R01|C1|P|2.5\r"
    report = (
        f"OBX|1|TX|18842-5^Report||PATIENT: Aurelio Quillfeather, MRN: {NARRATIVE_PATIENT.mrn}, "
        f"DOB: {NARRATIVE_PATIENT.birth_date_iso}. Findings normal.\r"
    )
    result = Inspector(Limits()).inspect((header + report).encode())
    assert result.contains_phi and any(f.location.startswith("OBX-5") for f in result.findings)
    note = f"NTE|1||Call back Aurelio Quillfeather, MRN {NARRATIVE_PATIENT.mrn}\r"
    assert Inspector(Limits()).inspect((header + note).encode()).contains_phi
    clean = header + "OBX|1|TX|18842-5^Report||Lipid panel within normal limits.\r"
    assert not Inspector(Limits()).inspect(clean.encode()).contains_phi
