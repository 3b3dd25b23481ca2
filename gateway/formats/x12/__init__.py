"""ASC X12 5010 (claims 837, remittances 835, eligibility 270/271, claim status 276/277,
reviews 278, enrollment 834) as a format plug-in: interchanges found by their ISA header (or a
bare GS/ST group), split by the delimiters each declares (envelope.py), the patient's
elements named by transaction, loop and element (patient.py). Acknowledgements (999, TA1,
997) carry no patient loops and pass. A refusal is a 999 rejecting the groups sent, or a TA1
for an envelope that cannot be read (ack.py). Redaction rewrites the patient's elements to
Safe Harbor in place and keeps the interchange valid (redact.py), verified before it leaves
(verify.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.collector import paused
from gateway.containers.budget import Combined
from gateway.formats.base import (
    BLOCK_STATUS,
    INCIDENT_HEADER,
    FormatHandler,
    Payload,
    Reader,
    RedactContext,
    RefusalRequest,
    with_document,
)
from gateway.formats.x12.ack import ACK_CONTENT_TYPE, envelope_reply, reject_999, reject_ta1
from gateway.formats.x12.envelope import Interchange, X12Error, find, starts_like_x12
from gateway.formats.x12.patient import places
from gateway.formats.x12.redact import rewrite_verified
from gateway.model import (
    BlockResponse,
    Document,
    Finding,
    Format,
    Inspection,
    RedactionOutcome,
)

X12 = Format("x12")
_SNIFF = 512


@dataclass(frozen=True, slots=True)
class Parsed:
    """What inspection read, handed to redaction: the text, its encoding, its interchanges."""

    text: str
    encoding: str
    interchanges: list[Interchange]


class X12Format(FormatHandler):
    formats = frozenset({X12})
    signature = re.compile(r"(?i)ISA[*|^~:!]00[*|^~:!]")
    label = "x12"
    prose_when_unreadable = False

    def starts(self, text: str) -> bool:
        return _looks_like_x12(text)

    def sniff(self, payload: Payload) -> bool:
        return _looks_like_x12(payload.latin1()[: _SNIFF * 8])

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        # Paused here, not for a whole payload: reading X12 is short, while a payload's
        # inspection may run for seconds in a thread (OCR) and must not pause it that long.
        with paused():  # see gateway/collector.py
            return self._inspect(payload, reader)

    def _inspect(self, payload: Payload, reader: Reader) -> Inspection:
        text, encoding = _decode(payload.data)
        try:
            interchanges = find(text)
        except X12Error as exc:
            return Inspection(X12, error=f"malformed X12: {exc}", reply={"unreadable": "1"})
        if not interchanges:
            return Inspection(X12, error="malformed X12: no interchange", reply={"unreadable": "1"})
        combined = Combined(X12)
        held = places(interchanges)
        for location, texts in held.notes.items():  # one read per place
            reader.free_text("\n".join(texts), location, payload.depth, combined)
        # Whatever lies between interchanges is no X12 and is read as text.
        outside = "\n".join(_outside(text, interchanges)).strip()
        if outside:
            reader.free_text(outside, "outside the interchanges", payload.depth, combined)
        combined.add_fields([Finding(category, location) for category, location in held.fields])
        result = combined.result()
        inspection = Inspection(
            X12,
            ",".join(held.transactions)[:40],
            result.findings,
            result.contains_phi,
            result.error,
            result.limit,
            result.internal,
            reply=envelope_reply(interchanges),
        )
        return with_document(inspection, payload, Parsed(text, encoding, interchanges))

    def can_redact(self, fmt: Format) -> bool:
        return fmt == X12

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        parsed = document.parsed
        if not isinstance(parsed, Parsed):
            return RedactionOutcome(error="redaction is not available for this payload")
        result = rewrite_verified(parsed.text, parsed.interchanges, context)
        if isinstance(result, str):
            return RedactionOutcome(error=result)
        codec, bom = document.sent_as
        # Written back as it came: in its UTF-16/32 (with its BOM), else in its own bytes.
        body = bom + result.text.encode(codec) if codec else result.text.encode(parsed.encoding)
        return RedactionOutcome(
            body, ACK_CONTENT_TYPE, dict(result.counts), tuple(sorted(result.locations))
        )

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        """A 999 rejecting the groups sent, or a TA1 when the envelope was unreadable."""
        inspection = request.inspection
        if inspection.format != X12:
            return None
        reply = inspection.reply
        if reply.get("unreadable") or not reply.get("groups"):
            body = reject_ta1(reply, request.incident_id)
        else:
            body = reject_999(reply, request.incident_id)
        headers = ((INCIDENT_HEADER, request.incident_id),)
        return BlockResponse(BLOCK_STATUS, ACK_CONTENT_TYPE, body.encode(), headers)


def _decode(data: bytes) -> tuple[str, str]:
    """UTF-8 when it is, else Latin-1 (every byte kept): redaction writes it back the same."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _outside(text: str, interchanges: list[Interchange]) -> list[str]:
    pieces, position = [], 0
    for interchange in interchanges:
        pieces.append(text[position : interchange.start])
        position = interchange.end
    pieces.append(text[position:])
    return [p for p in pieces if p.strip()]


def _looks_like_x12(text: str) -> bool:
    """An ISA header, or a bare GS/ST group that has its closing SE with the same separator."""
    head = text.lstrip()
    if not starts_like_x12(head):
        return False
    if head[:3].upper() == "ISA":
        return True
    element = head[2]
    return re.search(rf"(?i)SE{re.escape(element)}\d", head) is not None
