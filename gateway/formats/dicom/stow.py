"""DICOMweb STOW-RS bodies (PS3.18 10.5: ``multipart/related; type="application/dicom"``) as a
format of their own, so a study upload is judged, refused and redacted as DICOM: each
``application/dicom`` part is a Part 10 instance read like any DICOM file, other parts go back
to the registry. A refusal lists every instance in a FailedSOPSequence, as a STOW-RS origin
server answers; redaction rewrites each instance (Basic Profile) and keeps the body otherwise
byte for byte: the boundary, every part's headers, the preamble and epilogue.

The parts are split here, by the boundary, on the bytes as sent (no e-mail parser between the
pixels and the reader).
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
)
from gateway.formats.dicom import DICOM_JSON, inspect_header, stow_failure
from gateway.formats.dicom.walk import Header
from gateway.model import BlockResponse, Document, Format, Inspection, RedactionOutcome

DICOMWEB = Format("dicomweb")
_START = re.compile(rb"^--([!-~]{1,200})\r?\n")
_DICOM_PART = re.compile(rb"(?im)^content-type:[ \t]*application/dicom[ \t]*(?:;|\r?$)")
_ENCODED = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*(?!binary|8bit|7bit)")
_LENGTH = re.compile(rb"(?im)^(content-length:[ \t]*)\d+")
_SNIFF = 4096


@dataclass(frozen=True, slots=True)
class Part:
    headers: bytes
    start: int  # where the body starts in the payload
    end: int
    dicom: bool


@dataclass(frozen=True, slots=True)
class Stow:
    """The split body and, per DICOM part, the header its inspection read."""

    parts: list[Part]
    headers: list[Header | None]


def split(data: bytes, most: int) -> list[Part] | None:
    """The parts of a multipart body, by offsets into ``data`` (None: not one)."""
    match = _START.match(data)
    if match is None:
        return None
    boundary = match.group(1)
    delimiter = b"\r\n--" + boundary
    parts: list[Part] = []
    # The first part starts after the first boundary line; each ends at the next delimiter.
    cursor = match.end(0)
    while True:
        head_end = data.find(b"\r\n\r\n", cursor)
        nxt = _delimiter(data, delimiter, cursor)
        if head_end < 0 or nxt < 0 or head_end > nxt:
            return None
        headers = data[cursor:head_end]
        parts.append(Part(headers, head_end + 4, nxt, _DICOM_PART.search(headers) is not None))
        if len(parts) > most:
            return None
        after = nxt + len(delimiter)
        if data[after : after + 2] == b"--":
            # An epilogue is ignored by receivers, but one that is not blank may be read
            # by one that splits on another boundary: not judged, so refused.
            return parts if not data[after + 2 :].strip() else None
        line_end = data.find(b"\n", after)
        if line_end < 0:
            return None
        cursor = line_end + 1


_AFTER_DELIMITER = re.compile(rb"--|[ \t]*\r?\n")


def _delimiter(data: bytes, delimiter: bytes, start: int) -> int:
    """The next boundary delimiter (RFC 2046: followed by "--" or by blanks and a line end),
    not a mere occurrence of its bytes inside a part."""
    at = data.find(delimiter, start)
    while at >= 0 and not _AFTER_DELIMITER.match(data, at + len(delimiter)):
        at = data.find(delimiter, at + 1)
    return at


class DicomStow(FormatHandler):
    formats = frozenset({DICOMWEB})
    prose_when_unreadable = False

    def sniff(self, payload: Payload) -> bool:
        head = payload.data[:_SNIFF]
        if _START.match(head) is None:
            return False
        first = head.find(b"\r\n\r\n")
        return first > 0 and _DICOM_PART.search(head[:first]) is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        data = payload.data
        parts = split(data, reader.budget.max_members)
        if parts is None:
            return Inspection(
                DICOMWEB, error="malformed STOW-RS body (or more parts than max_archive_members)"
            )
        combined = Combined(DICOMWEB)
        headers: list[Header | None] = []
        instances: list[str] = []
        with paused():  # see gateway/collector.py
            for number, part in enumerate(parts):
                body = data[part.start : part.end]
                if part.dicom and _ENCODED.search(part.headers) is None:
                    inspection, header = inspect_header(body, reader, payload.depth + 1)
                    reply = inspection.reply
                    instances.append(
                        f"{reply.get('sop_class', '')}|{reply.get('sop_instance', '')}"
                    )
                else:
                    inspection, header = reader.scan(body, payload.depth + 1), None
                headers.append(header)
                combined.add(f"part[{number}]", inspection)
        result = combined.result()
        inspection = Inspection(
            DICOMWEB,
            "STOW-RS",
            result.findings,
            result.contains_phi,
            result.error,
            result.limit,
            result.internal,
            result.opaque,
            reply={"instances": ";".join(instances)[:8192]},
        )
        if not payload.whole:
            return inspection
        document = Document(DICOMWEB, data, Stow(parts, headers), payload.sent_as)
        return inspection.with_document(document)

    def can_redact(self, fmt: Format) -> bool:
        return fmt == DICOMWEB

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        from gateway.formats.dicom.redact import redact_dataset

        stow = document.parsed
        if not isinstance(stow, Stow) or any(h is None for h in stow.headers):
            return RedactionOutcome(error="redaction is not available for this STOW-RS body")
        data = document.data
        pieces: list[bytes] = []
        counts: dict[str, int] = {}
        locations: list[str] = []
        position = 0
        for number, (part, header) in enumerate(zip(stow.parts, stow.headers, strict=True)):
            assert header is not None
            outcome = redact_dataset(data[part.start : part.end], header, context)
            if outcome.error:
                return RedactionOutcome(error=outcome.error)
            head_start = part.start - 4 - len(part.headers)
            length = str(len(outcome.body)).encode()
            new_headers = _LENGTH.sub(rb"\g<1>" + length, part.headers)
            pieces += [data[position:head_start], new_headers, b"\r\n\r\n", outcome.body]
            position = part.end
            for category, count in outcome.counts.items():
                counts[category] = counts.get(category, 0) + count
            locations += [f"part[{number}]/{loc}" for loc in outcome.locations]
        pieces.append(data[position:])
        return RedactionOutcome(b"".join(pieces), "", counts, tuple(sorted(locations)))

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        """Every instance of the upload in one FailedSOPSequence."""
        if request.inspection.format != DICOMWEB:
            return None
        instances = [
            dict(zip(("sop_class", "sop_instance"), item.split("|", 1), strict=False))
            for item in request.inspection.reply.get("instances", "").split(";")
            if item
        ]
        body = stow_failure(instances, request.text)
        headers = ((INCIDENT_HEADER, request.incident_id),)
        return BlockResponse(BLOCK_STATUS, DICOM_JSON, body, headers)
