"""Safe Harbor redaction: nothing identifying survives, and the output still parses."""

from __future__ import annotations

import base64
import gc
import hmac
import json
import re
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.patient import Patient as FhirPatient
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.formats.cda import CDA
from gateway.formats.fhir import FHIR_JSON, FHIR_NDJSON, FHIR_XML
from gateway.formats.fhir.xml import fhir_json_to_xml, fhir_xml_to_json
from gateway.formats.hl7v2 import HL7V2
from gateway.formats.hl7v2.inspect import inspect_hl7
from gateway.formats.hl7v2.verify import DEIDENTIFIED_CHECKS, verify_hl7
from gateway.formats.xmldoc import parse_xml
from gateway.inspector import Inspector
from gateway.phi.safe_harbor import (
    DatePolicy,
    KeyedHash,
    Pseudonymizer,
    base32_80,
    zip3,
)
from gateway.phi.scrub import searched_values, street_spellings
from tests.support.corpus import CORPUS, labelled
from tests.support.patients import (
    Patient,
    fhir_patient,
    fhir_rich_bundle,
    hl7_rich,
    make_patient,
)
from tests.support.redaction import InspectingRedactor

SECRET = b"test-site-secret-0123456789abcdef"


def redactor(**settings: object) -> InspectingRedactor:
    return InspectingRedactor(parse_config({"redaction": settings}), SECRET)


def leaked(output: bytes, patient: Patient) -> list[str]:
    """Identifier values found in the output: case-insensitive, and for numbers also with
    their separators dropped (555-213-8687 written as 5552138687)."""
    text = output.decode("utf-8", "replace").lower()
    joined = re.sub(r"(?<=\d)[-. ()/]+(?=\d)", "", text)
    found = [v for v in patient.all_identifiers() if v.lower() in text]
    for value in patient.all_identifiers():
        only_digits = re.sub(r"\D", "", value)
        if (
            len(only_digits) >= 7
            and not re.sub(r"[-\d. ()/]", "", value)
            and re.search(rf"(?<!\d){only_digits}(?!\d)", joined)
        ):
            found.append(value)
    return found


