"""DICOM as a format plug-in: Part 10 files (any preamble), bare datasets (implicit and
explicit VR, little and big endian), deflated datasets and DICOMDIR, found by their bytes
wherever the registry meets them (an upload, a STOW-RS multipart part, a zip member, base64).
The header is walked by our own reader (walk.py), never the pixels; what identifies the
patient is PS3.15 Annex E read through Safe Harbor (profile.py, inspect.py). Redaction
applies the Basic Profile with pydicom and re-reads the result (redact.py). A refusal over
HTTP is a STOW-RS style failure: the instance in a FailedSOPSequence. STOW-RS bodies are
read as one upload (stow.py); DIMSE associations are followed by ``gateway/dimse``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from gateway.collector import paused
from gateway.containers.budget import Combined
from gateway.errors import DicomError
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
from gateway.formats.dicom.inspect import judge, place
from gateway.formats.dicom.walk import (
    ENCAPSULATED_DOCUMENT,
    Header,
    WalkLimits,
    bare_syntax,
    part10_offset,
    read_header,
)
from gateway.model import BlockResponse, Document, Format, Inspection, RedactionOutcome

DICOM = Format("dicom")
DICOM_JSON = "application/dicom+json"
# PS3.7 C.5: "Processing failure" (0110H), the STOW-RS FailureReason for a refused instance.
PROCESSING_FAILURE = 0x0110


def walk_limits(reader: Reader) -> WalkLimits:
    budget = reader.budget
    return WalkLimits(
        budget.max_dicom_elements,
        budget.max_dicom_depth,
        budget.decode.max_output_bytes,
        lambda: budget.enter(0),
    )


def inspect_header(
    data: bytes, reader: Reader, depth: int, where: str = ""
) -> tuple[Inspection, Header | None]:
    """One dataset judged: its inspection and the header read (None when unreadable)."""
    try:
        header = read_header(data, walk_limits(reader))
    except DicomError as exc:
        return Inspection(DICOM, error=f"malformed DICOM: {exc.reason}", limit=exc.limit), None
    judged = judge(header)
    combined = Combined(DICOM)
    for element in header.elements:
        if element.tag == ENCAPSULATED_DOCUMENT and element.value:
            # An Encapsulated PDF or CDA: read by its own format, like any attachment.
            inner = reader.scan(element.value.rstrip(b"\x00 "), depth + 1)
            combined.add(f"{where}{place(element)}", inner)
    for location, text in judged.texts:
        reader.free_text(text, f"{where}{location}", depth, combined)
    if header.preamble.strip(b"\x00"):
        # 128 bytes of anything (a TIFF header, or text): their printable runs are read.
        runs = bytes(b if 32 <= b < 127 else 10 for b in header.preamble).decode("ascii")
        reader.free_text(runs, f"{where}preamble", depth, combined)
    findings = [*judged.findings]
    if where:
        findings = [type(f)(f.category, f"{where}{f.location}") for f in findings]
    combined.findings += findings
    result = combined.result()
    reply = {"sop_class": judged.sop_class, "sop_instance": judged.sop_instance}
    inspection = Inspection(
        DICOM,
        judged.modality or "dataset",
        result.findings,
        bool(findings) or result.contains_phi,
        result.error,
        result.limit,
        result.internal,
        "dicom burned-in annotation" if judged.burned_in else "",
        reply=reply,
    )
    return inspection, header


class DicomFormat(FormatHandler):
    formats = frozenset({DICOM})
    binary = True  # a zero preamble would read as UTF-16/32 text
    prose_when_unreadable = False

    def sniff(self, payload: Payload) -> bool:
        data = payload.data
        return part10_offset(data) >= 0 or bool(bare_syntax(data))

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        with paused():  # see gateway/collector.py
            inspection, header = inspect_header(payload.data, reader, payload.depth)
        return with_document(inspection, payload, header) if header is not None else inspection

    def can_redact(self, fmt: Format) -> bool:
        return fmt == DICOM

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        from gateway.formats.dicom.redact import redact_dataset

        header = document.parsed
        if not isinstance(header, Header):
            return RedactionOutcome(error="redaction is not available for this payload")
        return redact_dataset(document.data, header, context)

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        """The instance refused as STOW-RS reports one: FailedSOPSequence (0008,1198)."""
        inspection = request.inspection
        if inspection.format != DICOM:
            return None
        return BlockResponse(
            BLOCK_STATUS,
            DICOM_JSON,
            stow_failure([inspection.reply], request.text),
            ((INCIDENT_HEADER, request.incident_id),),
        )


def stow_failure(instances: Sequence[Mapping[str, str]], text: str) -> bytes:
    """A DICOM JSON response with the refused instances and why (PS3.18 10.5.3)."""
    items = []
    for reply in instances:
        item: dict[str, object] = {"00081197": {"vr": "US", "Value": [PROCESSING_FAILURE]}}
        if reply.get("sop_class"):
            item["00081150"] = {"vr": "UI", "Value": [reply["sop_class"]]}
        if reply.get("sop_instance"):
            item["00081155"] = {"vr": "UI", "Value": [reply["sop_instance"]]}
        items.append(item)
    body = {
        "00081198": {"vr": "SQ", "Value": items},
        "00000902": {"vr": "LO", "Value": [text[:64]]},
    }
    return orjson.dumps(body)
