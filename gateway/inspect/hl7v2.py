"""HL7 v2 ER7 ("pipe and hat") scanning: fast splitting, no full parse on the hot path.

Each message declares its own delimiters in MSH-1/MSH-2 (FHS/BHS for batches), so we read them
from every header segment. The table below says which fields identify a person; a field counts
when it holds anything besides delimiters and the HL7 null ``""``.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

from gateway.model import IDENTIFYING, Category, Finding, Format, Inspection
from gateway.redact.safe_harbor import SAFE_ADDRESS_TOKEN, SAFE_TOKEN

_CR_ENDS = re.compile(r"\r\n?")
_LF_ENDS = re.compile(r"\n")
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


def segment_ends(text: str) -> re.Pattern[str]:
    """How this message ends its segments, as a receiver reads it: CR (optionally followed by
    LF) when there is any CR, else LF. A bare LF inside a CR-ended message is data, not a
    segment end: splitting there would hide the rest of the segment from the scanner."""
    return _CR_ENDS if "\r" in text else _LF_ENDS


_HEADERS = ("MSH", "FHS", "BHS")
# A message type is recorded in audit rows: keep only what a type code can contain.
_UNSAFE = re.compile(r"[^A-Za-z0-9_^]")

C = Category
# segment → {field number: category}. Field numbers are HL7's (PID-5 is the patient name).
IDENTIFIER_FIELDS: dict[str, dict[int, Category]] = {
    "PID": {
        2: C.MRN,
        3: C.MRN,
        4: C.MRN,
        5: C.NAME,
        6: C.NAME,
        7: C.DATE,
        9: C.NAME,
        11: C.GEOGRAPHY,
        12: C.GEOGRAPHY,
        13: C.PHONE,
        14: C.PHONE,
        18: C.ACCOUNT_NUMBER,
        19: C.SSN,
        20: C.LICENSE_NUMBER,
        21: C.OTHER_ID,
        23: C.GEOGRAPHY,
        29: C.DATE,
    },
    "PD1": {10: C.OTHER_ID},  # duplicate patient (CX)
    "NK1": {
        2: C.NAME,
        4: C.GEOGRAPHY,
        5: C.PHONE,
        6: C.PHONE,
        12: C.OTHER_ID,
        16: C.DATE,
        30: C.NAME,
        31: C.PHONE,
        32: C.GEOGRAPHY,
        33: C.OTHER_ID,
        37: C.SSN,
    },
    "GT1": {
        2: C.ACCOUNT_NUMBER,
        3: C.NAME,
        4: C.NAME,
        5: C.GEOGRAPHY,
        6: C.PHONE,
        7: C.PHONE,
        8: C.DATE,
        12: C.SSN,
        16: C.NAME,
        17: C.GEOGRAPHY,
        18: C.PHONE,
        19: C.OTHER_ID,
    },
    "IN1": {16: C.NAME, 18: C.DATE, 19: C.GEOGRAPHY, 36: C.HEALTH_PLAN_ID, 49: C.HEALTH_PLAN_ID},
    "IN2": {
        1: C.OTHER_ID,
        2: C.SSN,
        6: C.HEALTH_PLAN_ID,
        7: C.NAME,
        8: C.HEALTH_PLAN_ID,
        61: C.HEALTH_PLAN_ID,
        63: C.PHONE,
    },
    "MRG": {
        1: C.MRN,
        2: C.MRN,
        3: C.ACCOUNT_NUMBER,
        4: C.MRN,
        5: C.ACCOUNT_NUMBER,
        6: C.ACCOUNT_NUMBER,
        7: C.NAME,
    },
    "PV1": {19: C.ACCOUNT_NUMBER, 44: C.DATE, 45: C.DATE, 50: C.ACCOUNT_NUMBER},
    # Queries that name their subject: the query itself is the identifier.
    "QRD": {8: C.OTHER_ID},
    "QPD": {3: C.OTHER_ID, 4: C.OTHER_ID, 5: C.OTHER_ID, 6: C.OTHER_ID, 7: C.OTHER_ID},
}


# Findings kept per payload: enough for the audit trail, bounded against huge batches.
MAX_FINDINGS = 1000


def looks_like_hl7(text: str) -> bool:
    return len(text) > 8 and text[:3] in _HEADERS and not text[3].isalnum()


class Hl7Error(ValueError):
    """Not a readable HL7 v2 message (the reason never quotes the content)."""


class _Delimiters:
    __slots__ = ("empty_chars", "field")

    def __init__(self, header: str) -> None:
        if len(header) < 5:
            raise Hl7Error(f"{header[:3]} declares no valid delimiters")
        self.field = header[3]
        encoding = header[4:8].split(self.field, 1)[0]
        if len(encoding) < 2 or any(c.isalnum() for c in encoding + self.field):
            raise Hl7Error(f"{header[:3]} declares no valid delimiters")
        # Delimiters, the HL7 null "" and blanks never make a field non-empty.
        self.empty_chars = encoding + '" '


def _has_content(value: str, empty_chars: str) -> bool:
    return bool(value) and bool(value.strip(empty_chars))


_RECORD_ID_CATEGORIES = frozenset({C.MRN, C.ACCOUNT_NUMBER, C.HEALTH_PLAN_ID, C.OTHER_ID})


@functools.lru_cache(maxsize=128)
def _deidentified_field(empty_chars: str, address: bool) -> re.Pattern[str]:
    """A field that holds only empty characters and safe tokens, where a token is a maximal
    run of other characters: one match per field instead of a split and a match per token.
    A token may end in one newline, as the anchored token pattern's ``$`` allows."""
    safe = (SAFE_ADDRESS_TOKEN if address else SAFE_TOKEN).pattern.removeprefix("^")
    token = safe.removesuffix("$")
    empty = f"[{re.escape(empty_chars)}]"
    # Possessive: runs of empty characters and tokens never share a first character (no
    # delimiter is alphanumeric), so nothing is lost by never backtracking, and a long run
    # of delimiters before an unsafe token cannot be split 2**n ways on the way to "no".
    return re.compile(rf"(?:{empty}++|(?:{token})\n?(?={empty}|\Z))*+\Z")


