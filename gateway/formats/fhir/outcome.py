"""FHIR refusals: an OperationOutcome (issue code ``security``) in the format the client
speaks, JSON or XML."""

from __future__ import annotations

import json
from xml.sax.saxutils import quoteattr

JSON_CONTENT_TYPE = "application/fhir+json"
XML_CONTENT_TYPE = "application/fhir+xml"


def _operation_outcome(text: str, incident_id: str) -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "security",
                "details": {"text": text},
                "diagnostics": f"incident {incident_id}",
            }
        ],
    }


def operation_outcome_json(text: str, incident_id: str) -> bytes:
    return json.dumps(_operation_outcome(text, incident_id)).encode()


def operation_outcome_xml(text: str, incident_id: str) -> bytes:
    return (
        '<OperationOutcome xmlns="http://hl7.org/fhir"><issue>'
        '<severity value="error"/><code value="security"/>'
        f"<details><text value={quoteattr(text)}/></details>"
        f"<diagnostics value={quoteattr('incident ' + incident_id)}/>"
        "</issue></OperationOutcome>"
    ).encode()
