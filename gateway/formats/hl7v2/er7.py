"""HL7 v2 ER7 ("pipe and hat") as every part of the gateway reads it: segment ends, segment ids,
each message's own delimiters, escapes. One reading for inspection, redaction and
verification, so that what one of them calls a field is what the others call it too.
"""

from __future__ import annotations

import re

from gateway.errors import Hl7Error

HEADERS = ("MSH", "FHS", "BHS")
_CR_ENDS = re.compile(r"\r\n?")
_LF_ENDS = re.compile(r"\n")
_CR_ENDS_KEPT = re.compile(r"(\r\n?)")
_LF_ENDS_KEPT = re.compile(r"(\n)")
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# The MLLP block characters a segment may still carry when a frame is read as a message.
START_BLOCK, END_BLOCK = "\x0b", "\x1c"


def segment_ends(text: str) -> re.Pattern[str]:
    """How this message ends its segments, as a receiver reads it: CR (optionally followed by
    LF) when there is any CR, else LF. A bare LF inside a CR-ended message is data, not a
    segment end: splitting there would hide the rest of the segment from the scanner."""
    return _CR_ENDS if "\r" in text else _LF_ENDS


def split_keeping_ends(text: str) -> list[str]:
    """The segments and, between them, the terminators as sent: [seg, end, seg, end, seg]."""
    return (_CR_ENDS_KEPT if "\r" in text else _LF_ENDS_KEPT).split(text)


def looks_like_hl7(text: str) -> bool:
    """A message or batch header first: MSH, FHS or BHS and a field separator."""
    return len(text) > 8 and text[:3] in HEADERS and not text[3].isalnum()


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


class Delimiters:
    """The delimiters a header segment (MSH, FHS, BHS) declares in its first two fields:
    ``MSH|^~\\&|`` declares field ``|``, component ``^``, repetition ``~``, escape ``\\`` and
    subcomponent ``&`` (the last two may be left out: the standard ones apply)."""

    __slots__ = ("component", "empty_chars", "escape", "field", "repetition", "subcomponent")

    def __init__(self, header: str) -> None:
        if len(header) < 5:
            raise Hl7Error(f"{header[:3]} declares no valid delimiters")
        self.field = header[3]
        encoding = header[4:8].split(self.field, 1)[0]
        if len(encoding) < 2 or any(c.isalnum() for c in encoding + self.field):
            raise Hl7Error(f"{header[:3]} declares no valid delimiters")
        self.component = encoding[0]
        self.repetition = encoding[1]
        self.escape = encoding[2] if len(encoding) > 2 else "\\"
        self.subcomponent = encoding[3] if len(encoding) > 3 else "&"
        # Delimiters, the HL7 null "" and blanks never make a field non-empty.
        self.empty_chars = encoding + '" '


def has_content(value: str, empty_chars: str) -> bool:
    """Does a field hold anything besides delimiters, the HL7 null ``""`` and blanks?"""
    return bool(value) and bool(value.strip(empty_chars))


_ESCAPES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition", "E": "escape"}


def unescape(value: str, d: Delimiters) -> str:
    """Undo the delimiter escapes of one value (``\\F\\`` → the field separator, ...), so a
    learned value matches how it is written elsewhere."""
    if d.escape not in value:
        return value
    out = value
    for code, attr in _ESCAPES.items():
        out = out.replace(f"{d.escape}{code}{d.escape}", getattr(d, attr))
    return out


LINE_BREAK_ESCAPE = re.compile(r"\\\.(?:br|sp\d*)\\")
_HEX_ESCAPE = re.compile(r"\\X([0-9A-Fa-f]+)\\")
_FORMAT_ESCAPE = re.compile(r"\\(?:H|N|\.br|\.sp\d*|\.in[+-]?\d*|\.ti[+-]?\d*|\.fi|\.nf|\.ce)\\")
_STANDARD = (("F", "|"), ("S", "^"), ("T", "&"), ("R", "~"), ("E", "\\"))


def unescape_text(text: str) -> str:
    """Every escape a receiver undoes before showing text — hex (``\\X517569\\``), format
    (``\\H\\``, ``\\.br\\``) and delimiter escapes — assuming the standard escape character:
    for searching what a receiver will display, never for forwarding."""

    def hex_to_text(match: re.Match[str]) -> str:
        digits = match.group(1)
        try:
            return bytes.fromhex(digits).decode("latin-1")
        except ValueError:
            return match.group(0)

    text = _FORMAT_ESCAPE.sub("", _HEX_ESCAPE.sub(hex_to_text, text))
    for code, char in _STANDARD:
        text = text.replace(f"\\{code}\\", char)
    return text


def strip_blocks(segment: str) -> str:
    """A segment without the MLLP start and end block characters around it."""
    if segment[:1] == START_BLOCK or segment[-1:] == END_BLOCK:
        return segment.lstrip(START_BLOCK).rstrip(END_BLOCK)
    return segment


def patient_key(text: str) -> str:
    """A per-patient key (for date shifting): the first PID-3, else the whole PID segment."""
    for segment in text.replace("\n", "\r").split("\r"):
        if segment.startswith("PID") and len(segment) > 4:
            fields = segment.split(segment[3])
            return fields[3] if len(fields) > 3 and fields[3] else segment
    return ""