def _identifying_content(category: Category) -> Callable[[str, str], bool]:
    """De-identified mode: only placeholders, pseudonyms and years may remain (in addresses
    also ZIP3 areas and state/country codes)."""
    address = category is C.GEOGRAPHY
    # Identifier fields (CX, EI) keep their assigning authority and type: only the first
    # component of each repetition is the identifier itself.
    identifier = category in _RECORD_ID_CATEGORIES

    def check(value: str, empty_chars: str) -> bool:
        if identifier:
            component, repetition = empty_chars[0], empty_chars[1]
            if repetition in value:
                value = repetition.join([r.split(component, 1)[0] for r in value.split(repetition)])
            else:
                value = value.split(component, 1)[0]
        return _deidentified_field(empty_chars, address).match(value) is None

    return check


_PLAIN_CHECKS = {c: _has_content for c in Category}
_DEIDENTIFIED_CHECKS = {c: _identifying_content(c) for c in Category}


_SEGMENT_IDS_SEEN: set[str] = set()


def is_segment_id(seg_id: str) -> bool:
    """``_SEGMENT_ID.match``, remembered for the ids that pass (a message repeats a few)."""
    if seg_id in _SEGMENT_IDS_SEEN:
        return True
    if not _SEGMENT_ID.match(seg_id):
        return False
    if len(_SEGMENT_IDS_SEEN) < 4096:  # bounded: ids come from the traffic
        _SEGMENT_IDS_SEEN.add(seg_id)
    return True


_NOT_A_SEGMENT = "a segment does not start with a segment id and field separator"