MESSAGE_SHAPES = st.sampled_from(
    [
        ("ADT^A01", "2.3", "|^~\\&", "\r"),
        ("ADT^A08", "2.5.1", "|^~\\&", "\n"),
        ("ORU^R01", "2.4", "|^~\\&", "\r\n"),
        ("ADT^A04", "2.8", "$%~\\&", "\r"),
        ("ORM^O01", "2.6", "#^~\\&", "\r"),
        ("ADT^A03", "2.1", "|^~\\&", "\r"),
        ("DFT^P03", "2.2", "|^~\\&", "\r"),
        ("MDM^T02", "2.7", "|^~\\&", "\r"),
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), shape=MESSAGE_SHAPES)
def test_hl7_redaction_leaves_no_identifier_and_parses(seed: int, shape: tuple[str, ...]) -> None:
    patient = make_patient(seed)
    message_type, version, delimiters, end = shape
    body = hl7_rich(patient, message_type, version, delimiters, end).encode()
    outcome = redactor().redact(body, "", HL7V2)
    assert not outcome.error, outcome.error
    assert leaked(outcome.body, patient) == []
    text = outcome.body.decode()
    assert not inspect_hl7(text, DEIDENTIFIED_CHECKS).contains_phi
    if delimiters == "|^~\\&":
        parsed = parse_message(text.replace("\r\n", "\r").replace("\n", "\r"), find_groups=False)
        assert parsed.msh.msh_10.to_er7() == f"CTRL{patient.visit[1:]}"  # ACK still possible
        assert parsed.pid.pid_3.to_er7().startswith("PSN")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_fhir_bundle_redaction_leaves_no_identifier_and_validates(seed: int) -> None:
    patient = make_patient(seed)
    body = json.dumps(fhir_rich_bundle(patient)).encode()
    outcome = redactor().redact(body, "", FHIR_JSON)
    assert not outcome.error, outcome.error
    assert leaked(outcome.body, patient) == []
    bundle = json.loads(outcome.body)
    Bundle.model_validate(bundle)
    # References still resolve inside the Bundle, through pseudonymous urn:uuids.
    full_urls = {e["fullUrl"] for e in bundle["entry"] if "fullUrl" in e}
    subjects = {
        e["resource"]["subject"]["reference"] for e in bundle["entry"] if "subject" in e["resource"]
    }
    assert subjects <= full_urls
    assert not full_urls & {"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}
    labels = {s["code"] for s in bundle["entry"][0]["resource"]["meta"]["security"]}
    assert labels == {"REDACTED", "PSEUDED"}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_fhir_xml_redaction_leaves_no_identifier_and_validates(seed: int) -> None:
    # fhir.resources (lxml) writes the XML, so the reader is tested against another writer.
    patient = make_patient(seed)
    body = as_xml(Bundle.model_validate(fhir_rich_bundle(patient)))
    assert patient.family.encode() in body
    outcome = redactor().redact(body, "", FHIR_XML)
    assert not outcome.error, outcome.error
    assert outcome.content_type == "application/fhir+xml"
    assert leaked(outcome.body, patient) == []
    Bundle.model_validate_xml(outcome.body)
    bundle = fhir_xml_to_json(parse_xml(outcome.body))
    entries = bundle["entry"]
    labels = {s["code"] for s in entries[0]["resource"]["meta"]["security"]}
    assert labels == {"REDACTED", "PSEUDED"}
    subjects = {
        e["resource"]["subject"]["reference"] for e in entries if "subject" in e["resource"]
    }
    assert subjects and subjects <= {e["fullUrl"] for e in entries if "fullUrl" in e}


def as_xml(model: Any) -> bytes:
    """fhir.resources' XML (typed as str, returned as bytes)."""
    xml = model.model_dump_xml()
    return xml if isinstance(xml, bytes) else xml.encode()


def test_fhir_xml_round_trips_through_the_json_form() -> None:
    body = as_xml(FhirPatient.model_validate(fhir_patient(make_patient(7))))
    resource = fhir_xml_to_json(parse_xml(body))
    assert resource["resourceType"] == "Patient"
    assert fhir_xml_to_json(parse_xml(fhir_json_to_xml(resource))) == resource
    FhirPatient.model_validate_xml(fhir_json_to_xml(resource))


def test_fhir_xml_primitive_extensions_and_old_ages_survive_conversion() -> None:
    xml = (
        b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/>'
        b'<code><text value="age"/></code>'
        b'<valueQuantity><value value="93"/><unit value="years"/></valueQuantity>'
        b'<issued value="2024-05-06T07:08:09Z"><extension url="http://x.org/e">'
        b'<valueString value="note"/></extension></issued></Observation>'
    )
    resource = fhir_xml_to_json(parse_xml(xml))
    assert resource["_issued"] == {"extension": {"url": "http://x.org/e", "valueString": "note"}}
    assert fhir_xml_to_json(parse_xml(fhir_json_to_xml(resource))) == resource
    outcome = redactor().redact(xml, "", FHIR_XML)
    assert not outcome.error, outcome.error
    assert b'value="93"' not in outcome.body  # an age of 90 or more is not kept


def test_fhir_ndjson_redaction() -> None:
    patients = [make_patient(seed) for seed in range(5)]
    body = b"\n".join(json.dumps(fhir_patient(p)).encode() for p in patients)
    outcome = redactor().redact(body, "", FHIR_NDJSON)
    assert not outcome.error
    for patient in patients:
        assert leaked(outcome.body, patient) == []
    for line in outcome.body.splitlines():
        FhirPatient.model_validate(json.loads(line))


def test_pseudonyms_are_keyed_and_consistent() -> None:
    patient = make_patient(1)
    first = redactor().redact(hl7_rich(patient).encode(), "", HL7V2).body
    again = redactor().redact(hl7_rich(patient).encode(), "", HL7V2).body
    assert first == again
    other = InspectingRedactor(parse_config({}), b"another-secret")
    assert other.redact(hl7_rich(patient).encode(), "", HL7V2).body != first


def test_remove_mode_clears_identifiers() -> None:
    patient = make_patient(2)
    outcome = redactor(identifiers="remove").redact(hl7_rich(patient).encode(), "", HL7V2)
    assert not outcome.error
    assert b"PSN" not in outcome.body
    assert leaked(outcome.body, patient) == []


def test_date_shift_is_consistent_per_patient() -> None:
    patient = make_patient(4)
    shifted = redactor(dates="shift").redact(hl7_rich(patient).encode(), "", HL7V2)
    assert not shifted.error
    pid = next(s for s in shifted.body.decode().split("\r") if s.startswith("PID"))
    evn = next(s for s in shifted.body.decode().split("\r") if s.startswith("EVN"))
    assert len(pid.split("|")[7]) == 8  # a full (shifted) date, not a year
    assert pid.split("|")[7] != patient.birth_date
    assert evn.split("|")[2] != patient.admit_date
    again = redactor(dates="shift").redact(hl7_rich(patient).encode(), "", HL7V2)
    assert again.body == shifted.body


def test_keep_list_and_z_segments() -> None:
    patient = make_patient(5)
    outcome = redactor(keep=["PID-8"], z_segments="keep").redact(
        hl7_rich(patient).encode(), "", HL7V2
    )
    segments = outcome.body.decode().split("\r")
    zpi = next(s for s in segments if s.startswith("ZPI"))
    assert zpi.startswith("ZPI|1|")  # kept, but the message's identifiers are still scrubbed
    assert patient.mrn not in zpi


def test_zip3_and_age_rules() -> None:
    assert zip3("44004") == "440"
    assert zip3("03601-1234") == "000"  # restricted area
    assert zip3("not a zip") == "000"
    dates = DatePolicy(reference_year=2026)
    assert dates.birth_year("19800101") == "1980"
    assert dates.birth_year("19300101") == ""  # 96 years old: no year at all
    assert dates.generalize("2024-03-05T10:00:00Z") == "2024"


def test_verification_refuses_a_half_redacted_message() -> None:
    patient = make_patient(6)
    original = hl7_rich(patient)
    assert verify_hl7(original, set(), shifted_dates=False)
    problem = verify_hl7(
        original.replace(patient.ssn, ""), searched_values({patient.family}), False
    )
    assert problem


@pytest.mark.parametrize(
    ("note", "refused"),
    [
        # A relative's name and street, nowhere in the structured fields: not scrubbed.
        ("Mother: Mrs. Jane Smith, 12 Oak Street, Springfield", True),
        ("Relative at 12 Oak Street\\.br\\Mother: Mrs. Jane Smith", True),  # escapes undone
        ("Patient doing well, follow up in 2 weeks with Dr. Careful.", False),
        ("Mother: Mrs. Jane Smith", False),  # a name alone is not PHI (docs/phi-detection.md)
    ],
)
def test_verification_reads_notes_with_the_free_text_detectors(note: str, refused: bool) -> None:
    body = (hl7_rich(make_patient(8)) + f"NTE|2||{note}\r").encode()
    outcome = redactor().redact(body, "", HL7V2)
    assert (outcome.error == "free text still identifies a patient") is refused
    assert refused or not outcome.error


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("Mother: Mrs. Jane Smith, 12 Oak Street, Springfield", True),
        ("Stable, no acute distress; recheck in two weeks", False),
    ],
)
def test_fhir_verification_reads_strings_with_the_free_text_detectors(
    text: str, refused: bool
) -> None:
    bundle: dict[str, Any] = fhir_rich_bundle(make_patient(9))
    observation = {"resourceType": "Observation", "status": "final", "valueString": text}
    bundle["entry"].append({"resource": observation})
    outcome = redactor().redact(json.dumps(bundle).encode(), "", FHIR_JSON)
    assert (outcome.error == "free text still identifies a patient") is refused
    assert refused or not outcome.error


