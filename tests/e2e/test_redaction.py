"""The redact action through the real gateway: the foreign receiver gets a valid,
identifier-free message; the client gets the receiver's own answer."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from gateway.formats.x12.envelope import find
from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import GatewayProcess
from tests.support.mmdb import FOREIGN_IP_2
from tests.support.patients import fhir_rich_bundle, hl7_rich, make_patient
from tests.support.upstream import Pki
from tests.support.x12 import (
    Delims,
    claim_837i,
    claim_837p,
    claim_status_276,
    core_envelope,
    remittance_835,
    validate,
)

pytestmark = pytest.mark.e2e
PATIENT = make_patient(77)


def post_through(
    gateway: GatewayProcess, url: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A POST through the gateway as an explicit proxy, as a client at the hospital sends."""
    with httpx.Client(proxy=gateway.proxy_url) as client:
        return client.post(url, content=body, headers=headers)


def no_identifiers(body: bytes) -> None:
    text = body.decode("latin-1").lower()
    for value in PATIENT.all_identifiers():
        assert value.lower() not in text, "an identifier reached the foreign receiver"


@pytest.fixture(scope="module")
def redacting(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    config = gateway_config(
        test_mmdb,
        pki,
        policy={
            "foreign_phi_action": "redact",
            "allow_destinations": [
                {
                    "cidr": f"{FOREIGN_IP_2}/32",
                    "action": "redact",
                    "reason": "DUA 12: de-identified data only",
                }
            ],
        },
    )
    process = GatewayProcess(tmp_path_factory.mktemp("redacting"), config)
    yield process
    process.stop()


def test_hl7_is_redacted_on_the_way_out(redacting: GatewayProcess, upstreams: Upstreams) -> None:
    body = hl7_rich(PATIENT).encode()
    response = post_through(redacting, upstreams.foreign.url + "/redact-hl7", body)
    assert response.status_code == 200
    assert response.json() == {"ok": True}  # the receiver's own answer
    received = upstreams.foreign.first_at("/redact-hl7")
    no_identifiers(received.body)
    assert received.body.startswith(b"MSH|^~\\&|EPIC|")
    assert int(received.headers["Content-Length"]) == len(received.body)
    rows = redacting.audit_rows_where(action="redact")
    assert rows
    summary = json.loads(rows[-1]["redaction"])
    assert "PID-5" in summary["locations"]
    assert summary["categories"]["ssn"] >= 1
    assert redacting.metric("phi_gateway_redactions_total", result="redacted", format="hl7v2") >= 1


def test_gzip_fhir_bundle_is_redacted_and_still_valid(
    redacting: GatewayProcess, upstreams: Upstreams
) -> None:
    body = gzip.compress(json.dumps(fhir_rich_bundle(PATIENT)).encode())
    response = post_through(
        redacting,
        upstreams.foreign.url + "/redact-fhir",
        body,
        {"content-encoding": "gzip", "content-type": "application/fhir+json"},
    )
    assert response.status_code == 200
    received = upstreams.foreign.first_at("/redact-fhir")
    assert "Content-Encoding" not in received.headers
    no_identifiers(received.body)
    Bundle.model_validate(json.loads(received.body))


def test_fhir_xml_bundle_is_redacted_and_stays_xml(
    redacting: GatewayProcess, upstreams: Upstreams
) -> None:
    xml = Bundle.model_validate(fhir_rich_bundle(PATIENT)).model_dump_xml()
    body = xml if isinstance(xml, bytes) else xml.encode()  # typed str, returned as bytes
    response = post_through(
        redacting,
        upstreams.foreign.url + "/redact-fhir-xml",
        body,
        {"content-type": "application/fhir+xml"},
    )
    assert response.status_code == 200
    received = upstreams.foreign.first_at("/redact-fhir-xml")
    no_identifiers(received.body)
    assert received.body.startswith(b"<?xml")  # still XML, as the client sent it
    Bundle.model_validate_xml(received.body)
    assert redacting.metric("phi_gateway_redactions_total", result="redacted", format="fhir-xml")


def test_redact_rule_for_a_destination(redacting: GatewayProcess, upstreams: Upstreams) -> None:
    body = hl7_rich(PATIENT).encode()
    response = post_through(redacting, upstreams.foreign_2.url + "/dua", body)
    assert response.status_code == 200
    received = upstreams.foreign_2.first_at("/dua")
    no_identifiers(received.body)
    assert redacting.audit_rows_where(rule="redact-list")


def test_what_cannot_be_redacted_is_blocked(
    redacting: GatewayProcess, upstreams: Upstreams
) -> None:
    cda = (
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget><patientRole>'
        b"<id root='1.2.3' extension='" + PATIENT.mrn.encode() + b"'/></patientRole>"
        b"</recordTarget></ClinicalDocument>"
    )
    response = post_through(redacting, upstreams.foreign.url + "/redact-cda", cda)
    assert response.status_code == 451
    assert response.json()["rule"] == "redaction-failed"
    assert "/redact-cda" not in upstreams.foreign.paths()
    assert redacting.metric("phi_gateway_redactions_total", result="failed", format="cda") >= 1


def test_monitor_mode_records_what_would_be_redacted(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    process = GatewayProcess(
        tmp_path,
        gateway_config(test_mmdb, pki, policy={"mode": "monitor", "foreign_phi_action": "redact"}),
    )
    try:
        body = hl7_rich(PATIENT).encode()
        with httpx.Client(proxy=process.proxy_url) as client:
            assert (
                client.post(upstreams.foreign.url + "/would-redact", content=body).status_code
                == 200
            )
        received = upstreams.foreign.first_at("/would-redact")
        assert received.body == body  # monitor: forwarded as sent
        row = process.audit_rows(wait_for=1)[0]
        assert row["action"] == "monitor"
        assert "PID-19" in json.loads(row["redaction"])["locations"]
    finally:
        process.stop()


def test_a_fhir_attachment_is_replaced_by_a_labelled_placeholder(
    redacting: GatewayProcess, upstreams: Upstreams
) -> None:
    from fhir.resources.R4B.documentreference import DocumentReference

    from gateway.formats.fhir.redact import PLACEHOLDER_TEXT
    from tests.support import carriers
    from tests.support import documents as docs

    body = carriers.fhir_document_reference(docs.discharge_summary_pdf(PATIENT), PATIENT)
    response = post_through(
        redacting,
        upstreams.foreign.url + "/redact-attachment",
        body,
        {"content-type": "application/fhir+json"},
    )
    assert response.status_code == 200
    received = upstreams.foreign.first_at("/redact-attachment")
    no_identifiers(received.body)
    resource = DocumentReference.model_validate_json(received.body)  # still valid FHIR
    attachment = resource.content[0].attachment
    assert attachment.data == PLACEHOLDER_TEXT and attachment.contentType == "text/plain"
    assert resource.meta is not None and resource.meta.security
    assert "REDACTED" in {label.code for label in resource.meta.security}


@pytest.mark.parametrize(
    ("generate", "delims"),
    [
        (claim_837p, Delims()),
        (claim_837i, Delims(after="\r\n")),
        (remittance_835, Delims("|", "!", ">", "\n")),
    ],
)
def test_x12_is_redacted_and_stays_a_valid_interchange(
    redacting: GatewayProcess, upstreams: Upstreams, generate: object, delims: Delims
) -> None:
    body = generate(PATIENT, delims).encode()  # type: ignore[operator]
    path = f"/redact-{generate.__name__}"  # type: ignore[attr-defined]
    response = post_through(redacting, upstreams.foreign.url + path, body)
    assert response.status_code == 200 and response.json() == {"ok": True}
    received = upstreams.foreign.first_at(path)
    no_identifiers(received.body)
    text = received.body.decode()
    assert text.startswith(body.decode()[:106])  # the ISA header as sent
    if delims.element == "*":
        assert validate(text) == []  # pyx12, with the implementation guide's map
    rows = [r for r in redacting.audit_rows_where(action="redact") if r["format"] == "x12"]
    assert rows
    summary = json.loads(rows[-1]["redaction"])
    assert any(location.endswith("NM1-03") for location in summary["locations"])
    assert redacting.metric("phi_gateway_redactions_total", result="redacted", format="x12") >= 1


def test_x12_in_a_core_envelope_is_redacted_in_place(
    redacting: GatewayProcess, upstreams: Upstreams
) -> None:
    interchange = claim_status_276(PATIENT)
    body = core_envelope(base64.b64encode(interchange.encode()).decode()).encode()
    response = post_through(
        redacting,
        upstreams.foreign.url + "/redact-core",
        body,
        {"content-type": "application/soap+xml"},
    )
    assert response.status_code == 200
    received = upstreams.foreign.first_at("/redact-core")
    head = body[: body.index(b"<Payload>") + len(b"<Payload>")]
    assert received.body.startswith(head)  # the envelope as sent
    payload = received.body[len(head) : received.body.index(b"</Payload>")]
    no_identifiers(base64.b64decode(payload))
    no_identifiers(received.body)
    (redacted,) = find(base64.b64decode(payload).decode())
    assert redacted.transactions() == ["276"]


def test_relatives_named_in_free_text_are_redacted(
    redacting: GatewayProcess, upstreams: Upstreams
) -> None:
    # Safe Harbor removes relatives', employers' and household members' names too: here they
    # are only in the notes, in no structured field the redactor could learn them from.
    notes = (
        "NTE|2||Spouse Aurelio Quillfeather requests callback re: discharge time.\r"
        "NTE|3||Son Mateo attends Lincoln Elementary School; employer: Riverside Auto Parts.\r"
        f"NTE|4||SSN re-verified as {''.join(chr(ord(c) + 0xFEE0) for c in PATIENT.ssn)}\r"
    )
    body = (hl7_rich(PATIENT).rstrip("\r") + "\r" + notes).encode()
    response = post_through(redacting, upstreams.foreign.url + "/redact-relatives", body)
    assert response.status_code == 200
    received = upstreams.foreign.first_at("/redact-relatives").body.decode("utf-8")
    no_identifiers(received.encode("utf-8"))
    for name in ("Quillfeather", "Aurelio", "Mateo", "Lincoln", "Riverside"):
        assert name not in received, "a relative's or employer's name reached the receiver"
    assert not any("\uff10" <= ch <= "\uff19" for ch in received)
    assert "requests callback re: discharge time." in received  # the note itself survives
