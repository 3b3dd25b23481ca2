"""The identifier shapes, defined once for detection and redaction alike.

Detection (``phi.freetext``, ``phi.fields``) decides *whether* a text identifies a patient;
redaction (``phi.scrub``) masks what must not leave and verification checks it is gone. Both
read their SSNs, phone numbers, e-mail addresses, record numbers, written dates, ZIP codes,
states and street suffixes from here, so the two cannot drift apart: every SSN, phone and
e-mail span ``*_spans`` reports is masked by the scrubber (a property test holds them to it).

Two strengths of the shapes live side by side on purpose:
- ``ssn_spans`` / ``phone_spans`` / ``email_spans`` are what *counts* as an identifier
  (SSA-valid SSNs, NANP numbers, standing alone): detection must not call a lab value PHI;
- ``SSN_SHAPE`` / ``PHONE_SHAPE`` / ``EMAIL_SHAPE`` are what *might be* one, and cover every
  span of the first kind: the scrubber masks these, and the SSNs ``context_ssn_spans`` finds
  after the word "SSN" (masking an order number that looks like a phone costs nothing;
  leaving a phone costs much).

Speed: every pattern is precompiled and linear (bounded repetitions, anchored at keyword or
digit positions with an ``endpos``); each finder first looks for a cheap tail or character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

Span = tuple[int, int]

# How far after a context keyword ("DOB", "SSN", "MRN") the value may start.
CONTEXT_REACH = 32
DIGIT = re.compile(r"\d")


# -- helpers every detector uses --------------------------------------------------------------
def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, so every index in the result is the same character's
    index in ``text`` (``str.lower`` can change the length: "İ" becomes two characters).
    Keyword patterns run case-sensitively on this copy: several times faster than IGNORECASE."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def keywords(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, keeping matches that start a word. A leading ``\\b`` in the
    pattern would do the same but would cost the regex its fast literal-prefix scan, so
    keyword patterns start with their literal words instead."""
    for m in pattern.finditer(text):
        start = m.start()
        if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"):
            yield m


def standalone(pattern: re.Pattern[str], text: str, joiners: str) -> Iterator[re.Match[str]]:
    """Matches not glued to a preceding word character or one of ``joiners``: a number inside
    a longer number, code or path is not an SSN or a phone. The same as a leading negative
    lookbehind, which would cost the regex its fast first-character scan; after a rejected
    match the search resumes one character later, so nothing a lookbehind finds is lost."""
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        start = m.start()
        before = text[start - 1] if start else " "
        if before.isalnum() or before == "_" or before in joiners:
            pos = start + 1
            continue
        yield m
        pos = max(m.end(), start + 1)


def merged(spans: Iterable[Span]) -> list[Span]:
    """Spans in ascending start order, overlapping ones joined."""
    windows: list[Span] = []
    for lo, hi in spans:
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    return windows


# Every SSN and phone number ends with a digit, a separator and four digits: its "tail".
_TAIL_AT = re.compile(r"(?=\d[ .-]\d{4})")
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_TAIL_SPELLINGS = (b"0 0000", b"0-0000", b"0.0000")


def number_tails(text: str) -> list[int]:
    """Where ``_TAIL_AT`` matches, ascending. A look-ahead pattern is tried at every position
    by the regex engine; for ASCII text, three byte searches of the text with its digits
    made alike find the same positions for a fraction of the cost."""
    if not text.isascii():
        return [m.start() for m in _TAIL_AT.finditer(text)]
    alike = text.encode("ascii").translate(_ZERO_DIGITS)
    found: list[int] = []
    for spelling in _TAIL_SPELLINGS:
        at = alike.find(spelling)
        while at != -1:
            found.append(at)
            at = alike.find(spelling, at + 1)
    found.sort()
    return found


def _near_tails(pattern: re.Pattern[str], text: str, joiners: str, before: int) -> list[Span]:
    """``standalone(pattern, text, joiners)`` where every match ends with a number tail and
    starts at most ``before`` characters before it: searched only in windows around the
    tails (a pattern that starts with an optional group defeats the regex engine's fast
    scan, so a whole 2 KB message would cost it a try at every position). A window reaches
    two characters past the tail, for the patterns' look-aheads."""
    size = len(text)
    spans: list[Span] = []
    done = 0
    for lo, hi in merged([(max(0, t - before), min(size, t + 8)) for t in number_tails(text)]):
        pos = max(lo, done)
        while (m := pattern.search(text, pos, hi)) is not None:
            start = m.start()
            previous = text[start - 1] if start else " "
            if previous.isalnum() or previous == "_" or previous in joiners:
                pos = start + 1
                continue
            spans.append((start, m.end()))
            pos = done = max(m.end(), start + 1)
    return spans


def mentions(text: str, words: tuple[str, ...]) -> bool:
    """A substring test that lets a keyword pattern's pass be skipped altogether."""
    return any(w in text for w in words)