def test_a_display_is_learned_as_a_name_only_when_it_can_point_at_a_person() -> None:
    """A Bundle says what each urn:uuid is: the display of a reference to a lab result is
    the lab's name, and must not be masked wherever the lab is named."""
    patient, observation = "urn:uuid:0f6b6d4e-0001", "urn:uuid:0f6b6d4e-0002"
    lab = "Hemoglobin A1c panel result"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": patient, "resource": {"resourceType": "Patient"}},
            {
                "fullUrl": observation,
                "resource": {
                    "resourceType": "Observation",
                    "code": {"coding": [{"system": "http://loinc.org", "display": lab}]},
                },
            },
            {
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "subject": {"reference": patient, "display": "Quillfeather Smith"},
                    "result": [{"reference": observation, "display": lab}],
                    "conclusion": "Reviewed with Quillfeather Smith",
                }
            },
        ],
    }
    outcome = redactor().redact(json.dumps(bundle).encode(), "", FHIR_JSON)
    assert not outcome.error
    assert lab.encode() in outcome.body  # the Observation's coding keeps its display
    assert b"Quillfeather" not in outcome.body  # the patient's display is learned and masked


@pytest.mark.parametrize("meta", [5, "text", ["a"], None])
def test_a_malformed_meta_is_replaced_not_a_crash(meta: object) -> None:
    patient = {"resourceType": "Patient", "meta": meta, "name": [{"family": "Quillfeather"}]}
    outcome = redactor().redact(json.dumps(patient).encode(), "", FHIR_JSON)
    assert not outcome.error
    assert json.loads(outcome.body)["meta"]["security"][0]["code"] == "REDACTED"


