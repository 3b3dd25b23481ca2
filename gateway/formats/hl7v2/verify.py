"""Before a redacted HL7 v2 message leaves: does it still parse, and is anything identifying
left? Every check must pass:

1. the message is scanned again with the inspection's field walk, where an identifying field
   may now hold only what a de-identified value looks like (placeholders, pseudonyms, years;
   in addresses also ZIP3 areas and state/country codes);
2. the identifier values the redactor removed occur nowhere outside MSH, as sent or with HL7
   escapes undone, compared case-insensitively as whole tokens;
3. no SSN, phone or e-mail shape is left (what the scrubber masks);
4. no text that reads like prose still identifies a patient to the free-text detectors.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from gateway.errors import Hl7Error
from gateway.formats.hl7v2.er7 import LINE_BREAK_ESCAPE, START_BLOCK, segment_ends, unescape_text
from gateway.formats.hl7v2.identifiers import RECORD_ID_CATEGORIES
from gateway.formats.hl7v2.inspect import FieldCheck, inspect_hl7
from gateway.model import IDENTIFYING, Category
from gateway.phi.freetext import prose_identifies
from gateway.phi.safe_harbor import SAFE_ADDRESS_TOKEN, SAFE_TOKEN
from gateway.phi.scrub import find_values, has_pattern

C = Category


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


def _identifying_content(category: Category) -> FieldCheck:
    """De-identified mode: only placeholders, pseudonyms and years may remain (in addresses
    also ZIP3 areas and state/country codes)."""
    address = category is C.GEOGRAPHY
    # Identifier fields (CX, EI) keep their assigning authority and type: only the first
    # component of each repetition is the identifier itself.
    identifier = category in RECORD_ID_CATEGORIES

    def check(value: str, empty_chars: str) -> bool:
        if identifier:
            component, repetition = empty_chars[0], empty_chars[1]
            if repetition in value:
                value = repetition.join([r.split(component, 1)[0] for r in value.split(repetition)])
            else:
                value = value.split(component, 1)[0]
        return _deidentified_field(empty_chars, address).match(value) is None

    return check


DEIDENTIFIED_CHECKS: dict[Category, FieldCheck] = {c: _identifying_content(c) for c in Category}


def verify_hl7(output: str, searched: set[str], shifted_dates: bool) -> str:
    """'' when the redacted message is clean, else the reason (never a value). ``searched``:
    the removed values to look for, lower-cased, as ``scrub.searched_values`` chooses them."""
    try:
        again = inspect_hl7(output, DEIDENTIFIED_CHECKS)
    except Hl7Error:
        return "redacted message no longer parses"
    ignore = {C.DATE} if shifted_dates else set()
    if any(f.category in IDENTIFYING and f.category not in ignore for f in again.findings):
        return "an identifying field survived redaction"
    # MSH is forwarded as sent, for routing and the ACK; everything else is searched.
    segments = [s for s in segment_ends(output).split(output) if not _is_msh(s)]
    body = "\n".join(segments)
    # Searched as sent and with HL7 escapes undone: "\X517569\llfeather" and
    # "\H\Quill\N\feather" spell a name a receiver will display. Without a backslash there
    # is no escape to undo, and the second search would read the same text again.
    if find_values(body, searched) or ("\\" in body and find_values(unescape_text(body), searched)):
        return "an identifier value survived redaction"
    if has_pattern(body):
        return "an SSN, phone or e-mail pattern survived redaction"
    if prose_identifies(_fields(segments), _displayed):
        return "free text still identifies a patient"
    return ""


def _displayed(text: str) -> str:
    """Prose as a receiver shows it: escapes undone, line-break escapes as line breaks (the
    detectors read lines)."""
    if "\\" not in text:
        return text
    return unescape_text(LINE_BREAK_ESCAPE.sub("\n", text))


def _fields(segments: list[str]) -> Iterator[str]:
    """The fields of the segments that hold a space at all (most hold none)."""
    for raw in segments:
        if " " in raw and len(raw) > 3:
            segment = raw.lstrip(START_BLOCK)  # an MLLP start block before the segment id
            yield from segment.split(segment[3])


def _is_msh(segment: str) -> bool:
    if segment[:1] == START_BLOCK:
        segment = segment.lstrip(START_BLOCK)
    return segment[:3] == "MSH"
