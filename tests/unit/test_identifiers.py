"""The identifier shapes are defined once (gateway.phi.patterns) and detection and redaction
agree on them: what detection reports in free text, the scrubber masks."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.formats.hl7v2 import HL7V2
from gateway.model import Category
from gateway.phi.freetext import scan_text
from gateway.phi.patterns import (
    MONTH_NAMES,
    PHONE_NANP,
    SSN_SEPARATED,
    STREET_SUFFIXES,
    WRITTEN_DATE,
    email_spans,
    phone_spans,
    ssn_spans,
    standalone,
    valid_ssn,
)
from gateway.phi.scrub import MASK, ContextScrubber, scrub_patterns, street_spellings
from tests.support.redaction import InspectingRedactor

PATTERN_CATEGORIES = frozenset({Category.SSN, Category.PHONE, Category.EMAIL})
_SPAN = re.compile(r"\[(\d+):(\d+)\]$")

# Text built from the pieces detectors react to: SSNs written every way, phone numbers,
# e-mail addresses, the words that give digits a meaning, and filler.
_PIECES = st.one_of(
    st.from_regex(r"[1-7]\d\d([- ])[1-9]\d\1\d{3}[1-9]", fullmatch=True),  # a valid SSN
    st.from_regex(r"[1-7]\d{2}[1-9]\d{4}[1-9]", fullmatch=True),  # nine bare digits
    st.from_regex(r"\(?[2-9]\d\d\)?[ .-]?[2-9]\d\d[ .-]\d{4}", fullmatch=True),
    st.from_regex(r"\+1 [2-9]\d\d [2-9]\d\d \d{4}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9._]{0,12}@[a-z]{1,10}\.(?:org|com|net)", fullmatch=True),
    st.sampled_from(["SSN", "SSN:", "ss#", "Social Security", "soc sec no", "call", "email"]),
    st.sampled_from([" ", "  ", ", ", ". ", "\n", "-", "/", "x", "Pt", "MRN", "tel."]),
    st.text(alphabet="abcdefghij0123456789 ", max_size=8),
)
NOTES = st.lists(_PIECES, max_size=14).map(" ".join)


def _pattern_findings(text: str) -> list[tuple[int, int]]:
    spans = []
    for finding in scan_text(text).findings:
        match = _SPAN.search(finding.location)
        if finding.category in PATTERN_CATEGORIES and match:
            spans.append((int(match.group(1)), int(match.group(2))))
    return spans


@settings(max_examples=800, deadline=None)
@given(NOTES)
def test_every_ssn_phone_and_email_detection_reports_is_masked(text: str) -> None:
    scrubbed = ContextScrubber().scrub(text)
    for start, end in _pattern_findings(text):
        value = text[start:end]
        if text.count(value) == 1:  # elsewhere it may stand glued to a word: not reported
            assert value not in scrubbed, (text, value)
    # Read again, the scrubbed text holds none of them.
    assert not _pattern_findings(scrubbed), scrubbed


@settings(max_examples=500, deadline=None)
@given(NOTES)
def test_the_finders_are_what_detection_reports(text: str) -> None:
    found = {span for span in _pattern_findings(text)}
    finders = set(ssn_spans(text)) | set(phone_spans(text)) | set(email_spans(text))
    assert found <= finders


def test_an_ssn_written_with_spaces_is_masked_not_only_found() -> None:
    note = "Pt called re bill, SSN 123 45 6789, wants a callback"
    assert any(f.category is Category.SSN for f in scan_text(note).findings)
    assert "123 45 6789" not in scrub_patterns(note)
    assert "6789" not in scrub_patterns("SSN: 123456789 on file")


def test_a_note_with_a_spaced_ssn_is_redacted_rather_than_blocked() -> None:
    msh = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|C1|P|2.5.1"
    pid = "PID|1||MRN12345678^^^HOSP^MR||Quillfeather^Aurelio||19600102|M"
    note = "NTE|1||Billing asks to confirm SSN 321 54 9876 before Friday"
    body = "\r".join([msh, pid, note, ""]).encode()
    outcome = InspectingRedactor(parse_config({}), b"identifiers-secret").redact(body, "", HL7V2)
    assert not outcome.error, outcome.error
    assert b"321 54 9876" not in outcome.body and b"9876" not in outcome.body
    assert MASK.encode() in outcome.body


def test_every_date_spelling_the_scrubber_learns_is_one_detection_reads() -> None:
    scrubber = ContextScrubber()
    for value in ("19600102", "2024-11-30", "19991231"):
        scrubber.add_date(value)
    spellings = [v for v in scrubber.values() if any(c.isdigit() for c in v)]
    assert len(spellings) >= 24  # ten spellings each, some alike (11/30 is 11/30)
    for spelling in spellings:
        match = WRITTEN_DATE.fullmatch(" " + spelling)
        assert match is not None, spelling


def test_every_month_name_and_its_abbreviation_is_read() -> None:
    for name in MONTH_NAMES:
        for spelling in (name, name[:3]):
            assert WRITTEN_DATE.fullmatch(f" {spelling} 2, 1960"), spelling


def test_every_street_suffix_is_detected_and_spelled_both_ways() -> None:
    for full, shorts in STREET_SUFFIXES.items():
        for suffix in (full.capitalize(), *(s.capitalize() for s in shorts)):
            text = f"Patient: Jane Doe lives at 4417 Juniper {suffix}, phone 555-321-7654"
            assert any(f.category is Category.GEOGRAPHY for f in scan_text(text).findings)
        for short in shorts:
            assert f"Juniper {full}" in street_spellings(f"12 Juniper {short.capitalize()}")


_DIGIT_TEXT = st.lists(
    st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=12),
        st.sampled_from([" ", "-", ".", "(", ")", "+1 ", "+", "/", "_", "a", "\t", "é", "1 "]),
        st.from_regex(r"\(?[2-9]\d\d\)?[ .-]?[2-9]\d\d[ .-]\d{4}", fullmatch=True),
        st.from_regex(r"[1-7]\d\d([- ])[1-9]\d\1\d{3}[1-9]", fullmatch=True),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(_DIGIT_TEXT)
def test_searching_near_number_tails_finds_what_the_whole_text_search_finds(text: str) -> None:
    """The finders search only around the digit-separator-four-digits every SSN and phone
    ends with; over the whole text, the same patterns find exactly the same spans."""
    phones = [(m.start(), m.end()) for m in standalone(PHONE_NANP, text, ".-/+")]
    assert phone_spans(text) == phones
    ssns = [
        (m.start(), m.end())
        for m in standalone(SSN_SEPARATED, text, ".-/")
        if valid_ssn(m.group(1), m.group(3), m.group(4))
    ]
    # ssn_spans adds the nine-digit numbers after "SSN"; this text holds no such keyword.
    assert ssn_spans(text) == ssns