def test_an_unexpected_redactor_error_blocks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("Quillfeather")  # an exception quoting a value

    monkeypatch.setattr("gateway.formats.hl7v2.Hl7Redactor.redact", broken)
    outcome = redactor().redact(hl7_rich(make_patient(1)).encode(), "", HL7V2)
    assert outcome.error == "cannot redact: unexpected KeyError"
    assert not outcome.body
    assert "KeyError" in caplog.text
    assert "Quillfeather" not in caplog.text


def test_the_garbage_collector_is_left_as_it_was_found() -> None:
    body = hl7_rich(make_patient(2)).encode()
    assert gc.isenabled()
    redactor().redact(body, "", HL7V2)
    redactor().redact(b"MSH|broken", "", HL7V2)  # refused: the error path too
    assert gc.isenabled()
    gc.disable()  # someone else paused it: it stays paused
    try:
        redactor().redact(body, "", HL7V2)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_unsupported_formats_are_refused_not_forwarded() -> None:
    outcome = redactor().redact(b"<ClinicalDocument/>", "", CDA)
    assert outcome.error


def test_pseudonymizer_uuid_shape() -> None:
    value = Pseudonymizer(SECRET).uuid("61ebe359-bfdc-4613-8bf2-c5e300945f0a")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}", value)


def test_pseudonyms_never_change_across_releases() -> None:
    """Known answers, computed once with hmac.new and base64.b32encode: a receiver links
    records by these values, so a faster implementation must give exactly the same."""
    known = Pseudonymizer(b"known-answer-secret")
    assert known.pseudonym("hl7-id", "MRN86848884") == "PSN2AJHYY5HNPBUI42Y"
    assert known.pseudonym("fhir-id", "example") == "PSNSEPNORREIZJ446B5"
    assert known.uuid("61ebe359") == "0fc06130-8b7b-40ec-af10-0a464eac4f5f"
    assert known.shift_days("MRN1", 365) == -223


def test_a_date_shift_is_never_zero() -> None:
    """A shift of 0 days would forward the real dates; with 5 possible shifts one patient
    in five would draw it."""
    pseudonymizer = Pseudonymizer(SECRET)
    shifts = [pseudonymizer.shift_days(f"MRN{n}", 2) for n in range(300)]
    assert 0 not in shifts and set(shifts) == {-2, -1, 1, 2}


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=150), message=st.binary(max_size=300))
def test_keyed_hash_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert KeyedHash(key).digest(message) == hmac.digest(key, message, "sha256")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=10, max_size=10))
def test_base32_of_ten_bytes_is_the_standard_encoding(data: bytes) -> None:
    assert base32_80(data) == base64.b32encode(data).decode()


REDACTABLE = (HL7V2, FHIR_JSON, FHIR_NDJSON, FHIR_XML)


def _phi_corpus() -> list[str]:
    return [path for path, label in labelled() if label == "phi"]


@pytest.mark.skipif(not _phi_corpus(), reason=f"labelled corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", _phi_corpus())
def test_corpus_phi_files_redact_and_parse(path: str) -> None:
    data = (CORPUS / path).read_bytes()
    inspection = Inspector(parse_config({}).limits).inspect(data)
    outcome = redactor().redact(data, "", inspection.format)
    if inspection.format not in REDACTABLE:
        assert outcome.error  # HL7 v2 XML and CDA are refused (blocked), never forwarded
        return
    assert not outcome.error, outcome.error
    again = Inspector(parse_config({}).limits).inspect(outcome.body)
    assert again.format is inspection.format and not again.error
    if inspection.format == HL7V2:
        assert not inspect_hl7(outcome.body.decode("latin-1"), DEIDENTIFIED_CHECKS).contains_phi
    elif inspection.format == FHIR_XML:
        parse_xml(outcome.body)
    else:
        for line in (
            outcome.body.splitlines() if inspection.format == FHIR_NDJSON else [outcome.body]
        ):
            json.loads(line)


