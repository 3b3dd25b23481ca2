"""X12 through the real gateway: a claim bound abroad is refused with a 999 that rejects its
group (valid for pyx12), every transaction the gateway reads is refused abroad with nothing
identifying reaching the receiver and arrives byte for byte at home, an interchange whose
envelope cannot be read gets a TA1, and a 999 or a 277CA without patients passes abroad.
(Redaction through the gateway: test_redaction.py.)"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import httpx
import pytest

from gateway.formats.x12.envelope import find
from tests.e2e.conftest import Upstreams
from tests.support.gateway_process import GatewayProcess
from tests.support.patients import make_patient
from tests.support.x12 import (
    Delims,
    ack_999,
    acknowledgement_277ca,
    claim_837d,
    claim_837i,
    claim_837p,
    claim_status_276,
    claim_status_277,
    core_envelope,
    eligibility_270,
    eligibility_271,
    enrollment_834,
    remittance_835,
    review_278,
    validate,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "delims", [Delims(), Delims("|", "!", ">", "\n"), Delims("*", "^", ":", "~", "\r\n")]
)
def test_a_claim_abroad_is_refused_in_x12_and_at_home_it_passes(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess, delims: Delims
) -> None:
    patient = make_patient(2201)
    claim = claim_837p(patient, delims).encode()
    blocked = client.post(
        f"{upstreams.foreign.url}/claims", content=claim, headers={"content-type": "text/plain"}
    )
    assert blocked.status_code == 451
    assert blocked.headers["content-type"] == "application/edi-x12"
    assert validate(blocked.text) == []
    assert "IK5*R*5~" in blocked.text and "AK9*R*1*1*0~" in blocked.text
    assert "/claims" not in upstreams.foreign.paths()
    for value in patient.identifiers():
        assert value not in blocked.text
    incident = blocked.headers["x-phi-gateway-incident"]
    row = gateway.audit_row(incident)
    assert row["format"] == "x12" and row["message_type"] == "837"
    assert "2010BA REF-02" in row["locations"] and patient.family not in str(row)
    home = client.post(f"{upstreams.domestic.url}/claims", content=claim)
    assert home.status_code == 200 and upstreams.domestic.received[-1].body == claim


def test_an_unreadable_envelope_abroad_gets_a_ta1(
    client: httpx.Client, upstreams: Upstreams
) -> None:
    broken = b"ISA*00*cut short~GS*HC*A*B~ST*837*0001~NM1*IL*1*DOE*JOHN~SE*3*0001~"
    answer = client.post(f"{upstreams.foreign.url}/broken", content=broken)
    assert answer.status_code == 451
    (ta1,) = find(answer.text)
    assert [s.tag for s in ta1.segments] == ["ISA", "TA1", "IEA"]
    assert ta1.segments[1].element(4) == "R"
    assert "/broken" not in upstreams.foreign.paths()


def test_an_acknowledgement_passes_abroad(client: httpx.Client, upstreams: Upstreams) -> None:
    ack = ack_999().encode()
    answer = client.post(f"{upstreams.foreign.url}/ack", content=ack)
    assert answer.status_code == 200 and upstreams.foreign.received[-1].body == ack


TRANSACTIONS = [
    (claim_837i, Delims("|", "!", ">", "\n")),
    (claim_837d, Delims(after="\r\n")),
    (remittance_835, Delims("^", "{", "\\", "'", "\n")),
    (enrollment_834, Delims()),
    (eligibility_270, Delims("|", "!", ">", "\n")),
    (eligibility_271, Delims(after="\n")),
    (claim_status_276, Delims()),
    (claim_status_277, Delims("^", "{", "\\", "'", "\n")),
    (review_278, Delims(after="\r\n")),
]


@pytest.mark.parametrize(
    ("generate", "delims"), TRANSACTIONS, ids=lambda v: getattr(v, "__name__", "")
)
def test_every_transaction_is_refused_abroad_and_passes_at_home(
    client: httpx.Client, upstreams: Upstreams, generate: object, delims: Delims
) -> None:
    patient = make_patient(2202)
    body = generate(patient, delims).encode()  # type: ignore[operator]
    path = f"/x12-{generate.__name__}"  # type: ignore[attr-defined]
    blocked = client.post(f"{upstreams.foreign.url}{path}", content=body)
    assert blocked.status_code == 451
    assert path not in upstreams.foreign.paths()
    (reply,) = find(blocked.text)
    assert [s.tag for s in reply.segments][-4:] == ["AK9", "SE", "GE", "IEA"]
    for value in patient.all_identifiers():
        assert value.lower() not in blocked.text.lower()
    home = client.post(f"{upstreams.domestic.url}{path}", content=body)
    assert home.status_code == 200 and upstreams.domestic.received[-1].body == body


def test_a_claim_acknowledgement_without_patients_passes_abroad(
    client: httpx.Client, upstreams: Upstreams
) -> None:
    ack = acknowledgement_277ca(Delims(after="\n")).encode()
    answer = client.post(f"{upstreams.foreign.url}/277ca", content=ack)
    assert answer.status_code == 200 and upstreams.foreign.received[-1].body == ack


def test_a_core_soap_request_abroad_is_refused_in_core(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    patient = make_patient(2203)
    body = core_envelope(escape(eligibility_270(patient))).encode()
    answer = client.post(
        f"{upstreams.foreign.url}/core",
        content=body,
        headers={"content-type": "application/soap+xml"},
    )
    assert answer.status_code == 451
    assert answer.headers["content-type"] == "application/soap+xml"
    root = ET.fromstring(answer.content)
    values = {child.tag: child.text for child in root[0][0]}
    assert values["PayloadType"] == "CoreEnvelopeError"
    incident = answer.headers["x-phi-gateway-incident"]
    assert incident in (values["ErrorMessage"] or "")
    assert "/core" not in upstreams.foreign.paths()
    row = gateway.audit_row(incident)
    assert row["format"] == "caqh-core" and "core/Payload/2100C NM1-03" in row["locations"]
    home = client.post(f"{upstreams.domestic.url}/core", content=body)
    assert home.status_code == 200 and upstreams.domestic.received[-1].body == body
