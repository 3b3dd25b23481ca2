"""Act stage: what a decision means for the message, and refusals in the protocol's own
language.

``act`` maps a decision to what every front end does with it (refuse, forward the redacted
payload, forward as sent): HTTP, WebSocket and MLLP all read it from here. ``block_response``
asks the format that read the payload for its refusal (an HL7 ACK with MSA-1 = AR, a FHIR
OperationOutcome), then any format the client's Content-Type or Accept names, and answers
everyone else in JSON. Every refusal carries the incident id of its audit record.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence

from gateway.formats import FORMATS, handler_for
from gateway.formats.base import BLOCK_STATUS, INCIDENT_HEADER, FormatHandler, RefusalRequest
from gateway.formats.hl7v2.ack import warm_up as _warm_up_ack
from gateway.model import BlockResponse, Decision, Inspection, Verdict

__all__ = ["BLOCK_STATUS", "INCIDENT_HEADER", "Act", "act", "block_response", "refusal_text"]


class Act(enum.Enum):
    """What a front end does with a message once it is decided."""

    FORWARD = "forward"  # as sent
    FORWARD_REDACTED = "forward-redacted"  # the redacted payload instead (decision.redaction)
    REFUSE = "refuse"  # answer the sender with the refusal, forward nothing


def act(decision: Decision) -> Act:
    """Monitor mode never refuses or rewrites: it forwards as sent and records."""
    verdict = decision.verdict
    if verdict.blocks:
        return Act.REFUSE
    if decision.redaction is not None and verdict.enforced:
        return Act.FORWARD_REDACTED
    return Act.FORWARD


def refusal_text(verdict: Verdict, incident_id: str) -> str:
    return (
        f"Blocked by PHI egress gateway ({verdict.rule}): {verdict.reason}. Incident {incident_id}"
    )


def block_response(
    verdict: Verdict,
    inspection: Inspection,
    incident_id: str,
    *,
    content_type: str = "",
    accept: str = "",
    formats: Sequence[FormatHandler] = FORMATS,
) -> BlockResponse:
    request = RefusalRequest(
        verdict, inspection, incident_id, refusal_text(verdict, incident_id), content_type, accept
    )
    owner = handler_for(inspection.format)
    answer = owner.refusal(request) if owner is not None else None
    for handler in formats:
        if answer is not None:
            return answer
        if handler is not owner:
            answer = handler.refusal(request)
    if answer is not None:
        return answer
    body = json.dumps(
        {
            "error": "blocked",
            "rule": verdict.rule,
            "reason": verdict.reason,
            "incident_id": incident_id,
        }
    ).encode()
    return BlockResponse(BLOCK_STATUS, "application/json", body, ((INCIDENT_HEADER, incident_id),))


def warm_up() -> None:
    """Build the refusals that cost most at start-up, so the first refusal is not slow."""
    _warm_up_ack()