# -- regressions found by adversarial review ------------------------------------------------
PID_LINE = (
    "PID|1||MRN12345678^^^HOSP^MR||Quillfeather^Aurelio||19600102|M|||"
    "123 Juniper Hollow Rd^^Ashtabula^OH^44004||(555) 321-7654|||||ACC1234567|123-45-6789"
)
MSH_LINE = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C1|P|2.5.1"


def _hl7(*segments: str) -> bytes:
    return ("\r".join([MSH_LINE, *segments]) + "\r").encode()


def test_bare_line_feed_inside_a_segment_hides_nothing() -> None:
    body = _hl7(PID_LINE.replace("PID|1|", "PID|1\n|"))
    assert Inspector(parse_config({}).limits).inspect(body).contains_phi
    outcome = redactor().redact(body, "", HL7V2)
    assert outcome.error or b"Quillfeather" not in outcome.body


@pytest.mark.parametrize(
    "segment",
    [
        "NTE|1||SSN 123456789 on file, phone 5553217654",
        "OBX|1|XPN|56789-0^Name^LN||Quillfeather^Aurelio",
        "OBX|2|CX|56789-1^Id^LN||MRN12345678^^^HOSP^MR",
        "OBX|3|XAD|56789-2^Addr^LN||9 Tanager Way^^Kalispell^MT^59901",
    ],
)
def test_identifiers_in_other_shapes_do_not_survive(segment: str) -> None:
    outcome = redactor().redact(_hl7(PID_LINE, segment), "", HL7V2)
    assert not outcome.error, outcome.error
    for value in ("123456789", "5553217654", "Quillfeather", "MRN12345678", "Tanager"):
        assert value.encode() not in outcome.body


def test_batch_headers_and_trailers_are_scrubbed() -> None:
    body = (
        "FHS|^~\\&|A\rBHS|^~\\&|A|||||||Batch for Quillfeather 123-45-6789\r"
        + _hl7(PID_LINE).decode()
        + "BTS|1|Quillfeather\rFTS|1\r"
    ).encode()
    outcome = redactor().redact(body, "", HL7V2)
    assert not outcome.error, outcome.error
    assert b"Quillfeather" not in outcome.body
    assert b"123-45-6789" not in outcome.body


def test_fhir_review_findings() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": "https://x/Patient?family=Quillfeather"}],
        "entry": [
            {
                "fullUrl": "https://x/Patient/p1",
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "name": [{"family": "Quillfeather"}],
                    "contained": [{"resourceType": "Organization", "id": "org1", "name": "Ward 4"}],
                    "managingOrganization": {"reference": "#org1"},
                },
            },
            {
                "resource": {
                    "resourceType": "Specimen",
                    "id": "s1",
                    "accessionIdentifier": {"value": "ACC-2024-998877"},
                    "subject": {"reference": "Patient/p1"},
                }
            },
            {
                "resource": {
                    "resourceType": "Coverage",
                    "id": "c1",
                    "status": "active",
                    "beneficiary": {"reference": "Patient/p1"},
                    "payor": [{"display": "Delphine Ravensworth"}],
                }
            },
            {
                "resource": {
                    "resourceType": "Binary",
                    "id": "b1",
                    "contentType": "text/plain",
                    "data": "UXVpbGxmZWF0aGVy",
                }
            },
        ],
    }
    outcome = redactor().redact(json.dumps(bundle).encode(), "", FHIR_JSON)
    assert not outcome.error, outcome.error
    text = outcome.body.decode()
    for value in ("Quillfeather", "ACC-2024-998877", "Ravensworth", "UXVpbGxmZWF0aGVy"):
        assert value not in text
    redacted = json.loads(outcome.body)
    patient = redacted["entry"][0]["resource"]
    assert patient["managingOrganization"]["reference"] == "#" + patient["contained"][0]["id"]
    assert isinstance(redacted["entry"][1]["resource"]["accessionIdentifier"], dict)
    Bundle.model_validate(redacted)


def test_compound_names_partner_surnames_zip_and_date_spellings() -> None:
    pid = (
        "PID|1||MRN12345678^^^HOSP^MR||Garcia-Lopez&&&&Jansen^Maria||19600102|F|||"
        "1 Elm St^^Kalispell^MT^59901"
    )
    note = (
        "NTE|1||Mrs. Garcia called; Jansen family aware; born Jan 2, 1960 (01/02/60, "
        "02.01.1960); lives in 59901"
    )
    outcome = redactor().redact(_hl7(pid, note), "", HL7V2)
    assert not outcome.error, outcome.error
    for value in (
        b"Garcia",
        b"Lopez",
        b"Jansen",
        b"Jan 2, 1960",
        b"01/02/60",
        b"02.01.1960",
        b"59901",
    ):
        assert value not in outcome.body


