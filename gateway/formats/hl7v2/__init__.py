"""HL7 v2: ER7 messages and batches (``inspect.py``, ``redact.py``, ``verify.py``, read with
``er7.py``) and the XML encoding (``xml.py``); refused with an ACK (``ack.py``)."""

from __future__ import annotations

import re
from dataclasses import replace

from gateway.containers.budget import Combined
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
from gateway.formats.hl7v2.er7 import HEADERS, looks_like_hl7, patient_key, segment_ends
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


# Narrative fields: OBX-5 of the text types, NTE-3 comments.
_TEXT_TYPES = frozenset({"TX", "FT", "ST"})
_NARRATIVE_MIN = 12  # shorter values cannot hold a name next to a record number


def _narrative(text: str) -> list[tuple[str, str]]:
    """(location, text) of each narrative field of a message or batch (cheap: a scan for
    OBX and NTE segments only)."""
    separator = text[3:4] or "|"
    # Most messages have no text-typed OBX and no NTE: found without splitting them.
    if f"NTE{separator}" not in text and not any(
        f"{separator}{kind}" in text for kind in _TEXT_TYPES
    ):
        return []
    found: list[tuple[str, str]] = []
    repetition = text[5:6] or "~"
    for segment in segment_ends(text).split(text):
        tag = segment[:3]
        if tag not in ("OBX", "NTE") or segment[3:4] != separator:
            continue
        fields = segment.split(separator)
        if tag == "OBX" and len(fields) > 5 and fields[2].split("^")[0] in _TEXT_TYPES:
            value, where = fields[5], "OBX-5"
        elif tag == "NTE" and len(fields) > 3:
            value, where = fields[3], "NTE-3"
        else:
            continue
        if len(value) >= _NARRATIVE_MIN:
            found.append((where, value.replace(repetition, "\n")))
        if len(found) >= 1000:
            break
    return found


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
        inspection = inspect_hl7(text, PLAIN_CHECKS, document_of(payload, HL7V2, text))
        narrative = _narrative(text)
        if not narrative or inspection.error:
            return inspection
        # Report text, notes and comments are read in every message, PID or not: a report
        # that says "PATIENT: ..., MRN: ..." names its patient.
        combined = Combined(HL7V2)
        for location, value in narrative:
            reader.free_text(value, location, payload.depth, combined)
        if not combined.findings:
            return inspection
        return replace(
            inspection,
            findings=inspection.findings + tuple(combined.findings),
            contains_phi=inspection.contains_phi or combined.phi,
        )

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