def words(text: str) -> list[str]:
    """A word list written as prose (states, street suffixes): easier to read and review."""
    return text.split()


# -- calendar, places -------------------------------------------------------------------------
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Every name and its three-letter abbreviation (and "Sept"), lower case: detection runs
# keyword patterns on ascii_lower() text, or with IGNORECASE.
MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
STATES = words(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI AS MP"
)
STATE = "(?:" + "|".join(STATES) + ")"
# A ZIP code, ZIP+4 with or without its dash (HL7 XAD-5 often carries nine bare digits).
ZIP_PLUS4 = r"(?:-?\d{4})?"
ZIP = r"\d{5}" + ZIP_PLUS4

# USPS street suffixes (Publication 28, the common ones): full name → abbreviations, the
# usual one first. Words that are ordinary nouns in operations text (Station, Center, Park,
# Point) are left out on purpose: detection would read "5 Main Center" as an address.
STREET_SUFFIXES: dict[str, tuple[str, ...]] = {
    "street": ("st",),
    "avenue": ("ave", "av"),
    "road": ("rd",),
    "boulevard": ("blvd",),
    "drive": ("dr",),
    "lane": ("ln",),
    "court": ("ct",),
    "place": ("pl",),
    "terrace": ("ter",),
    "circle": ("cir",),
    "parkway": ("pkwy",),
    "highway": ("hwy",),
    "way": (),
    "trail": ("trl",),
    "crescent": ("cres",),
    "square": ("sq",),
    "pike": (),
    "alley": ("aly",),
    "loop": (),
    "expressway": ("expy",),
    "turnpike": ("tpke",),
    "freeway": ("fwy",),
    "causeway": ("cswy",),
    "crossing": ("xing",),
    "commons": (),
    "bend": ("bnd",),
    "cove": ("cv",),
    "plaza": ("plz",),
}
# Every spelling, case-insensitive, ending a word (an optional period after an abbreviation).
STREET_SUFFIX = (
    "(?i:"
    + "|".join(s for full, short in STREET_SUFFIXES.items() for s in (full, *short))
    + r")\b\.?"
)


# -- SSN --------------------------------------------------------------------------------------
# Separated SSN: the same separator twice; not part of a longer number, date or code.
SSN_SEPARATED = re.compile(r"(\d{3})([- ])(\d{2})\2(\d{4})(?![\w\-/]|\.\d)")
SSN_CONTEXT = re.compile(r"(?:ssn|ss\#|ss[ \t]*(?:no|num)|soc(?:ial)?\.?[ \t]*sec(?:urity)?)")
_SSN_WORDS = ("ss", "soc")
# Between the keyword and the number: anything but a digit, a line end or "]" — the end of
# the scrubber's mask, so that a masked number never becomes the context of the next one.
_SSN_AFTER_CONTEXT = re.compile(r"[^\d\n\]]{0,24}?(\d{3})[- ]?(\d{2})[- ]?(\d{4})(?!\d)")
_SSN_TAIL = re.compile(r"\d\d[- ]?\d{4}")
# Anything shaped like an SSN, valid or not: masked by the scrubber.
SSN_SHAPE = re.compile(r"\b\d{3}([- ])\d{2}\1\d{4}\b")


# How far before its tail (the digit before the last separator) a match may start: "123-45-"
# and "+1 (555) 12" (the longest phone prefix).
_SSN_BEFORE_TAIL = 6
_PHONE_BEFORE_TAIL = 12


def _valid_ssn_text(ssn: str) -> bool:
    return valid_ssn(ssn[0:3], ssn[4:6], ssn[7:11])


def valid_ssn(area: str, group: str, serial: str) -> bool:
    """SSA rules: area 001-899 except 666, group 01-99, serial 0001-9999."""
    return area not in ("000", "666") and area < "900" and group != "00" and serial != "0000"


def ssn_spans(text: str, low: str | None = None) -> list[Span]:
    """Valid SSNs written with separators, and nine digits where the text says "SSN" just
    before them. ``low``: ``ascii_lower(text)`` when the caller has it already."""
    if not _SSN_TAIL.search(text):
        return []
    spans = [
        span
        for span in _near_tails(SSN_SEPARATED, text, ".-/", _SSN_BEFORE_TAIL)
        if _valid_ssn_text(text[span[0] : span[1]])
    ]
    return spans + context_ssn_spans(text, low)


def context_ssn_spans(text: str, low: str | None = None) -> list[Span]:
    """Nine digits (separated or not) where the text says "SSN" just before them: the one
    SSN form no shape can tell from another number."""
    low = ascii_lower(text) if low is None else low
    spans: list[Span] = []
    for kw in keywords(SSN_CONTEXT, low) if mentions(low, _SSN_WORDS) else ():
        m = _SSN_AFTER_CONTEXT.match(text, kw.end(), kw.end() + CONTEXT_REACH + 11)
        if m and valid_ssn(m.group(1), m.group(2), m.group(3)):
            spans.append((m.start(1), m.end()))
    return spans