def test_visit_dates_employers_and_old_ages() -> None:
    pv1 = "PV1|1|I|4E^401^1" + "|" * 41 + "20240315083000|20240320"
    nk1 = "NK1|1|Quillfeather^Ottilie|SPO||||||||||Quarrybrook Tannery"
    note = "NTE|1||Admitted 03/15/2024, discharged 2024-03-20; works at Quarrybrook Tannery"
    age = "OBX|1|NM|30525-0^Age^LN||94|a^year^UCUM|||||F"
    outcome = redactor().redact(_hl7(PID_LINE, nk1, pv1, age, note), "", HL7V2)
    assert not outcome.error, outcome.error
    text = outcome.body.decode()
    for value in ("03/15/2024", "2024-03-20", "Quarrybrook", "|94|"):
        assert value not in text
    assert "|90|a^year^UCUM" in text
    observation = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "onsetAge": {
            "value": 94,
            "unit": "years",
            "system": "http://unitsofmeasure.org",
            "code": "a",
        },
    }
    fhir = redactor().redact(json.dumps(observation).encode(), "", FHIR_JSON)
    onset = json.loads(fhir.body)["onsetAge"]
    assert (onset["value"], onset["comparator"]) == (90, ">=")


def test_names_hidden_in_hl7_escapes_are_caught_by_verification() -> None:
    for note in ("NTE|1||Pt \\X517569\\llfeather seen", "NTE|1||Pt \\H\\Quill\\N\\feather seen"):
        outcome = redactor().redact(_hl7(PID_LINE, note), "", HL7V2)
        assert outcome.error or b"uill" not in outcome.body  # blocked, never forwarded as is


def test_street_spelled_another_way_in_a_note_is_scrubbed() -> None:
    pid = (
        "PID|1||MRN12345678^^^HOSP^MR||Quillfeather^Aurelio||19600102|M|||"
        "4417 Juniper Hollow Rd^^Ashtabula^OH^44004"
    )
    note = "NTE|1||Pt lives at 4417 Juniper Hollow Road; family on Juniper Hollow Rd. too"
    outcome = redactor().redact(_hl7(MSH_LINE, pid, note), "", HL7V2)
    assert not outcome.error, outcome.error
    assert b"juniper" not in outcome.body.lower()


def test_street_spellings() -> None:
    assert street_spellings("4417 Juniper Hollow Rd") == {
        "4417 Juniper Hollow Rd",
        "4417 Juniper Hollow road",
        "Juniper Hollow Rd",
        "Juniper Hollow road",
    }
    assert "Tanager way" not in street_spellings("12 Tanager Way")  # no other spelling
    assert street_spellings("Sycamore Avenue") == {"Sycamore Avenue", "Sycamore ave"}
    assert street_spellings("Apt") == set()


@pytest.mark.parametrize(("unit", "expected"), [("a", 90), ("mg", 10**400)])
def test_a_number_past_float_range_is_read_not_a_crash(unit: str, expected: int) -> None:
    """json reads 1 followed by 400 zeros as an int; as an age in years it is 90 or older."""
    body = (
        '{"resourceType": "Observation", "id": "o1", "valueQuantity": '
        f'{{"value": 1{"0" * 400}, "unit": "{unit}"}}}}'
    ).encode()
    outcome = redactor().redact(body, "", FHIR_JSON)
    assert not outcome.error
    assert json.loads(outcome.body)["valueQuantity"]["value"] == expected


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_hl7_sent_as_utf16_or_utf32_is_redacted_in_the_same_encoding(codec: str) -> None:
    patient = make_patient(4)
    sent = hl7_rich(patient).encode(codec)  # "utf-16" and "utf-32" write a BOM first
    outcome = redactor().redact(sent, "", HL7V2)
    assert not outcome.error, outcome.error
    assert outcome.body[:4] == sent[:4]  # the same BOM, or the same byte order without one
    text = outcome.body.decode(codec)
    assert text.startswith("MSH|") and patient.family not in text
    assert not inspect_hl7(text, DEIDENTIFIED_CHECKS).contains_phi
