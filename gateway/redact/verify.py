"""Before a redacted message leaves: does it still parse, and is anything identifying left?

Two independent checks, both must pass:
1. the identifier values the redactor removed (and what its structured fields held) occur
   nowhere in the output, compared case-insensitively;
2. the output is inspected again — HL7 v2 by the same field scanner in de-identified mode
   (identifying fields may hold only placeholders, pseudonyms, years, ZIP3, state/country
   codes), FHIR by the person-resource rules below — and scanned for SSN, phone and e-mail
   patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from gateway.inspect.fhir import PERSON_TYPES, as_list
from gateway.inspect.freetext import scan_text
from gateway.inspect.hl7v2 import Hl7Error, inspect_hl7, segment_ends
from gateway.model import IDENTIFYING, Category
from gateway.redact.fhir import NOT_FREE_TEXT
from gateway.redact.safe_harbor import is_generalized_date, is_pseudonym, is_safe_token
from gateway.redact.text import MIN_SEARCHED, find_values, has_pattern, worth_matching


def leftover(output: str, originals: Iterable[str]) -> bool:
    """Does any removed identifier value still occur in the output, as a whole token? Values
    the scrubber deliberately leaves in free text (see ``worth_matching``) are not searched."""
    return find_values(output, searched_values(originals))


def searched_values(originals: Iterable[str]) -> set[str]:
    """The removed values ``leftover`` searches for, lower-cased."""
    return {v.strip().lower() for v in originals if len(v) >= MIN_SEARCHED and worth_matching(v)}


def pattern_left(output: str) -> bool:
    return has_pattern(output)


def verify_hl7(output: str, searched: set[str], shifted_dates: bool) -> str:
    """'' when the redacted message is clean, else the reason (never a value). ``searched``:
    the removed values to look for, as ``searched_values`` chooses them (lower-cased)."""
    try:
        again = inspect_hl7(output, deidentified=True)
    except Hl7Error:
        return "redacted message no longer parses"
    ignore = {Category.DATE} if shifted_dates else set()
    if any(f.category in IDENTIFYING and f.category not in ignore for f in again.findings):
        return "an identifying field survived redaction"
    # MSH is forwarded as sent, for routing and the ACK; everything else is searched.
    segments = [s for s in segment_ends(output).split(output) if not _is_msh(s)]
    body = "\n".join(segments)
    # Searched as sent and with HL7 escapes undone: "\X517569\llfeather" and
    # "\H\Quill\N\feather" spell a name a receiver will display. Without a backslash there
    # is no escape to undo, and the second search would read the same text again.
    if find_values(body, searched) or (
        "\\" in body and find_values(_unescape_text(body), searched)
    ):
        return "an identifier value survived redaction"
    if pattern_left(body):
        return "an SSN, phone or e-mail pattern survived redaction"
    if _prose_identifies(_hl7_fields(segments), hl7_escapes=True):
        return "free text still identifies a patient"
    return ""


# A field with this many spaces is read as prose by the free-text detectors: notes (NTE-3,
# OBX-5), kept Z-segments, order comments. Coded values and single words are not.
_PROSE_SPACES = 2


def _prose_identifies(texts: Iterable[str], hl7_escapes: bool = False) -> bool:
    """The inspector's free-text detectors over every text that reads like prose: a
    relative's address or birth date written in a note is in no structured field, so neither
    the scrub nor the value search knows it. Each distinct text is read once, as its own
    paragraph, so identifiers in two different texts never pair up."""
    prose = dict.fromkeys([t for t in texts if t.count(" ") >= _PROSE_SPACES])
    if not prose:
        return False
    text = "\n\n".join(prose)
    if hl7_escapes and "\\" in text:  # line breaks stay breaks: detectors read lines
        text = _unescape_text(_LINE_BREAK_ESCAPE.sub("\n", text))
    return scan_text(text).contains_phi


def _hl7_fields(segments: list[str]) -> Iterator[str]:
    """The fields of the segments that hold a space at all (most hold none)."""
    for raw in segments:
        if " " in raw and len(raw) > 3:
            segment = raw.lstrip("\x0b")  # an MLLP start block before the segment id
            yield from segment.split(segment[3])


def _is_msh(segment: str) -> bool:
    if segment[:1] == "\x0b":  # an MLLP start block
        segment = segment.lstrip("\x0b")
    return segment[:3] == "MSH"


_LINE_BREAK_ESCAPE = re.compile(r"\\\.(?:br|sp\d*)\\")
_HEX_ESCAPE = re.compile(r"\\X([0-9A-Fa-f]+)\\")
_FORMAT_ESCAPE = re.compile(r"\\(?:H|N|\.br|\.sp\d*|\.in[+-]?\d*|\.ti[+-]?\d*|\.fi|\.nf|\.ce)\\")


def _unescape_text(text: str) -> str:
    """HL7 escapes undone (assuming the standard escape character), for searching only."""

    def hex_to_text(match: re.Match[str]) -> str:
        digits = match.group(1)
        try:
            return bytes.fromhex(digits).decode("latin-1")
        except ValueError:
            return match.group(0)

    text = _FORMAT_ESCAPE.sub("", _HEX_ESCAPE.sub(hex_to_text, text))
    for code, char in (("F", "|"), ("S", "^"), ("T", "&"), ("R", "~"), ("E", "\\")):
        text = text.replace(f"\\{code}\\", char)
    return text


def verify_fhir(resources: list[Any], originals: Iterable[str], shifted_dates: bool) -> str:
    """'' when the redacted resources are clean, else the reason (never a value). That they
    still serialize is checked where they are serialized (once: redactor.encode_fhir)."""
    strings: list[str] = []
    people: list[dict[str, Any]] = []
    _read(resources, "", strings, people)
    for resource in people:
        if not _person_clean(resource, shifted_dates):
            return "an identifying element survived redaction"
    text = "\n".join(strings)
    if leftover(text, originals):
        return "an identifier value survived redaction"
    if pattern_left(text):
        return "an SSN, phone or e-mail pattern survived redaction"
    # Distinct first: the same few strings recur thousands of times, their hashes are known.
    if _prose_identifies(dict.fromkeys(strings)):
        return "free text still identifies a patient"
    return ""


def _read(node: Any, key: str, strings: list[str], people: list[dict[str, Any]]) -> None:
    """One walk: every string a reader sees as text (document order), every person
    resource at any depth (contained, Bundle entries, Parameters)."""
    if isinstance(node, dict):
        _read_dict(node, strings, people)
    elif isinstance(node, list):
        _read_list(node, key, strings, people)


# The exact types first (json.loads makes no others), then any subclass: ~40,000 nodes in
# a 2.7 MB Bundle, so a dict or list child costs one call, a number no call at all.
def _read_dict(node: dict[str, Any], strings: list[str], people: list[dict[str, Any]]) -> None:
    if "resourceType" in node:
        rtype = node["resourceType"]
        if isinstance(rtype, str) and rtype in PERSON_TYPES:
            people.append(node)
    for k, v in node.items():
        kind = type(v)
        if kind is str:
            if k not in NOT_FREE_TEXT:
                strings.append(v)
        elif kind is dict:
            _read_dict(v, strings, people)
        elif kind is list:
            _read_list(v, k, strings, people)
        elif kind is int or kind is float or kind is bool or v is None:
            pass
        elif isinstance(v, str):
            if k not in NOT_FREE_TEXT:
                strings.append(v)
        else:
            _read(v, k, strings, people)


def _read_list(node: list[Any], key: str, strings: list[str], people: list[dict[str, Any]]) -> None:
    free = key not in NOT_FREE_TEXT
    for v in node:
        kind = type(v)
        if kind is dict:
            _read_dict(v, strings, people)
        elif kind is str:
            if free:
                strings.append(v)
        elif kind is list:
            _read_list(v, key, strings, people)
        elif isinstance(v, str):
            if free:
                strings.append(v)
        else:
            _read(v, key, strings, people)


def _person_clean(resource: dict[str, Any], shifted_dates: bool) -> bool:
    if any(resource.get(k) for k in ("name", "telecom", "photo", "contact")):
        return False
    birth = resource.get("birthDate")
    if isinstance(birth, str) and not shifted_dates and not is_generalized_date(birth):
        return False
    for address in as_list(resource.get("address")):
        if not isinstance(address, dict) or any(
            address.get(k) for k in ("line", "city", "district", "text")
        ):
            return False
        postal = address.get("postalCode")
        if postal is not None and not (
            isinstance(postal, str) and is_safe_token(postal, address=True)
        ):
            return False
    for ident in as_list(resource.get("identifier")):
        value = ident.get("value") if isinstance(ident, dict) else None
        if value is not None and not (isinstance(value, str) and is_pseudonym(value)):
            return False
    return True
