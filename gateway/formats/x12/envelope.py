"""ASC X12 interchanges as the gateway meets them: found in a text, split into segments with
the delimiters each interchange declares, tolerant of what real senders send.

An interchange starts with a fixed-width ISA header of 106 characters: the element separator
is its 4th character, the repetition separator ISA11, the component separator ISA16 (the 105th
character) and the segment terminator the 106th. Senders write lower case, wrap files at 80
columns, put CR/LF after each terminator, and drop the last terminator; a GS/ST group sent
without its ISA is still X12 (its delimiters are read from the ST segment). A segment's
elements are split only when read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ISA_LENGTH = 106
# Characters that never delimit (letters, digits, space): a header using them is not X12.
_NOT_DELIMITER = re.compile(r"[A-Za-z0-9 ]")
# Where an interchange or a bare functional group starts.
_START = re.compile(
    r"(?i)(?:ISA(?=[^A-Za-z0-9 \r\n])|GS(?=[^A-Za-z0-9 \r\n])|ST(?=[^A-Za-z0-9 \r\n]\d{3}))"
)
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_BLANKS = frozenset({"", "\r", "\n", " ", "\t"})
_HEADERS = frozenset({"ISA", "GS", "ST"})


class X12Error(ValueError):
    """The text is not X12 that can be read (the reason, never content)."""


@dataclass(frozen=True, slots=True)
class Delimiters:
    element: str = "*"
    repetition: str = "^"
    component: str = ":"
    segment: str = "~"


class Segment:
    """One segment: its tag read at once, its elements split when first asked for (most
    segments of a claim, service lines and codes, are never read)."""

    def __init__(self, raw: str, separator: str, tag: str) -> None:
        self.raw = raw  # the segment as sent, without its terminator
        self.separator = separator
        self.tag = tag  # upper case: "NM1"
        self._elements: list[str] | None = None

    @property
    def elements(self) -> list[str]:
        """elements[0] is the tag; elements[n] is element n (NM1-03 = [3])."""
        elements = self._elements
        if elements is None:
            elements = self._elements = self.raw.split(self.separator)
            elements[0] = self.tag
        return elements

    def element(self, number: int) -> str:
        elements = self.elements
        return elements[number] if number < len(elements) else ""


@dataclass(slots=True)
class Interchange:
    text: str  # the interchange as found, line breaks the sender added removed
    delimiters: Delimiters
    segments: list[Segment] = field(default_factory=list)
    has_isa: bool = True
    start: int = 0  # where it lies in the text it was found in (line breaks included)
    end: int = 0
    line_end: str = ""  # what the sender wrote after each terminator ("\r\n", "\n", "")

    def transactions(self) -> list[str]:
        """The transaction set ids of its ST segments ("837", "999", ...)."""
        return [s.element(1) for s in self.segments if s.tag == "ST"]

    def headers(self) -> list[Segment]:
        """Its ISA, GS and ST segments, in order (what an acknowledgement echoes)."""
        return [s for s in self.segments if s.tag in _HEADERS]


def starts_like_x12(text: str) -> bool:
    """Cheap sniff: does the text (after leading white space) open an interchange or group?"""
    head = text.lstrip()[:ISA_LENGTH]
    if head[:3].upper() == "ISA":
        return len(head) >= 4 and not _NOT_DELIMITER.match(head[3])
    return bool(re.match(r"(?i)(?:GS|ST)[^A-Za-z0-9 \r\n]", head))


def find(text: str) -> list[Interchange]:
    """Every interchange (or bare group) in a text, in order; raises X12Error when the text
    starts like X12 but its header cannot be read."""
    found: list[Interchange] = []
    position = 0
    while True:
        match = _START.search(text, position)
        if match is None:
            break
        interchange, end = _read(text, match.start())
        found.append(interchange)
        position = max(end, match.start() + 1)
    return found


def _read(text: str, start: int) -> tuple[Interchange, int]:
    has_isa = text[start : start + 3].upper() == "ISA"
    delimiters = _isa_delimiters(text, start) if has_isa else _bare_delimiters(text, start)
    # The interchange runs to its IEA (or to the next ISA, or to the end).
    end = _interchange_end(text, start, delimiters, has_isa)
    raw = text[start:end]
    line_end = ""
    if delimiters.segment not in "\r\n":
        line_end = _line_end(raw, delimiters.segment)
        raw = _LINE_BREAKS.sub("", raw)  # wrapped lines and CR/LF after terminators
    interchange = Interchange(raw, delimiters, [], has_isa, start, end, line_end)
    interchange.segments = _segments(raw, delimiters)
    if has_isa and (not interchange.segments or interchange.segments[0].tag != "ISA"):
        raise X12Error("ISA header cannot be read")
    return interchange, end


def _line_end(raw: str, terminator: str) -> str:
    """The line break after the first terminator followed by one, if any."""
    match = re.search(rf"{re.escape(terminator)}(\r\n|\r|\n)", raw)
    return match.group(1) if match else ""


def _isa_delimiters(text: str, start: int) -> Delimiters:
    """ISA is fixed width; a file wrapped at 80 columns breaks it: read it without breaks."""
    header = text[start : start + ISA_LENGTH]
    position = start + len(header)
    if "\r" in header[:-1] or "\n" in header[:-1]:
        header, position = "", start
    while len(header) < ISA_LENGTH and position < len(text):
        char = text[position]
        position += 1
        if char in "\r\n" and len(header) != ISA_LENGTH - 1:
            continue
        header += char
    if len(header) < ISA_LENGTH - 1:
        raise X12Error("ISA header is shorter than 106 characters")
    element = header[3]
    fields = header.split(element)
    if len(fields) < 17:
        raise X12Error("ISA header has fewer than 16 elements")
    component = header[104]
    segment = header[105] if len(header) == ISA_LENGTH else "~"
    repetition = fields[11] if len(fields[11]) == 1 else ""
    if _NOT_DELIMITER.match(repetition):  # 4010 headers carry "U" there: no repetitions
        repetition = ""
    if _NOT_DELIMITER.match(component) or segment in (element, component):
        raise X12Error("ISA delimiters are not distinct separators")
    return Delimiters(element, repetition or "^", component, segment)


def _bare_delimiters(text: str, start: int) -> Delimiters:
    """A group without ISA: the element separator follows GS/ST; the terminator is the
    first usual terminator after it."""
    element = text[start + 2]
    window = text[start : start + 4096]
    for candidate in ("~", "'", "\n", "\r"):
        if candidate != element and candidate in window:
            segment = candidate
            break
    else:
        segment = "~"
    component = ":" if element != ":" else ">"
    return Delimiters(element, "^", component, segment)


def _interchange_end(text: str, start: int, delimiters: Delimiters, has_isa: bool) -> int:
    tag = "IEA" if has_isa else ("GE" if text[start : start + 2].upper() == "GS" else "SE")
    terminator = delimiters.segment
    found = _closing(text, start + 3, tag + delimiters.element, terminator)
    if found < 0:  # not in upper case: the slower case-insensitive search
        pattern = re.compile(
            rf"(?i)(?:^|{re.escape(terminator)})\s*{tag}{re.escape(delimiters.element)}"
        )
        match = pattern.search(text, start + 3)
        found = -1 if match is None else match.end()
    if found < 0:
        return len(text)
    end = text.find(terminator, found)
    return len(text) if end < 0 else end + 1


def _closing(text: str, position: int, needle: str, terminator: str) -> int:
    """Where the closing segment's first element starts: ``needle`` (tag and separator) at
    the start of a segment (after a terminator and blanks, or at the start), or -1."""
    at = text.find(needle, position)
    while at >= 0:
        before = at - 1
        while before >= 0 and text[before] != terminator and text[before] in _BLANKS:
            before -= 1
        if before < 0 or text[before] == terminator:
            return at + len(needle)
        at = text.find(needle, at + 1)
    return -1


def _segments(raw: str, delimiters: Delimiters) -> list[Segment]:
    segments: list[Segment] = []
    separator = delimiters.element
    for piece in raw.split(delimiters.segment):
        segment = piece
        if piece[:1] in _BLANKS or piece[-1:] in _BLANKS:
            segment = piece.strip("\r\n \t")
            if not segment:
                continue
        cut = segment.find(separator)
        tag = segment if cut < 0 else segment[:cut]
        if not tag.isupper():
            tag = tag.upper()
        segments.append(Segment(segment, separator, tag))
    return segments
