"""Text is read as a person reads it: entities, zero-width and bidi characters, fullwidth and
other-script digits cannot hide a name or an SSN from the detectors or from the scrub, and
every finding still points at the text as sent."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.phi.freetext import scan_text
from gateway.phi.normalise import FORMAT_RANGES, normalised, unchanged
from gateway.phi.scrub import MASK, ContextScrubber, find_values, has_pattern, scrub_patterns

# Real-looking names: the name detectors read shape (synthetic surnames carry digits).
GIVEN, FAMILY = "Aurelio", "Quillfeather"
SSN = "219-09-9999"
ZW = "\u200b"  # zero-width space


def test_the_format_character_list_is_the_unicode_database_s() -> None:
    listed = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    pattern = re.compile(f"[{FORMAT_RANGES}]")
    assert {c for c in range(sys.maxunicode + 1) if pattern.match(chr(c))} == listed


@pytest.mark.parametrize(
    "text",
    ["plain ASCII note, nothing to change", "AT&T invoice; Q&A at 10", "café naïve São Paulo"],
)
def test_text_that_is_its_own_normal_form_is_not_copied(text: str) -> None:
    assert unchanged(text)
    assert normalised(text) is None


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("Jane&nbsp;Doe", "Jane Doe"),
        ("&#74;ane &#x44;oe", "Jane Doe"),
        ("Jo\u200bhn\u00adny\u202eDoe\u2060", "JohnnyDoe"),
        ("\uff11\uff12\uff13-45-6789", "123-45-6789"),
        ("\u0661\u0662\u0663", "123"),  # Arabic-Indic digits
        ("Jane\u00a0Doe\u3000MRN", "Jane Doe MRN"),
        ("&amp;nbsp;", "&nbsp;"),  # one pass, as a browser reads it
    ],
)
def test_the_normal_form(sent: str, read: str) -> None:
    form = normalised(sent)
    assert form is not None and form.text == read


@pytest.mark.parametrize(
    "note",
    [
        f"Patient:&nbsp;{GIVEN}&nbsp;{FAMILY}",
        f"Pati{ZW}ent: {GIVEN[:3]}{ZW}{GIVEN[3:]} {FAMILY}",
        "SSN &#50;19-09-9999 on file",
        "SSN \uff12\uff11\uff19-\uff10\uff19-\uff19\uff19\uff19\uff19",
        "D\u200bO\u200bB: 03/14/1970",
        "MRN\u00a0\u200e12345678",
    ],
)
def test_obfuscated_identifiers_are_found(note: str) -> None:
    assert scan_text(note).contains_phi


def test_spans_point_at_the_text_as_sent() -> None:
    note = f"Seen today. Patient:&nbsp;{GIVEN}{ZW} {FAMILY} in clinic."
    scan = scan_text(note, "note")
    (finding,) = [f for f in scan.findings if f.category.value == "name"]
    start, end = (int(x) for x in finding.location.removeprefix("note[").rstrip("]").split(":"))
    assert note[start:end] == f"{GIVEN}{ZW} {FAMILY}"


_INVISIBLE = st.sampled_from([ZW, "\u200c", "\u200d", "\u00ad", "\u2060", "\u202a", "\ufeff"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), _INVISIBLE), max_size=6))
def test_invisible_characters_anywhere_in_an_ssn_are_masked(
    inserts: list[tuple[int, str]],
) -> None:
    digits = list(SSN)
    for position, char in sorted(inserts, reverse=True):
        digits.insert(position, char)
    note = f"SSN {''.join(digits)} verified"
    assert scan_text(note).contains_phi
    scrubbed = scrub_patterns(note)
    assert not any(ch.isdigit() for ch in scrubbed) and MASK in scrubbed
    assert scrubbed.endswith(" verified") and not has_pattern(scrubbed)


def test_a_learned_value_written_with_invisible_characters_is_scrubbed_and_found() -> None:
    scrubber = ContextScrubber()
    scrubber.add(FAMILY)
    note = f"Spoke with Mrs. Quill{ZW}feather and Mr. Quill&shy;feather today"
    scrubbed = scrubber.scrub(note)
    assert "Quill" not in scrubbed and scrubbed.count(MASK) == 2
    assert find_values(note, {FAMILY.lower()})
    assert not find_values(scrubbed, {FAMILY.lower()})


def test_entities_nested_deep_are_decoded_once_without_recursing() -> None:
    # Each decoding of "&amp;amp;..." yields another entity: verification must not follow
    # it (a recursion as deep as the text nests it), but read it once, as the scrub does.
    nested = "SSN &" + "amp;" * 50_000 + "nbsp; on file"
    assert not has_pattern(nested)
    assert not find_values(nested, {"quillfeather"})
    assert scrub_patterns(nested) == nested