def inspect_hl7(text: str, deidentified: bool = False) -> Inspection:
    """Scan ER7 text (one message or a batch) for identifying fields.

    ``deidentified``: verify a redacted message, where placeholders, pseudonyms, years and
    ZIP3 areas are allowed to remain in identifying fields.
    """
    checks = _DEIDENTIFIED_CHECKS if deidentified else _PLAIN_CHECKS
    findings: list[Finding] = []
    message_type = control_id = version = ""
    endpoints: tuple[str, str, str, str] | None = None
    delimiters: _Delimiters | None = None
    field_separator = ""
    messages = 0
    for raw_segment in segment_ends(text).split(text):
        segment = raw_segment
        if segment[:1] == "\x0b" or segment[-1:] == "\x1c":  # MLLP block characters
            segment = segment.lstrip("\x0b").rstrip("\x1c")
        seg_id = segment[:3]
        # Three letters or digits first (every real segment): no need to strip to see that.
        if not seg_id.isalnum() and len(segment.strip()) < 3:
            continue
        if not is_segment_id(seg_id):
            raise Hl7Error(_NOT_A_SEGMENT)
        if seg_id in _HEADERS:
            delimiters = _Delimiters(segment)
            field_separator = delimiters.field
            if seg_id == "MSH":
                messages += 1
                fields = segment.split(delimiters.field)
                if messages == 1:
                    component = fields[1][:1] if len(fields) > 1 else "^"
                    message_type = _message_type(fields, component)
                    control_id = fields[9] if len(fields) > 9 else ""
                    version = fields[11].split(component, 1)[0] if len(fields) > 11 else ""
                    padded = [*fields[2:6], "", "", "", ""]
                    endpoints = (padded[0], padded[1], padded[2], padded[3])
            continue
        if delimiters is None:
            raise Hl7Error("segment before any MSH/FHS/BHS header")
        if len(segment) > 3 and segment[3] != field_separator:
            raise Hl7Error(_NOT_A_SEGMENT)
        table = IDENTIFIER_FIELDS.get(seg_id)
        if table is None:
            continue
        fields = segment.split(delimiters.field)
        size = len(fields)
        for number, category in table.items():
            # An empty field never counts (both checks say so): no call for it.
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
    contains_phi = any(f.category in IDENTIFYING for f in findings)
    return Inspection(
        format=Format.HL7V2,
        message_type=message_type,
        control_id=control_id,
        hl7_version=version,
        hl7_endpoints=endpoints,
        findings=tuple(findings),
        contains_phi=contains_phi,
    )


def _message_type(msh_fields: list[str], component: str) -> str:
    if len(msh_fields) <= 8:
        return ""
    parts = msh_fields[8].split(component)
    # Keep only code^trigger: the third component (structure) adds nothing for operators.
    return _UNSAFE.sub("", "^".join(p for p in parts[:2] if p))[:20]


HL7_XML_NS = "urn:hl7-org:v2xml"
_XML_FIELD = re.compile(r"^([A-Z][A-Z0-9]{2})\.(\d{1,3})$")
_MSH_TEXT_FIELDS = (9, 10, 12)


def inspect_hl7_xml(root: ET.Element) -> Inspection:
    """HL7 v2 XML encoding: fields are elements named SEG.N (``<PID.5>``)."""
    prefix = f"{{{HL7_XML_NS}}}"
    findings: list[Finding] = []
    texts: dict[str, str] = {}
    for element in root.iter():
        match = _XML_FIELD.match(element.tag.removeprefix(prefix))
        if match is None:
            continue
        seg_id, number = match.group(1), int(match.group(2))
        if seg_id == "MSH" and number in _MSH_TEXT_FIELDS and str(number) not in texts:
            parts = [t.strip() for t in element.itertext()]
            texts[str(number)] = "^".join(p for p in parts if p)[:200]
        category = IDENTIFIER_FIELDS.get(seg_id, {}).get(number)
        # any() stops at the first text: linear even when fields nest inside fields.
        if category is not None and any(t.strip(' "\t\r\n') for t in element.itertext()):
            findings.append(Finding(category, f"{seg_id}-{number}"))
            if len(findings) >= MAX_FINDINGS:
                break
    return Inspection(
        format=Format.HL7V2_XML,
        message_type=_UNSAFE.sub("", "^".join(texts.get("9", "").split("^")[:2]))[:20],
        control_id=texts.get("10", ""),
        hl7_version=texts.get("12", "").split("^")[0],
        findings=tuple(findings),
        contains_phi=any(f.category in IDENTIFYING for f in findings),
    )
