"""Free-text scrubbing: the identifiers a message's own structured fields held (contextual
de-identification), and the patterns no clinical note needs (SSN, phone, e-mail).

Identifier values are matched as whole tokens, case-insensitively: "12345" must not hit inside
"123456", "Smith" must hit in "SMITH's".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

from gateway.phi.freetext import relative_spans
from gateway.phi.normalise import normalised
from gateway.phi.patterns import (
    EMAIL_SHAPE,
    MONTH_NAMES,
    PHONE_SHAPE,
    SSN_SHAPE,
    STREET_SUFFIXES,
    Span,
    context_ssn_spans,
    merged,
    number_tails,
)

MASK = "[REDACTED]"
_MIN_LENGTH = 3
_MIN_DIGITS = 4
# Removed values shorter than this are scrubbed but not searched for by verification: as
# whole words they are too often ordinary text ("Lee", "Ray").
MIN_SEARCHED = 4
# Words too common to treat as identifiers wherever they occur.
_COMMON = frozenset(
    {
        "THE",
        "AND",
        "MR",
        "MRS",
        "MS",
        "DR",
        "JR",
        "SR",
        "III",
        "USA",
        "MRN",
        "UNK",
        "UNKNOWN",
        "NONE",
        "NULL",
        "TEST",
    }
)


_LONGEST_COMMON = max(len(word) for word in _COMMON)


def values_pattern(values: list[str]) -> re.Pattern[str]:
    ordered = sorted(values, key=len, reverse=True)
    alternatives = "|".join(re.escape(v) for v in ordered)
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def value_spans(text: str, lowered: str, hits: Iterable[str]) -> list[tuple[int, int]]:
    """Where ``values_pattern(hits)`` would match in ASCII ``text`` (``lowered`` is its
    lower(), so indices agree): whole tokens, leftmost first, the longest value at a
    position, never overlapping. Found with str.find: compiling a regex of the message's
    own values costs ~50 us per value, and every message brings new values."""
    candidates: list[tuple[int, int]] = []
    size = len(text)
    for value in hits:
        width = len(value)
        start = lowered.find(value) if width else -1
        while start != -1:
            end = start + width
            if (start == 0 or text[start - 1] not in _TOKEN_CHARS) and (
                end == size or text[end] not in _TOKEN_CHARS
            ):
                candidates.append((start, -width))
            start = lowered.find(value, start + 1)
    candidates.sort()
    spans: list[tuple[int, int]] = []
    reached = 0
    for start, negative_width in candidates:
        if start >= reached:
            reached = start - negative_width
            spans.append((start, reached))
    return spans


def _present(lowered: str, lowered_values: Iterable[str]) -> list[str]:
    return [v for v in lowered_values if v in lowered]


# Past this many values, a text is searched through a ``ValueIndex`` rather than once per
# value (a batch of claims brings thousands, each text would be read thousands of times).
_MANY_VALUES = 64
_TOKEN_RUN = re.compile(r"[A-Za-z0-9]+")


class ValueIndex:
    """Lower-case values by their first token (run of ASCII letters and digits). A value
    that occurs in a text as a whole token (what every search here asks) has its first
    token there as a whole token too, so only the values whose first token the text holds
    are looked for: the cost follows the text, not the number of values."""

    __slots__ = ("_by_first", "_tokenless")

    def __init__(self, lowered_values: Iterable[str]) -> None:
        self._by_first: dict[str, list[str]] = {}
        self._tokenless: list[str] = []
        for value in lowered_values:
            first = _TOKEN_RUN.search(value)
            if first is None:
                self._tokenless.append(value)
            else:
                self._by_first.setdefault(first.group(), []).append(value)

    def present(self, lowered: str) -> list[str]:
        """The values that may occur in ``lowered`` as whole tokens (a superset: callers
        check the boundaries), each once."""
        hits = [v for v in self._tokenless if v in lowered]
        by_first = self._by_first
        for token in set(_TOKEN_RUN.findall(lowered)):
            candidates = by_first.get(token)
            if candidates is not None:
                hits += [v for v in candidates if v in lowered]
        return hits


def _present_in(lowered: str, lowered_values: Iterable[str] | ValueIndex) -> list[str]:
    """``_present``, through a ``ValueIndex`` when there are many values."""
    if isinstance(lowered_values, ValueIndex):
        return lowered_values.present(lowered)
    if isinstance(lowered_values, set | frozenset | list) and len(lowered_values) > _MANY_VALUES:
        return ValueIndex(lowered_values).present(lowered)
    return _present(lowered, lowered_values)


def find_values(text: str, lowered_values: Iterable[str] | ValueIndex) -> bool:
    """Does any value occur as a whole token? A plain substring test first (the usual case:
    none of them anywhere), then the token boundaries of the few that do."""
    form = normalised(text)
    if form is not None and _find_values_as_written(form.text, lowered_values):
        return True
    return _find_values_as_written(text, lowered_values)


def _find_values_as_written(text: str, lowered_values: Iterable[str] | ValueIndex) -> bool:
    lowered = text.lower()
    hits = _present_in(lowered, lowered_values)
    if not hits:
        return False
    if text.isascii():
        return bool(value_spans(text, lowered, hits))
    return values_pattern(hits).search(text) is not None


def mask_values(text: str, hits: list[str]) -> str:
    """Every whole-token occurrence of the (lower-case) values replaced by the mask."""
    if not hits:
        return text
    if not text.isascii():
        # lower() may change the length of non-ASCII text: the regex keeps exact semantics.
        return _cached_pattern(frozenset(hits)).sub(MASK, text)
    spans = value_spans(text, text.lower(), hits)
    if not spans:
        return text
    pieces: list[str] = []
    done = 0
    for start, end in spans:
        pieces.append(text[done:start])
        pieces.append(MASK)
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


@functools.lru_cache(maxsize=256)
def _cached_pattern(hits: frozenset[str]) -> re.Pattern[str]:
    return values_pattern(list(hits))


_NUMBER_PATTERN = re.compile(f"(?:{SSN_SHAPE.pattern})|(?:{PHONE_SHAPE.pattern})")
# Where a match can be, relative to its anchor. Every SSN and phone ends with the hint
# ``\d[ .-]\d{4}`` (found at every position, overlapping) and is at most ~18 characters long;
# every e-mail contains an "@" inside a run of the characters an address can hold. The
# patterns start with look-behinds, which keep Python's regex engine from skipping ahead: run
# over a whole 2 KB message they cost ~0.5 ms; run only in these windows, a few µs.
# Look-behinds and \b see the real text before a window (``pos``); windows end a few
# characters after the last hint, so look-aheads see real text too.
_NUMBER_BEFORE, _NUMBER_AFTER = 24, 8
_DOMAIN_RUN = re.compile(r"[\w.-]*")
_LOCAL_RUN = re.compile(r"[\w.+-]*")


def _number_windows(text: str) -> list[tuple[int, int]]:
    size = len(text)
    return merged(
        [(max(0, at - _NUMBER_BEFORE), min(size, at + _NUMBER_AFTER)) for at in number_tails(text)]
    )


def _email_windows(text: str) -> list[tuple[int, int]]:
    """Around each "@": back to the start of the run of characters a local part can hold,
    on to the end of the run a domain can hold (an address may be longer than the RFC
    allows, and the whole-text regex would mask all of it)."""
    return merged([_email_span(text, at) for at in _positions(text, "@")])


def _positions(text: str, char: str) -> Iterator[int]:
    at = text.find(char)
    while at >= 0:
        yield at
        at = text.find(char, at + 1)


def _email_span(text: str, at: int) -> tuple[int, int]:
    # Back over the characters a local part can hold (\w is isalnum() or "_"): matched on
    # the reversed text before the "@", a window at a time, instead of a step per character.
    lo, window = at, 64
    while True:
        start = max(0, lo - window)
        run = _LOCAL_RUN.match(text[start:lo][::-1])
        lo -= run.end() if run else 0
        if lo > start or start == 0:
            break
        window *= 4  # the run reached the window's edge: it may go on
    domain = _DOMAIN_RUN.match(text, at + 1)
    return lo, min(len(text), (domain.end() if domain else at + 1) + 2)


def _sub_in(pattern: re.Pattern[str], text: str, windows: list[tuple[int, int]]) -> str:
    pieces: list[str] = []
    done = 0
    for lo, hi in windows:
        for match in pattern.finditer(text, max(lo, done), hi):
            pieces += (text[done : match.start()], MASK)
            done = match.end()
    pieces.append(text[done:])
    return "".join(pieces)


def scrub_patterns(text: str) -> str:
    """Nine digits after "SSN", read on the text as sent; then the SSN and phone shapes and
    e-mail addresses, each searched only where one can be; and the names of relatives and
    employers (``freetext.relative_spans``). Together they cover every SSN, phone and e-mail
    span detection reports (tests/unit/test_identifiers.py). A text that is not its own
    normal form (entities, zero-width characters, fullwidth digits) is searched in that form
    and masked as sent."""
    form = normalised(text)
    if form is not None:
        return mask_spans(text, form.spans(_pattern_spans(form.text)))
    return _scrub_own_form(text)


def _scrub_own_form(text: str) -> str:
    """``scrub_patterns`` of a text that is its own normal form."""
    spans = context_ssn_spans(text) + relative_spans(text)
    if spans:
        text = mask_spans(text, spans)
    windows = _number_windows(text)
    if windows:
        text = _sub_in(_NUMBER_PATTERN, text, windows)
    if "@" in text:
        text = _sub_in(EMAIL_SHAPE, text, _email_windows(text))
    return text


def _pattern_spans(text: str) -> list[Span]:
    """Every span ``scrub_patterns`` masks, found on one text."""
    spans = context_ssn_spans(text) + relative_spans(text)
    for lo, hi in _number_windows(text):
        spans += [m.span() for m in _NUMBER_PATTERN.finditer(text, lo, hi)]
    if "@" in text:
        for lo, hi in _email_windows(text):
            spans += [m.span() for m in EMAIL_SHAPE.finditer(text, lo, hi)]
    return spans


def has_pattern(text: str) -> bool:
    """Is anything left that ``scrub_patterns`` would mask?"""
    form = normalised(text)
    if form is not None and _has_pattern_as_written(form.text):
        return True
    return _has_pattern_as_written(text)


def _has_pattern_as_written(text: str) -> bool:
    # One normalisation only, as scrubbing does: a normal form can decode again ("&amp;amp;")
    # and recursing would follow it as deep as a hostile text nests it.
    return (
        any(_NUMBER_PATTERN.search(text, lo, hi) for lo, hi in _number_windows(text))
        or any(EMAIL_SHAPE.search(text, lo, hi) for lo, hi in _email_windows(text))
        or bool(context_ssn_spans(text))
        or bool(relative_spans(text))
    )


def mask_spans(text: str, spans: list[Span]) -> str:
    """Every character of every span replaced, each run of overlapping spans by one mask."""
    pieces: list[str] = []
    done = 0
    for start, end in merged(sorted(spans)):
        if end <= done:
            continue
        pieces += (text[done : max(start, done)], MASK)
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


_NON_DIGITS = re.compile(r"\D")
# What a number written with separators (SSN, phone) holds besides its digits.
_NUMBER_SEPARATORS = "-. ()/+"
_NUMBER_CHARS = re.compile(rf"[\d{re.escape(_NUMBER_SEPARATORS)}]")
_NUMBER_START = frozenset(_NUMBER_SEPARATORS)  # with the digits (\d is str.isdecimal)
_ASCII_NUMBER_CHARS = "0123456789" + _NUMBER_SEPARATORS  # _NUMBER_CHARS, for ASCII text
_DROP_SEPARATORS = str.maketrans("", "", _NUMBER_SEPARATORS)


# Notes spell a street suffix either way: abbreviation → full name, full name → the usual
# abbreviation.
_STREET_SUFFIXES = {short: full for full, shorts in STREET_SUFFIXES.items() for short in shorts}
_STREET_ABBREVIATIONS = {full: shorts[0] for full, shorts in STREET_SUFFIXES.items() if shorts}


def street_spellings(line: str) -> set[str]:
    """ "123 Juniper Hollow Rd" → also "Juniper Hollow Rd", "… Road" (and Road → Rd): a note
    says "lives on Juniper Hollow Road" as often as it copies the registration form."""
    words = line.split()
    if len(words) < 2:
        return set()
    forms = {" ".join(words)}
    if any(ch.isdigit() for ch in words[0]) and len(words) >= 3:
        forms.add(" ".join(words[1:]))  # the street without the house number
    for form in list(forms):
        head, _, last = form.rpartition(" ")
        key = last.rstrip(".").lower()
        other = _STREET_SUFFIXES.get(key) or _STREET_ABBREVIATIONS.get(key)
        if head and other:
            forms.add(f"{head} {other}")
    return forms


def worth_matching(value: str) -> bool:
    """Is a removed value specific enough to scrub from (and search for in) free text?
    "TEST" as a given name, or a 2-digit number, would hit ordinary clinical text."""
    if len(value) <= _LONGEST_COMMON and value.upper() in _COMMON:
        return False
    if value.isdigit() and len(value) < _MIN_DIGITS:
        return False
    return len(value) >= _MIN_LENGTH


class ContextScrubber:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lowered: set[str] = set()
        self._index: ValueIndex | None = None  # of _lowered, made when many are searched
        self._indexed = 0  # how many values it was made of (values are only ever added)

    def add(self, value: str) -> None:
        if value in self._values:
            return  # a message repeats its values (name and address in PID, NK1, GT1, IN1)
        value = value.strip()
        if worth_matching(value):
            self._values.add(value)
            self._lowered.add(value.lower())

    def add_address_line(self, value: str) -> None:
        """A street line and its other spellings (only lines shaped like a street vary)."""
        self.add(value)
        for spelling in street_spellings(value):
            self.add(spelling)

    def add_number(self, value: str) -> None:
        """A value, and for numbers written with separators (SSN, phone) its bare digits."""
        self.add(value)
        if len(value) < 7 or not (value[0].isdecimal() or value[0] in _NUMBER_START):
            return  # too short to hold the 7 digits below, or not a number at all
        if value.isascii():  # the same test without two regular expressions
            if value.strip(_ASCII_NUMBER_CHARS):
                return  # something besides digits and separators
            digits = value.translate(_DROP_SEPARATORS)
        else:
            if _NUMBER_CHARS.sub("", value):
                return
            digits = _NON_DIGITS.sub("", value)
        if len(digits) >= 7:
            self.add(digits)
            if len(digits) == 11 and digits.startswith("1"):
                self.add(digits[1:])

    def add_date(self, value: str) -> None:
        """A date (HL7 TS or ISO): its usual spellings are scrubbed too."""
        digits = _NON_DIGITS.sub("", value)[:8]
        if len(digits) == 8:
            year, month, day = digits[:4], digits[4:6], digits[6:]
            m, d, yy = int(month), int(day), year[2:]
            month_name = MONTH_NAMES[m - 1] if 1 <= m <= 12 else ""
            numeric = (
                digits,
                f"{year}-{month}-{day}",
                f"{month}/{day}/{year}",
                f"{m}/{d}/{year}",
                f"{month}/{day}/{yy}",
                f"{m}/{d}/{yy}",
                f"{day}.{month}.{year}",
            )
            named = (
                f"{month_name} {d}, {year}",
                f"{d} {month_name} {year}",
                f"{month_name[:3]} {d}, {year}",
            )
            self._values.update(numeric)
            self._values.update(named)
            self._lowered.update(numeric)  # digits and punctuation: their own lower case
            self._lowered.update(s.lower() for s in named)

    def values(self) -> set[str]:
        return set(self._values)

    def lowered_values(self) -> set[str]:
        """The values, lower-cased (as ``scrub`` and ``matches`` compare them)."""
        return set(self._lowered)

    def is_identifier(self, value: str) -> bool:
        """Is this whole value one of the learned identifiers?"""
        return value.strip().lower() in self._lowered

    def _searched(self) -> set[str] | ValueIndex:
        lowered = self._lowered
        if len(lowered) <= _MANY_VALUES:
            return lowered
        if self._index is None or self._indexed != len(lowered):
            self._index, self._indexed = ValueIndex(lowered), len(lowered)
        return self._index

    def matches(self, text: str) -> bool:
        return find_values(text, self._searched())

    def scrub(self, text: str) -> str:
        """SSN/phone/e-mail shapes, relatives' names and the learned values masked."""
        form = normalised(text)
        if form is not None:  # found in the normal form, masked in the text as sent
            spans = _pattern_spans(form.text)
            hits = _present_in(form.text.lower(), self._searched())
            if hits:
                spans += [m.span() for m in _cached_pattern(frozenset(hits)).finditer(form.text)]
            return mask_spans(text, form.spans(spans))
        text = _scrub_own_form(text)
        hits = _present_in(text.lower(), self._searched())
        return mask_values(text, hits) if hits else text

    def scrub_pieces(self, pieces: list[str], separator: str) -> dict[int, str]:
        """``scrub`` of every piece, as {index: scrubbed} for the pieces it changes. The
        pieces are scrubbed as one text joined by ``separator``: no pattern, value or token
        boundary reaches across a character that is not a token character and that none of
        them holds, so the result is the same as piece by piece, for one pass of each search
        instead of one per piece. The separator is a control character (no pattern holds
        one); where a piece holds it, piece by piece."""
        joined = separator.join(pieces)
        if separator.isprintable() or joined.count(separator) != len(pieces) - 1:
            return self._scrub_each(pieces)
        scrubbed = self.scrub(joined)
        if scrubbed == joined:
            return {}
        after = scrubbed.split(separator)
        if len(after) != len(pieces):  # a learned value held the separator: be exact
            return self._scrub_each(pieces)
        pairs = enumerate(zip(after, pieces, strict=True))
        return {i: new for i, (new, old) in pairs if new != old}

    def _scrub_each(self, pieces: list[str]) -> dict[int, str]:
        changed = {i: self.scrub(piece) for i, piece in enumerate(pieces)}
        return {i: new for i, new in changed.items() if new != pieces[i]}


def searched_values(originals: Iterable[str]) -> set[str]:
    """The removed values verification searches the output for, lower-cased: long enough,
    and specific enough to scrub (see ``worth_matching``)."""
    return {v.strip().lower() for v in originals if len(v) >= MIN_SEARCHED and worth_matching(v)}


def leftover(output: str, originals: Iterable[str]) -> bool:
    """Does any removed identifier value still occur in the output, as a whole token?"""
    return find_values(output, searched_values(originals))
