"""Act stage: refusals in the protocol's own language.

- FHIR clients get HTTP 451 with a FHIR OperationOutcome (JSON or XML, as they spoke).
- HL7 v2 senders get an ACK with MSA-1 = AR, MSA-2 = their MSH-10 and an ERR segment, so an
  interface engine stops retrying and shows an operator why.
- Everyone else gets JSON. Every refusal carries the incident id of its audit record.
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from gateway.model import Format, Inspection, Verdict

INCIDENT_HEADER = "X-PHI-Gateway-Incident"
BLOCK_STATUS = 451  # Unavailable For Legal Reasons
ACK_SENDER = "PHI-GATEWAY"

# hl7apy builds each ACK shape once per HL7 version; requests only fill in the placeholders
# (hl7apy costs ~8 ms per message, which the block path of a flood cannot afford).
_ACK_VERSIONS = {"2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1"}
_VERSION = re.compile(r"^2\.[1-8](\.[0-9])?$")
_MAX_ECHO = 200
_PH = {
    name: f"ZZ{name}ZZ"
    for name in (
        "SAPP",
        "SFAC",
        "RAPP",
        "RFAC",
        "TIME",
        "TYPE",
        "MSGID",
        "CODE",
        "CTRL",
        "TEXT",
        "VER",
    )
}
_PLACEHOLDER = re.compile("|".join(_PH.values()))


@dataclass(frozen=True, slots=True)
class BlockResponse:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def refusal_text(verdict: Verdict, incident_id: str) -> str:
    return (
        f"Blocked by PHI egress gateway ({verdict.rule}): {verdict.reason}. Incident {incident_id}"
    )


def wants_xml(content_type: str, accept: str, inspection: Inspection) -> bool:
    if inspection.format is Format.FHIR_XML:
        return True
    if inspection.format in (Format.FHIR_JSON, Format.FHIR_NDJSON):
        return False
    return "xml" in accept.lower() and "json" not in accept.lower()


def block_response(
    verdict: Verdict,
    inspection: Inspection,
    incident_id: str,
    *,
    content_type: str = "",
    accept: str = "",
) -> BlockResponse:
    headers = ((INCIDENT_HEADER, incident_id),)
    text = refusal_text(verdict, incident_id)
    if inspection.format in (Format.HL7V2, Format.HL7V2_XML):
        body = hl7_reject_ack(inspection, text, incident_id).encode()
        return BlockResponse(BLOCK_STATUS, "x-application/hl7-v2+er7", body, headers)
    fhir = inspection.format in (Format.FHIR_JSON, Format.FHIR_XML, Format.FHIR_NDJSON)
    if fhir or "fhir" in content_type.lower() or "fhir" in accept.lower():
        if wants_xml(content_type, accept, inspection):
            return BlockResponse(
                BLOCK_STATUS,
                "application/fhir+xml",
                operation_outcome_xml(text, incident_id),
                headers,
            )
        return BlockResponse(
            BLOCK_STATUS,
            "application/fhir+json",
            operation_outcome_json(text, incident_id),
            headers,
        )
    body = json.dumps(
        {
            "error": "blocked",
            "rule": verdict.rule,
            "reason": verdict.reason,
            "incident_id": incident_id,
        }
    ).encode()
    return BlockResponse(BLOCK_STATUS, "application/json", body, headers)


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


def hl7_escape(value: str) -> str:
    """Escape a value for the standard delimiters |^~\\& (escape character first)."""
    return (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


@functools.lru_cache(maxsize=16)
def _ack_template(version: str) -> str:
    from hl7apy.core import Message  # imported lazily: only refusals need it

    msg = Message("ACK", version=version)
    msh = msg.msh
    msh.msh_3 = _PH["SAPP"]
    msh.msh_4 = _PH["SFAC"]
    msh.msh_5 = _PH["RAPP"]
    msh.msh_6 = _PH["RFAC"]
    msh.msh_7 = _PH["TIME"]
    msh.msh_9 = _PH["TYPE"]
    msh.msh_10 = _PH["MSGID"]
    msh.msh_11 = "P"
    msh.msh_12 = _PH["VER"]
    msg.msa.msa_1 = _PH["CODE"]
    msg.msa.msa_2 = _PH["CTRL"]
    msg.msa.msa_3 = _PH["TEXT"]
    err = msg.add_segment("ERR")
    if version in ("2.5", "2.5.1"):
        err.err_3 = "207^Application internal error^HL70357"
        err.err_4 = "E"
        err.err_8 = _PH["TEXT"]
    else:
        err.err_1 = "^^^207&" + _PH["TEXT"] + "&HL70357"
    er7: str = msg.to_er7()
    return er7


def warm_up() -> None:
    """Build the common ACK shape at start-up so the first refusal is not slow."""
    _ack_template("2.5")


def hl7_reject_ack(
    inspection: Inspection, text: str, incident_id: str, ack_code: str = "AR"
) -> str:
    """A refusing ACK in the sender's version: MSA-1 ``ack_code`` (AR, or AE/CR for
    enhanced-mode senders), MSA-2 their MSH-10, an ERR segment with the reason."""
    # Answer in the sender's version; build the shape from the closest one hl7apy gets right.
    version = inspection.hl7_version if _VERSION.match(inspection.hl7_version) else "2.5"
    template_version = version if version in _ACK_VERSIONS else "2.5"
    sending_app, sending_fac, receiving_app, receiving_fac = inspection.hl7_endpoints or (
        "",
        "",
        "",
        "",
    )
    trigger = inspection.message_type.split("^")[1] if "^" in inspection.message_type else ""
    values = {
        # The ACK goes back the other way: our receiver fields are their sender fields.
        "SAPP": receiving_app or ACK_SENDER,
        "SFAC": receiving_fac,
        "RAPP": sending_app,
        "RFAC": sending_fac,
        "TIME": time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        "TYPE": "ACK^" + trigger if trigger else "ACK",
        "MSGID": incident_id,
        "CODE": ack_code,
        "CTRL": inspection.control_id,
        "TEXT": text,
        "VER": version,
    }
    # One pass, so a value that happens to contain a placeholder is never substituted again.
    # Echoed header values are capped: they come from the sender's payload.
    escaped = {
        _PH[name]: value if name in ("TYPE", "CODE") else hl7_escape(value[:_MAX_ECHO])
        for name, value in values.items()
    }
    er7 = _PLACEHOLDER.sub(lambda m: escaped[m.group(0)], _ack_template(template_version))
    return er7 + "\r"
