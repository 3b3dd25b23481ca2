"""HL7 v2 ER7 scanning: fast splitting, no full parse on the hot path.

Each message declares its own delimiters in MSH-1/MSH-2 (FHS/BHS for batches), so we read them
from every header segment. ``IDENTIFIER_FIELDS`` says which fields identify a person; a field
counts when the check for its category says so: for inspection, when it holds anything besides
delimiters and the HL7 null ``""`` (verification passes stricter checks: ``verify.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from gateway.errors import Hl7Error
from gateway.formats.hl7v2.er7 import (
    HEADERS,
    Delimiters,
    has_content,
    is_segment_id,
    segment_ends,
    strip_blocks,
)
from gateway.formats.hl7v2.identifiers import IDENTIFIER_FIELDS
from gateway.model import IDENTIFYING, Category, Document, Finding, Format, Inspection

HL7V2 = Format("hl7v2")
# A message type is recorded in audit rows: keep only what a type code can contain.
UNSAFE_TYPE_CHARS = re.compile(r"[^A-Za-z0-9_^]")
# Findings kept per payload: enough for the audit trail, bounded against huge batches.
MAX_FINDINGS = 1000

# Does a field of this category identify? (value, the delimiters' empty characters)
FieldCheck = Callable[[str, str], bool]
PLAIN_CHECKS: Mapping[Category, FieldCheck] = {c: has_content for c in Category}

_NOT_A_SEGMENT = "a segment does not start with a segment id and field separator"


def inspect_hl7(
    text: str,
    checks: Mapping[Category, FieldCheck] = PLAIN_CHECKS,
    document: Document | None = None,
) -> Inspection:
    """Scan ER7 text (one message or a batch) for identifying fields; ``checks`` decide, per
    category, whether a field's value identifies; ``document``: the parse the inspection
    carries on."""
    findings: list[Finding] = []
    message_type = ""
    reply: dict[str, str] = {}
    delimiters: Delimiters | None = None
    field_separator = ""
    messages = 0
    for raw_segment in segment_ends(text).split(text):
        segment = strip_blocks(raw_segment)
        seg_id = segment[:3]
        # Three letters or digits first (every real segment): no need to strip to see that.
        if not seg_id.isalnum() and len(segment.strip()) < 3:
            continue
        if not is_segment_id(seg_id):
            raise Hl7Error(_NOT_A_SEGMENT)
        if seg_id in HEADERS:
            delimiters = Delimiters(segment)
            field_separator = delimiters.field
            if seg_id == "MSH":
                messages += 1
                if messages == 1:
                    fields = segment.split(field_separator)
                    component = fields[1][:1] if len(fields) > 1 else "^"
                    message_type = _message_type(fields, component)
                    reply = _reply(fields, component)
            continue
        if delimiters is None:
            raise Hl7Error("segment before any MSH/FHS/BHS header")
        if len(segment) > 3 and segment[3] != field_separator:
            raise Hl7Error(_NOT_A_SEGMENT)
        table = IDENTIFIER_FIELDS.get(seg_id)
        if table is None:
            continue
        fields = segment.split(field_separator)
        size = len(fields)
        for number, category in table.items():
            # An empty field never counts (every check says so): no call for it.
            if (
                number < size
                and fields[number]
                and checks[category](fields[number], delimiters.empty_chars)
            ):
                findings.append(Finding(category, f"{seg_id}-{number}"))
        if len(findings) >= MAX_FINDINGS:
            break  # the verdict is certain; a huge batch must not cost memory per field
    if delimiters is None:
        raise Hl7Error("no MSH/FHS/BHS header")
    return Inspection(
        format=HL7V2,
        message_type=message_type,
        findings=tuple(findings),
        contains_phi=any(f.category in IDENTIFYING for f in findings),
        reply=reply,
        document=document,
    )


def _message_type(msh_fields: list[str], component: str) -> str:
    if len(msh_fields) <= 8:
        return ""
    parts = msh_fields[8].split(component)
    # Keep only code^trigger: the third component (structure) adds nothing for operators.
    return UNSAFE_TYPE_CHARS.sub("", "^".join(p for p in parts[:2] if p))[:20]


def _reply(msh_fields: list[str], component: str) -> dict[str, str]:
    """What an ACK echoes: MSH-3..6 (the sender's and receiver's application and facility),
    MSH-10 (control id) and the version of MSH-12."""
    padded = [*msh_fields[2:6], "", "", "", ""]
    return {
        "sending_application": padded[0],
        "sending_facility": padded[1],
        "receiving_application": padded[2],
        "receiving_facility": padded[3],
        "control_id": msh_fields[9] if len(msh_fields) > 9 else "",
        "version": msh_fields[11].split(component, 1)[0] if len(msh_fields) > 11 else "",
    }
