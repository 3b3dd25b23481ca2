"""HL7 v2: ER7 messages and batches (``inspect.py``, ``redact.py``, ``verify.py``, read with
``er7.py``) and the XML encoding (``xml.py``); refused with an ACK (``ack.py``)."""

from __future__ import annotations

import re

from gateway.formats.base import (
    BLOCK_STATUS,
    INCIDENT_HEADER,
    FormatHandler,
    Payload,
    Reader,
    RedactContext,
    RefusalRequest,
    XmlDocumentFormat,
    document_of,
)
from gateway.formats.hl7v2.ack import ACK_CONTENT_TYPE, hl7_reject_ack
from gateway.formats.hl7v2.er7 import HEADERS, looks_like_hl7, patient_key
from gateway.formats.hl7v2.inspect import HL7V2, PLAIN_CHECKS, inspect_hl7
from gateway.formats.hl7v2.redact import Hl7Options, Hl7Redactor
from gateway.formats.hl7v2.verify import verify_hl7
from gateway.formats.hl7v2.xml import HL7_XML_NS, HL7V2_XML, inspect_hl7_xml
from gateway.model import BlockResponse, Document, Format, Inspection, RedactionOutcome

__all__ = ["HL7V2", "HL7V2_XML", "Hl7v2Er7", "Hl7v2Xml"]

_HEADER_INITIALS = (b"M", b"F", b"B")


def _refuse(request: RefusalRequest) -> BlockResponse:
    """An ACK with MSA-1 = AR: an interface engine stops retrying and shows why."""
    inspection = request.inspection
    body = hl7_reject_ack(inspection, request.text, request.incident_id).encode()
    headers = ((INCIDENT_HEADER, request.incident_id),)
    return BlockResponse(BLOCK_STATUS, ACK_CONTENT_TYPE, body, headers)


class Hl7v2Er7(FormatHandler):
    """HL7 v2 in its usual encoding: segments of delimited fields, one message or a batch."""

    formats = frozenset({HL7V2})
    # A header segment after a preamble ("hello MSH|^~\\&|..."): a field separator, the
    # encoding characters, the separator again.
    signature = re.compile(r"(?:MSH|FHS|BHS)([^\w\s])[^\w\s]{3,4}\1")
    label = "hl7"
    prose_when_unreadable = False  # a string starting "MSH|" is a message, or unreadable

    def starts(self, text: str) -> bool:
        return text[:3] in HEADERS

    def sniff(self, payload: Payload) -> bool:
        return payload.first in _HEADER_INITIALS and looks_like_hl7(payload.latin1())

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        text = payload.latin1()
        return inspect_hl7(text, PLAIN_CHECKS, document_of(payload, HL7V2, text))

    def can_redact(self, fmt: Format) -> bool:
        return fmt == HL7V2

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        # UTF-8 when it is (so case-insensitive matching works for accented names), else
        # Latin-1 (byte-preserving); the output is written back in the same encoding.
        data = document.data
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = data.decode("latin-1"), "latin-1"
        options = Hl7Options(
            pseudonymizer=context.pseudonymizer,
            dates=context.dates(patient_key(text) if context.shift else ""),
            pseudonymize_ids=context.pseudonymize_ids,
            redact_z_segments=context.redact_z_segments,
            keep=context.keep,
        )
        result = Hl7Redactor(options).redact(text)
        problem = verify_hl7(result.text, result.searched, context.shift)
        if problem:
            return RedactionOutcome(error=problem)
        codec, bom = document.sent_as
        # Written back as it came: in its UTF-16/32 (with its BOM), else in its own bytes.
        body = bom + result.text.encode(codec) if codec else result.text.encode(encoding)
        return RedactionOutcome(
            body,
            ACK_CONTENT_TYPE,
            dict(result.counts),
            tuple(sorted(result.locations)),
        )

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        return _refuse(request) if request.inspection.format == HL7V2 else None


class Hl7v2Xml(XmlDocumentFormat):
    """HL7 v2 in its XML encoding (``<PID.5>`` elements); refused with an ER7 ACK."""

    formats = frozenset({HL7V2_XML})
    namespace = HL7_XML_NS

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        return inspect_hl7_xml(payload.xml())

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        return _refuse(request) if request.inspection.format == HL7V2_XML else None