# -- phone ------------------------------------------------------------------------------------
# NANP: area code and exchange start with 2-9. Separators required (a bare ten-digit run is as
# likely an order number); never inside a longer run of digits, dots or dashes.
PHONE_NANP = re.compile(
    r"(?:\+?1[ .\-]?)?"
    r"(?:\([2-9]\d\d\)[ \t]?|[2-9]\d\d[ .\-])[2-9]\d\d[ .\-]\d{4}(?![\w\-/]|\.\d)"
)
# Every phone ends with exchange-separator-line. This starts with a digit class, so the regex
# engine scans for it fast; the full pattern (optional prefix first) only runs where it occurs.
_PHONE_TAIL = re.compile(r"\d\d\d[ .\-]\d{4}")
# Anything shaped like a ten-digit phone number: masked by the scrubber (every NANP number
# detection reports is one).
PHONE_SHAPE = re.compile(r"(?<!\d)(?:\+?1[ .-]?)?\(?\d{3}\)?[ .\t-]?\d{3}[ .-]\d{4}(?!\d)")


def phone_spans(text: str) -> list[Span]:
    if not _PHONE_TAIL.search(text):
        return []
    return _near_tails(PHONE_NANP, text, ".-/+", _PHONE_BEFORE_TAIL)


# -- e-mail -----------------------------------------------------------------------------------
# Matched around each "@" within RFC 5321 lengths, so a megabyte of word characters costs one
# pass, not one pass per start position.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}$")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.)+[A-Za-z]{2,24}(?![\w\-])")
_MAX_AT_SIGNS = 10_000
# Any address shape, without length limits: masked by the scrubber (it covers every address
# detection reports, or the part of it after a "%").
EMAIL_SHAPE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


def email_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    at = text.find("@")
    seen = 0
    while at != -1 and seen < _MAX_AT_SIGNS:
        seen += 1
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1, at + 256)
        if local and domain and not local.group().startswith("."):
            spans.append((local.start(), domain.end()))
        at = text.find("@", at + 1)
    return spans


def pattern_spans(text: str) -> list[Span]:
    """Every SSN, phone and e-mail span detection reports in ``text``."""
    spans = ssn_spans(text) + phone_spans(text)
    if "@" in text:
        spans += email_spans(text)
    return spans


# -- record numbers ---------------------------------------------------------------------------
# The token after "MRN", "patient id", "account #": letters, digits and dashes.
RECORD_TOKEN = re.compile(
    r"[ \t]*\.?[ \t]*(?:\#|no\.?|number|num)?[ \t]*[:#=]?[ \t]*"
    r"(?P<token>[A-Za-z0-9][A-Za-z0-9\-]{3,29})(?![\w\-])",
    re.IGNORECASE,
)
# A record number holds at least this many digits ("MRN pending" is not one).
MIN_RECORD_DIGITS = 5
# A named identifier's value (mrn=, memberId=): one token, a digit somewhere (checked apart).
ID_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_.^|]{2,63}$")


# -- dates ------------------------------------------------------------------------------------
# A date as people write it after "DOB" or "born": numeric (US or European order, 2- or
# 4-digit year), ISO, compact, or with the month's name. Every spelling the scrubber
# generates for a known date (phi.scrub.ContextScrubber.add_date) is one of these.
WRITTEN_DATE = re.compile(
    rf"""[^\w\n]{{0,{CONTEXT_REACH}}}?(?:
      (?P<m1>\d{{1,2}})[/.\-](?P<d1>\d{{1,2}})[/.\-](?P<y1>\d{{4}}|\d{{2}})(?!\d)
    | (?P<y2>\d{{4}})[/.\-](?P<m2>\d{{1,2}})[/.\-](?P<d2>\d{{1,2}})(?!\d)
    | (?P<y3>\d{{4}})(?P<m3>\d{{2}})(?P<d3>\d{{2}})(?!\d)
    | (?P<mn4>{MONTH})\.?[ \t]+(?P<d4>\d{{1,2}})(?:st|nd|rd|th)?,?[ \t]+(?P<y4>\d{{4}})(?!\d)
    | (?P<d5>\d{{1,2}})(?:st|nd|rd|th)?[ \t]+(?P<mn5>{MONTH})\.?,?[ \t]+(?P<y5>\d{{4}})(?!\d)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# A named date value (dob=, birthDate=): ISO or compact, or US/European numeric, with an
# optional time.
DATE_VALUE = re.compile(
    r"^(?:\d{4}-?\d{2}-?\d{2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4})(?:[T ][\d:.+Z-]*)?$"
)
# The year, month and day at the start of an ISO date, FHIR dateTime or HL7 TS/DTM.
ISO_DATE_PREFIX = re.compile(r"^(\d{4})(?:-?(\d{2}))?(?:-?(\d{2}))?")
YEAR = re.compile(r"^\d{4}$")
