"""The fast paths of free-text scrubbing find exactly what the regular expressions find."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.phi.normalise import normalised
from gateway.phi.patterns import _TAIL_AT, context_ssn_spans, number_tails
from gateway.phi.patterns import EMAIL_SHAPE as EMAIL
from gateway.phi.patterns import PHONE_SHAPE as PHONE
from gateway.phi.patterns import SSN_SHAPE as SSN
from gateway.phi.scrub import (
    MASK,
    ContextScrubber,
    ValueIndex,
    find_values,
    has_pattern,
    mask_spans,
    mask_values,
    scrub_patterns,
    values_pattern,
)

# Few letters, digits and separators: values collide, overlap and touch token boundaries.
_ALPHABET = "aAbB01 -./()@+é"
_TEXT = st.text(alphabet=_ALPHABET, max_size=40)
_VALUES = st.lists(st.text(alphabet=_ALPHABET, min_size=1, max_size=6), max_size=6)


def _reference_mask(text: str, values: list[str]) -> str:
    lowered = text.lower()
    hits = [v.lower() for v in values if v.lower() in lowered]
    return values_pattern(hits).sub(MASK, text) if hits else text


@settings(max_examples=400, deadline=None)
@given(text=_TEXT, values=_VALUES)
def test_mask_values_matches_the_regex(text: str, values: list[str]) -> None:
    lowered_values = {v.lower() for v in values}
    hits = [v for v in lowered_values if v in text.lower()]
    assert mask_values(text, hits) == _reference_mask(text, values)
    expected = bool(hits) and values_pattern(hits).search(text) is not None
    assert find_values(text, lowered_values) == expected


@settings(max_examples=400, deadline=None)
@given(text=_TEXT, values=_VALUES)
def test_the_value_index_finds_what_the_plain_search_finds(text: str, values: list[str]) -> None:
    lowered_values = {v.lower() for v in values}
    expected = find_values(text, lowered_values)  # few values: one search per value
    assert find_values(text, ValueIndex(lowered_values)) == expected
    scrubber = ContextScrubber()
    for value in values:
        scrubber.add(value)
    masked = scrubber.scrub(text)
    for n in range(100):  # past the threshold: the scrubber searches through an index
        scrubber.add(f"zz{n}q")
    assert scrubber.scrub(text) == masked


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet="0123456789 -.()+1@ab.", max_size=40))
def test_pattern_prefilter_never_hides_a_pattern(text: str) -> None:
    full = mask_spans(text, context_ssn_spans(text))
    full = EMAIL.sub(MASK, PHONE.sub(MASK, SSN.sub(MASK, full))) if full else full
    # The combined number pattern is one alternation: compare on what it is meant to catch.
    assert (scrub_patterns(text) == text) == (full == text)
    assert has_pattern(text) == (
        any(p.search(text) for p in (SSN, PHONE, EMAIL)) or bool(context_ssn_spans(text))
    )


def test_scrubber_masks_whole_tokens_case_insensitively() -> None:
    scrubber = ContextScrubber()
    scrubber.add("Smith")
    scrubber.add("12345")
    assert scrubber.scrub("SMITH's MRN 12345, not 123456") == (f"{MASK}'s MRN {MASK}, not 123456")
    assert scrubber.scrub("Smithson") == "Smithson"
    pieces = ["mr smithson", "nothing here", "call 555-123-4567", "Mr SMITH"]
    assert scrubber.scrub_pieces(pieces, "\r") == {2: f"call {MASK}", 3: f"Mr {MASK}"}


# Digit-heavy text with every separator the SSN, phone and e-mail patterns know about.
_PATTERN_TEXT = st.lists(
    st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=12),
        st.sampled_from([" ", "-", ".", "(", ")", "+1 ", "@", "a", "x.org", "_", "é", "\r"]),
        st.from_regex(r"\d{3}-\d{2}-\d{4}", fullmatch=True),
        st.from_regex(r"\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}", fullmatch=True),
        st.from_regex(r"[a-z.+]{1,20}@[a-z]{1,10}\.[a-z]{2,4}", fullmatch=True),
        st.from_regex(r"[a-z0-9_]{60,140}@[a-z0-9]{1,300}\.[a-z]{2,4}", fullmatch=True),
    ),
    max_size=30,
).map("".join)


_NUMBERS = re.compile(f"(?:{SSN.pattern})|(?:{PHONE.pattern})")


@settings(max_examples=600, deadline=None)
@given(_PATTERN_TEXT)
def test_windowed_pattern_scrub_equals_the_whole_text_regex(text: str) -> None:
    # The scrub searches only near an anchor; over the whole text, the same regexes must
    # find exactly the same matches. A text that is not its own normal form (digits of
    # another script) is searched in that form: nothing the patterns find survives.
    if normalised(text) is not None:
        assert not has_pattern(scrub_patterns(text))
        return
    found = mask_spans(text, context_ssn_spans(text))
    assert scrub_patterns(text) == EMAIL.sub(MASK, _NUMBERS.sub(MASK, found))
    assert has_pattern(text) == bool(
        _NUMBERS.search(text) or EMAIL.search(text) or context_ssn_spans(text)
    )


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(st.text(alphabet=_ALPHABET + "5\r", max_size=30), min_size=1, max_size=6),
    values=_VALUES,
    separator=st.sampled_from(["\r", "\x00"]),
)
def test_scrubbing_pieces_together_equals_piece_by_piece(
    pieces: list[str], values: list[str], separator: str
) -> None:
    scrubber = ContextScrubber()
    for value in values:
        scrubber.add(value)
    scrubber.add("555-0" + "\r" + "1234")  # a value holding a separator: exact all the same
    expected = {i: scrubber.scrub(p) for i, p in enumerate(pieces) if scrubber.scrub(p) != p}
    assert scrubber.scrub_pieces(pieces, separator) == expected


@settings(max_examples=400, deadline=None)
@given(text=_PATTERN_TEXT)
def test_number_hints_are_where_the_look_ahead_matches(text: str) -> None:
    assert number_tails(text) == [m.start() for m in _TAIL_AT.finditer(text)]


def _reference_number_values(value: str) -> set[str]:
    """add_number as first written: the regular expressions on every value."""
    scrubber = ContextScrubber()
    scrubber.add(value)
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 7 and not re.sub(r"[-\d. ()/+]", "", value):
        scrubber.add(digits)
        if len(digits) == 11 and digits.startswith("1"):
            scrubber.add(digits[1:])
    return scrubber.values()


@settings(max_examples=400, deadline=None)
@given(value=st.text(alphabet="0123456789-. ()/+x\u0661\u0662", max_size=20))
def test_number_values_are_learned_as_the_regular_expressions_say(value: str) -> None:
    scrubber = ContextScrubber()
    scrubber.add_number(value)
    assert scrubber.values() == _reference_number_values(value)
