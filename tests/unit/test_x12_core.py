"""X12 in a CAQH CORE SOAP envelope: the interchange in the Payload (escaped, CDATA, base64)
is inspected, a refusal is the CORE response envelope with the incident id, and redaction
rewrites only the Payload (as it was carried), leaving the envelope as sent."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import pytest

from gateway.config import parse_config
from gateway.formats.base import RefusalRequest
from gateway.formats.x12.core import CORE, ERROR_CODE, CoreEnvelope
from gateway.formats.x12.envelope import find
from gateway.formats.x12.verify import counts_are_right
from gateway.inspector import Inspector
from gateway.model import Action, Verdict
from tests.support.patients import make_patient
from tests.support.redaction import InspectingRedactor
from tests.support.x12 import (
    CORE_NS,
    SOAP_12,
    claim_status_276,
    core_envelope,
    eligibility_270,
)
from tests.unit.test_redact import leaked

PATIENT = make_patient(60)
INSPECTOR = Inspector(parse_config({}).limits)
SOAP_11 = "http://schemas.xmlsoap.org/soap/envelope/"


def carried(text: str) -> dict[str, str]:
    return {
        "escaped": escape(text),
        "cdata": f"<![CDATA[{text}]]>",
        "base64": base64.b64encode(text.encode()).decode(),
    }


@pytest.mark.parametrize("how", ["escaped", "cdata", "base64"])
def test_the_payload_is_inspected_however_it_is_carried(how: str) -> None:
    body = core_envelope(carried(eligibility_270(PATIENT))[how]).encode()
    inspection = INSPECTOR.inspect(body)
    assert inspection.format == CORE and inspection.contains_phi
    assert "core/Payload/2100C NM1-03" in {f.location for f in inspection.findings}
    assert inspection.reply["core.PayloadID"] == "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


def test_an_envelope_without_a_patient_passes_and_other_soap_is_not_core() -> None:
    empty = INSPECTOR.inspect(core_envelope("").encode())
    assert empty.format == CORE and not empty.contains_phi
    other = core_envelope(escape(eligibility_270(PATIENT))).replace(CORE_NS, "urn:example")
    assert INSPECTOR.inspect(other.encode()).format != CORE


def refusal(body: str) -> tuple[int, str, ET.Element, str]:
    inspection = INSPECTOR.inspect(body.encode())
    verdict = Verdict(Action.BLOCK, "foreign-phi", "PHI to a foreign destination", True)
    answer = CoreEnvelope().refusal(
        RefusalRequest(verdict, inspection, "inc-20261202-00ab12cd", "refused: PHI abroad")
    )
    assert answer is not None
    return answer.status, answer.content_type, ET.fromstring(answer.body), answer.body.decode()


@pytest.mark.parametrize(
    ("request_name", "soap", "content_type"),
    [
        ("COREEnvelopeRealTimeRequest", SOAP_12, "application/soap+xml"),
        ("COREEnvelopeBatchSubmission", SOAP_11, "text/xml; charset=utf-8"),
    ],
)
def test_the_refusal_is_a_core_error_envelope(
    request_name: str, soap: str, content_type: str
) -> None:
    body = core_envelope(escape(eligibility_270(PATIENT)), request_name, soap)
    status, kind, root, text = refusal(body)
    assert status == 451 and kind == content_type
    assert root.tag == f"{{{soap}}}Envelope"
    response = root[0][0]
    expected = request_name.removesuffix("Request") + "Response"
    assert response.tag == f"{{{CORE_NS}}}{expected}"
    values = {child.tag: child.text for child in response}
    assert values["PayloadType"] == "CoreEnvelopeError"
    assert values["ErrorCode"] == ERROR_CODE
    assert "inc-20261202-00ab12cd" in (values["ErrorMessage"] or "")
    assert (values["SenderID"], values["ReceiverID"]) == ("PayerB", "HospitalA")
    assert values["PayloadID"] == "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    for value in PATIENT.all_identifiers():
        assert value.lower() not in text.lower()


def test_an_envelope_id_that_is_not_an_id_is_never_echoed() -> None:
    sender = f"{PATIENT.given} {PATIENT.family}"
    body = core_envelope(escape(eligibility_270(PATIENT)), sender=sender)
    *_, text = refusal(body)
    assert PATIENT.family not in text and "<ReceiverID></ReceiverID>" in text


@pytest.mark.parametrize("how", ["escaped", "cdata", "base64"])
def test_redaction_rewrites_only_the_payload(how: str) -> None:
    interchange = claim_status_276(PATIENT)
    body = core_envelope(carried(interchange)[how])
    redactor = InspectingRedactor(parse_config({}), b"test-site-secret-0123456789abcdef")
    outcome = redactor.redact(body.encode(), "", CORE)
    assert not outcome.error, outcome.error
    assert leaked(outcome.body, PATIENT) == []
    root = ET.fromstring(outcome.body)
    request = root[1][0]
    payload = next(c for c in request if c.tag == "Payload").text or ""
    text = base64.b64decode(payload).decode() if how == "base64" else payload
    (redacted,) = find(text)
    assert counts_are_right(redacted) and redacted.transactions() == ["276"]
    head = body[: body.index("<Payload>")]
    assert outcome.body.decode().startswith(head)  # the envelope as sent


def test_an_envelope_that_names_the_patient_is_not_forwarded_redacted() -> None:
    body = core_envelope(escape(eligibility_270(PATIENT)), sender=f"SSN {PATIENT.ssn}")
    inspection = INSPECTOR.inspect(body.encode())
    assert any(f.location.startswith("core/envelope") for f in inspection.findings)
    redactor = InspectingRedactor(parse_config({}), b"test-site-secret-0123456789abcdef")
    assert redactor.redact(body.encode(), "", CORE).error
