import json

from fhir.resources.operationoutcome import OperationOutcome
from hl7apy.parser import parse_message

from gateway.enforce import block_response
from gateway.formats.fhir import FHIR_JSON, FHIR_XML
from gateway.formats.hl7v2.ack import hl7_escape, hl7_reject_ack
from gateway.formats.hl7v2.inspect import inspect_hl7
from gateway.model import Action, Format, Inspection, Verdict
from tests.support.patients import hl7_adt, make_patient

VERDICT = Verdict(Action.BLOCK, "foreign-phi", "payload identifying a patient to IN", record=True)


def test_ack_rejects_with_the_senders_control_id() -> None:
    for version in ("2.3", "2.5.1", "2.8"):
        inspection = inspect_hl7(hl7_adt(make_patient(1), control_id="CT&7", version=version))
        text = hl7_reject_ack(inspection, "Blocked: reason", "INC-1")
        ack = parse_message(text, find_groups=False)
        assert ack.msa.msa_1.to_er7() == "AR"
        assert ack.msa.msa_2.to_er7() == "CT\\T\\7"  # escaped, not split
        assert ack.msh.msh_12.to_er7() == version
        assert ack.msh.msh_10.to_er7() == "INC-1"
        assert ack.msh.msh_9.to_er7() == "ACK^A01"
        # Routing is reversed: the ACK goes back to the sender.
        assert ack.msh.msh_5.to_er7() == "EPIC"
        assert "INC-1" in ack.to_er7() or "Blocked" in text
        assert text.count("\r") == 3


def test_ack_never_echoes_payload_values() -> None:
    patient = make_patient(2)
    inspection = inspect_hl7(hl7_adt(patient))
    response = block_response(VERDICT, inspection, "INC-2")
    for value in patient.identifiers():
        assert value.encode() not in response.body


def test_hl7_escape() -> None:
    assert hl7_escape("a|b^c~d\\e&f") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"


def test_fhir_json_outcome_validates() -> None:
    response = block_response(VERDICT, Inspection(FHIR_JSON), "INC-3")
    assert (response.status, response.content_type) == (451, "application/fhir+json")
    outcome = OperationOutcome.model_validate(json.loads(response.body))
    assert outcome.issue[0].severity == "error"
    assert outcome.issue[0].diagnostics == "incident INC-3"
    assert dict(response.headers)["X-PHI-Gateway-Incident"] == "INC-3"


def test_fhir_xml_outcome_for_xml_clients() -> None:
    response = block_response(VERDICT, Inspection(FHIR_XML), "INC-4")
    assert response.content_type == "application/fhir+xml"
    assert b'<code value="security"/>' in response.body
    by_accept = block_response(
        VERDICT, Inspection(Format.JSON), "INC-5", accept="application/fhir+xml"
    )
    assert by_accept.content_type == "application/fhir+xml"


def test_other_clients_get_json() -> None:
    response = block_response(VERDICT, Inspection(Format.TEXT), "INC-6")
    assert response.content_type == "application/json"
    assert json.loads(response.body)["incident_id"] == "INC-6"
