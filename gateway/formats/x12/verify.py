"""Before a redacted interchange leaves: is it still a valid envelope, and is anything
identifying left? Every check must pass:

1. it reads again as X12, and its control counts are right (SE-01, GE-01, IEA-01);
2. every element the inspection's walk names holds only what a de-identified value looks
   like: placeholders, pseudonyms, ZIP3 areas, and dates reduced to the year (CCYY0101), or
   any date where dates are shifted;
3. the identifier values the redactor removed occur nowhere outside the envelope segments
   (removed dates: nowhere in free text), compared case-insensitively as whole tokens;
4. free text holds no SSN, phone or e-mail shape, and does not identify a patient to the
   free-text detectors.
"""

from __future__ import annotations

import re

from gateway.formats.x12.envelope import Interchange, X12Error, find
from gateway.formats.x12.patient import patient_fields
from gateway.model import Category
from gateway.phi.freetext import prose_identifies
from gateway.phi.safe_harbor import REDACTED, is_safe_token
from gateway.phi.scrub import find_values, has_pattern

_ENVELOPE = frozenset({"ISA", "GS", "GE", "IEA", "ST", "SE"})
_YEAR_DATE = re.compile(r"^\d{4}0101(?:0000)?(?:-\d{4}0101(?:0000)?)?$")
_SHIFTED_DATE = re.compile(r"^\d{8}(?:\d{4})?(?:-\d{8}(?:\d{4})?)?$")


def verify_x12(
    output: str, searched: set[str], searched_dates: set[str], shifted_dates: bool
) -> str:
    """'' when the redacted payload is clean, else the reason (never a value). ``searched``:
    the removed identifiers, looked for past the envelope; ``searched_dates``: the removed
    dates, looked for in free text (lower-cased, as ``scrub.searched_values`` makes them)."""
    try:
        interchanges = find(output)
    except X12Error:
        return "redacted interchange no longer parses"
    if not interchanges:
        return "redacted interchange no longer parses"
    texts: list[str] = []
    body: list[str] = []
    for interchange in interchanges:
        if not counts_are_right(interchange):
            return "redacted interchange has wrong control counts"
        segments = interchange.segments
        for f in patient_fields(interchange):
            value = segments[f.segment].element(f.element)
            if f.free_text:
                texts.append(value)
            elif not _deidentified(f.category, segments[f.segment].tag, value, shifted_dates):
                return "an identifying element survived redaction"
        separator = interchange.delimiters.element
        body += [separator.join(s.elements) for s in segments if s.tag not in _ENVELOPE]
    if find_values("\n".join(body), searched) or find_values("\n".join(texts), searched_dates):
        return "an identifier value survived redaction"
    if any(has_pattern(text) for text in texts):
        return "an SSN, phone or e-mail pattern survived redaction"
    if prose_identifies(texts):
        return "free text still identifies a patient"
    return ""


def counts_are_right(interchange: Interchange) -> bool:
    """SE-01 counts its transaction's segments, GE-01 its group's sets, IEA-01 the groups."""
    count = sets = groups = 0
    for segment in interchange.segments:
        count += 1
        tag = segment.tag
        if tag == "ST":
            count, sets = 1, sets + 1
        elif tag == "GS":
            sets, groups = 0, groups + 1
        elif tag in ("SE", "GE", "IEA"):
            expected = {"SE": count, "GE": sets, "IEA": groups}[tag]
            if segment.element(1).strip() != str(expected):
                return False
    return True


def _deidentified(category: Category, tag: str, value: str, shifted: bool) -> bool:
    value = value.strip()
    if not value:
        return True
    if category is Category.DATE:
        pattern = _SHIFTED_DATE if shifted else _YEAR_DATE
        return value == REDACTED or pattern.match(value) is not None
    if category is Category.GEOGRAPHY:
        return is_safe_token(value, address=True)
    return is_safe_token(value)
