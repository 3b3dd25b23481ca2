"""PHI in text that has no healthcare format: CSV/TSV exports, e-mail bodies, log lines, URL
query strings, header values, JSON string values.

Each detector reports a ``Hit`` (category, span, strength); ``scan_text`` turns hits into
``Finding``s (category and character span, never the value) and applies the threshold that
decides ``contains_phi`` (``docs/phi-detection.md``, "Free text"):

- one **strong** identifier is enough: a valid SSN, an MRN / patient id / chart number in
  context, a date of birth in context, a name labelled as a patient's;
- otherwise a **person name in context** (``Name:``, ``Mr./Mrs./Ms.``) together with a
  **weak** identifier of another kind (phone, e-mail, street address, ZIP, account number)
  within ``WINDOW`` characters;
- or a table whose header names identifying columns and whose rows fill them.

Phone, e-mail and address without a person (an e-mail signature, a vendor's support line) are
reported but are not PHI on their own. ``Dr.`` names are clinicians: reported, never counted.

Speed: every pattern is precompiled and linear (bounded repetitions, matching anchored at
keyword or digit positions with an ``endpos``); texts without a digit skip the numeric
detectors, texts without ``@`` skip e-mail.
"""

from __future__ import annotations

import bisect
import csv
import enum
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.model import Category, Finding
from gateway.phi.normalise import normalised
from gateway.phi.patterns import (
    CONTEXT_REACH,
    DIGIT,
    MIN_RECORD_DIGITS,
    RECORD_TOKEN,
    STATE,
    STREET_SUFFIX,
    WRITTEN_DATE,
    ZIP,
    ascii_lower,
    email_spans,
    keywords,
    mentions,
    merged,
    phone_spans,
    ssn_spans,
    standalone,
    words,
)

C = Category

# Two weak identifiers count together when their starts are this close: about one record of a
# CSV export or a few lines of a note. A signature block at the end of a long e-mail does not
# pair with a name mentioned in the first paragraph.
WINDOW = 300
# Findings kept per scan: enough for the audit row's category counts to be meaningful, bounded
# so a 10 MB export does not produce a million Finding objects.
MAX_FINDINGS = 256
# Only so much of a text is searched for a CSV header.
_HEADER_LINES = 5
_HEADER_MAX_CHARS = 2048
_TABLE_SAMPLE_ROWS = 50
_TABLE_SAMPLE_CHARS = 65_536


class Strength(enum.IntEnum):
    """How much one hit weighs towards "this text identifies a patient"."""

    INFO = 0  # reported, never counted (a clinician's name)
    WEAK = 1  # counts only next to a person name (phone, e-mail, address, account)
    ANCHOR = 2  # a person's name: PHI together with one weak identifier of another kind
    STRONG = 3  # PHI on its own (SSN, MRN, DOB, a patient's name)


@dataclass(frozen=True, slots=True)
class Hit:
    category: Category
    start: int
    end: int
    strength: Strength


@dataclass(frozen=True, slots=True)
class TextScan:
    """What ``scan_text`` found. ``rule`` names the threshold rule that fired ("strong",
    "name+weak", "table"), or "" when the text is not PHI; it never holds payload content."""

    findings: tuple[Finding, ...] = ()
    contains_phi: bool = False
    rule: str = ""


# ---------------------------------------------------------------------------------------------
# Names: the pieces of patterns
# ---------------------------------------------------------------------------------------------

# A capitalised name word: Jane, O'Brien, McDonald, Smith-Jones.
_NAME_WORD = r"(?:[A-Z]')?[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"
_CAPS_WORD = r"(?:[A-Z]')?[A-Z]{2,}(?:['-][A-Z]{2,})?"
# "Jane Doe", "Jane Q. Doe", "Doe, Jane"; all caps only in the "DOE, JANE" shape.
_FULL_NAME = (
    rf"(?P<name>{_NAME_WORD}(?:[ \t]+[A-Z]\.?)?[ \t]+{_NAME_WORD}"
    rf"|{_NAME_WORD},[ \t]*{_NAME_WORD}|{_CAPS_WORD},[ \t]*{_CAPS_WORD})"
)

# ---------------------------------------------------------------------------------------------
# Numbers and addresses by their shape: SSN, phone, e-mail (phi.patterns)
# ---------------------------------------------------------------------------------------------


def _ssns(text: str, low: str) -> list[Hit]:
    return [Hit(C.SSN, a, b, Strength.STRONG) for a, b in ssn_spans(text, low)]


def _phones(text: str) -> list[Hit]:
    return [Hit(C.PHONE, a, b, Strength.WEAK) for a, b in phone_spans(text)]


def _emails(text: str) -> list[Hit]:
    return [Hit(C.EMAIL, a, b, Strength.WEAK) for a, b in email_spans(text)]


# ---------------------------------------------------------------------------------------------
# Dates of birth, in context
# ---------------------------------------------------------------------------------------------

_DOB_CONTEXT = re.compile(
    r"(?:d\.?o\.?b\b\.?|date[ \t]+of[ \t]+birth|birth[ \t_-]*date|birthday|born(?:[ \t]+on)?"
    r"|birth_?dt)",
)
_DOB_WORDS = ("dob", "d.o.b", "birth", "born")


def _plausible_date(match: re.Match[str]) -> bool:
    """Month and day in range (either order for the numeric US/European spellings), and a
    four-digit year a living person could be born in."""
    g = match.groupdict()
    if g["m1"]:
        a, b = int(g["m1"]), int(g["d1"])
        return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)
    for m, d, y in (("m2", "d2", "y2"), ("m3", "d3", "y3")):
        if g[m]:
            return 1 <= int(g[m]) <= 12 and 1 <= int(g[d]) <= 31 and 1880 <= int(g[y]) <= 2100
    day = g["d4"] or g["d5"]
    return day is not None and 1 <= int(day) <= 31


def _births(text: str, low: str) -> list[Hit]:
    hits = []
    for kw in keywords(_DOB_CONTEXT, low) if mentions(low, _DOB_WORDS) else ():
        m = WRITTEN_DATE.match(text, kw.end(), kw.end() + CONTEXT_REACH + 24)
        if m and _plausible_date(m):
            hits.append(Hit(C.DATE, kw.start(), m.end(), Strength.STRONG))
    return hits


# ---------------------------------------------------------------------------------------------
# Record numbers in context: MRN, patient id, chart number (strong); account (weak)
# ---------------------------------------------------------------------------------------------

_RECORD_CONTEXT = re.compile(
    r"""(?:
      (?P<mrn>mrn(?![a-z])|medical[ \t_-]*record(?:[ \t_-]*(?:number|num|no))?
        |patient[ \t_-]*(?:id|identifier|number|num|no)\b|pt[ \t_-]*id\b
        |chart[ \t_-]*(?:number|num|no\b|\#|id\b))
    | (?P<acct>acct|account(?:[ \t_-]*(?:number|num|no))?)
    )""",
    re.VERBOSE,
)
_RECORD_WORDS = ("mrn", "medical", "patient", "pt", "chart", "acct", "account")


def _records(text: str, low: str) -> list[Hit]:
    hits = []
    for kw in keywords(_RECORD_CONTEXT, low) if mentions(low, _RECORD_WORDS) else ():
        m = RECORD_TOKEN.match(text, kw.end(), kw.end() + CONTEXT_REACH + 30)
        if not m or sum(ch.isdigit() for ch in m.group("token")) < MIN_RECORD_DIGITS:
            continue
        if kw.group("mrn"):
            hits.append(Hit(C.MRN, m.start("token"), m.end(), Strength.STRONG))
        else:
            hits.append(Hit(C.ACCOUNT_NUMBER, m.start("token"), m.end(), Strength.WEAK))
    return hits


# ---------------------------------------------------------------------------------------------
# Street addresses and ZIP codes
# ---------------------------------------------------------------------------------------------

_STREET_WORD = r"(?:[A-Z][A-Za-z'\-]*|\d{1,3}(?:st|nd|rd|th))"
_UNIT = r"(?:,?[ \t]+(?i:apt|apartment|unit|suite|ste|\#)\.?[ \t]*\#?[A-Za-z0-9\-]{1,6})?"
_ADDRESS = re.compile(
    rf"\d{{1,6}}[A-Za-z]?[ \t]+(?:(?:[NSEW]\.?|North|South|East|West)[ \t]+)?"
    rf"(?:{_STREET_WORD}[ \t]+){{1,4}}{STREET_SUFFIX}{_UNIT}"
)
# ", OH 44004" first (it starts with a literal comma, so the scan is fast), then the city
# words just before it.
_STATE_ZIP = re.compile(rf",[ \t]*{STATE}[ \t]+{ZIP}(?!\d)")
_CITY_BEFORE = re.compile(rf"(?<![\w'])(?:{_NAME_WORD}[ \t]+){{0,2}}{_NAME_WORD}$")
_ZIP_CONTEXT = re.compile(
    rf"(?:zip(?:[ \t_-]*code)?|postal[ \t_-]*code)[ \t]*[:#=]?[ \t]*{ZIP}(?!\d)",
)

_ZIP_WORDS = ("zip", "postal")


_ADDRESS_START = re.compile(r"\d[A-Za-z]?[ \t]+[A-Z]")


def _addresses(text: str, low: str) -> list[Hit]:
    hits = (
        [
            Hit(C.GEOGRAPHY, m.start(), m.end(), Strength.WEAK)
            for m in standalone(_ADDRESS, text, ".-/:#")
        ]
        if _ADDRESS_START.search(text)
        else []
    )
    for m in _STATE_ZIP.finditer(text):
        city = _CITY_BEFORE.search(text, max(0, m.start() - 60), m.start())
        if city:
            hits.append(Hit(C.GEOGRAPHY, city.start(), m.end(), Strength.WEAK))
    hits.extend(
        Hit(C.GEOGRAPHY, m.start(), m.end(), Strength.WEAK)
        for m in (keywords(_ZIP_CONTEXT, low) if mentions(low, _ZIP_WORDS) else ())
    )
    return hits


# ---------------------------------------------------------------------------------------------
# Names in context
# ---------------------------------------------------------------------------------------------

# Capitalised words that follow "Patient", "Name:" or "Mr." in operations text without being a
# name ("Patient Safety Committee", "Patient Access Services", "Name Badge Policy").
NOT_NAMES = frozenset(
    words(
        """
    Access Account Accounts Admin Administration Admission Admissions Advocate Advocacy Affairs
    After All Alert Alerts Ambulatory And Any Appointment Appointments Assessment Assessments
    Assistance Assistant Attendance Audit Audits Bed Beds Behavior Benefits Billing Board Call
    Care Case Cases Census Center Centered Chart Charts Check Classification Clinic Clinical
    Committee Communication Communications Community Complaint Complaints Compliance Concerns
    Condition Consent Contact Coordinator Count Counts Council Dashboard Data Day Days Demographics
    Department Desk Discharge Discharges Documentation Education Eligibility Emergency Encounter
    Encounters Engagement Entry Equipment Escort Evaluation Event Events Experience Facing
    Falls Family Feedback Field Financial First Flow For Form Forms Friday From Guide Handbook
    Handoff Health Help History Home Hours Identification Identity Information Intake Journey
    Kiosk Label Labels Last List Lists Load Log Logistics Management Manager Matching Meal Meals
    Medication Messages Mix Mobility Monday Monitoring Name Names Navigation Navigator Needs Note
    Notes Number Numbers Nutrition Of Office Officer Online Operations Outcomes Overview Owner
    Placement Policy Portal Preference Preferences Privacy Program Programs Quality Queue Ratio
    Ratios Record Records Registration Relations Report Reports Representative Request Requests
    Review Rights Risk Room Rooms Safety Satisfaction Saturday Schedule Scheduling Score Scores
    Screening Service Services Sitter Sitters Status Summary Sunday Support Survey Surveys System
    Systems Team Teams The Thursday Tracking Transfer Transfers Transport Transportation Tuesday
    Type Unit Update Updates Volume Volumes Wait Wednesday Wellness Wristband Wristbands Zone
    January February March April May June July August September October November December
    Monitor Monitors Lift Lifts Flow Placement Belongings Valuables Meeting Week Month Year
    Mr Mrs Ms Miss Mx Dr Sir Madam
    Today Tomorrow Yesterday Next Prior Previous New Old Level Levels Acuity Census Tag Tags
    """
    )
)

_PATIENT_LABEL = re.compile(
    r"(?:patient(?:'s)?(?:[ \t]+(?:full[ \t]+)?name)?|pt\.?(?:[ \t]+name)?)[ \t]*[:=#-]?[ \t]*",
)
# Labels that name someone without saying they are the patient; these need a colon or "="
# ("contact Facilities Management" in prose is not a name).
_PERSON_LABEL = re.compile(
    r"(?:full[ \t_-]*name|legal[ \t_-]*name|preferred[ \t_-]*name|name|client|resident|member"
    r"|guarantor"
    r"|subscriber|insured|guardian|spouse|mother|father|next[ \t]+of[ \t]+kin"
    r"|emergency[ \t]+contact|caller)[ \t]*[:=][ \t]*",
)
_PART_LABEL = re.compile(
    r"(?:given|family|first[ \t_-]*name|last[ \t_-]*name|firstname|lastname|surname)"
    r"[ \t]*[:=][ \t]*",
)
_HONORIFIC = re.compile(r"(?P<title>Mrs|Mr|Ms|Miss|Mx|Dr)\b\.?[ \t]+")
_FULL_NAME_RE = re.compile(_FULL_NAME)
_ONE_OR_TWO = re.compile(rf"(?P<name>{_NAME_WORD}(?:[ \t]+{_NAME_WORD})?)(?![\w'])")
_ONE_WORD = re.compile(rf"(?P<name>{_NAME_WORD}|{_CAPS_WORD})(?![\w'])")
_WORDS = re.compile(r"[A-Za-z']+")


def _listed(word: str) -> bool:
    """Is ``word`` one that follows a name label without being a name?"""
    return word.capitalize() in NOT_NAMES or word in NOT_NAMES


def is_name(candidate: str) -> bool:
    """Is none of the words of ``candidate`` one that follows a name label without being a
    name (``Unknown``, ``Hospital``)?"""
    return not any(_listed(w) for w in _WORDS.findall(candidate))


def _name_after(text: str, pos: int, pattern: re.Pattern[str], strength: Strength) -> Hit | None:
    m = pattern.match(text, pos, pos + 80)
    if m and is_name(m.group("name")):
        return Hit(C.NAME, m.start("name"), m.end("name"), strength)
    return None


def _names(text: str, low: str) -> list[Hit]:
    found: list[Hit | None] = []
    if mentions(low, ("pt", "patient")):
        found += [
            _name_after(text, kw.end(), _FULL_NAME_RE, Strength.STRONG)
            for kw in keywords(_PATIENT_LABEL, low)
        ]
    if ":" in text or "=" in text:
        found += [
            _name_after(text, kw.end(), _FULL_NAME_RE, Strength.ANCHOR)
            for kw in keywords(_PERSON_LABEL, low)
        ]
        found += [
            _name_after(text, kw.end(), _ONE_WORD, Strength.ANCHOR)
            for kw in keywords(_PART_LABEL, low)
        ]
    if mentions(text, ("Mr", "Ms", "Miss", "Mx", "Dr")):
        for kw in keywords(_HONORIFIC, text):
            # "Dr. Lee" names a clinician: reported, but a clinician's name with the clinic's
            # phone is a signature, not a patient.
            strength = Strength.INFO if kw.group("title") == "Dr" else Strength.ANCHOR
            found.append(_name_after(text, kw.end(), _ONE_OR_TWO, strength))
    return [hit for hit in found if hit is not None]


# ---------------------------------------------------------------------------------------------
# Relatives, household members and employers: Safe Harbor removes their names too
# ---------------------------------------------------------------------------------------------

# A relation word, then the name: "Spouse Jane Doe", "his wife, Jane", "mother's name is
# Jane Doe", "Emergency contact: DOE, JANE"; or the name, then the relation in brackets or
# after a comma: "Jane Doe (sister)", "Jane Doe, daughter".
_RELATION = (
    r"(?:(?:brother|sister|mother|father|son|daughter)[ \t-]+in[ \t-]+law"  # before "sister"
    r"|spouse|wife|husband|partner|fianc(?:e|\xe9)e?|boyfriend|girlfriend"
    r"|significant[ \t]+other|(?:step|god)?(?:mother|father|son|daughter|child)"
    r"|mom|mum|dad|parents?|sons|daughters|children|kids?|brothers?|sisters?|siblings?|twin"
    r"|grand(?:mother|father|ma|pa|son|daughter|child|parent)s?|aunt|uncle|niece|nephew|cousin"
    r"|guardian|caregiver|care[ \t]*giver|roommate|housemate|neighbou?r|landlord"
    r"|next[ \t]+of[ \t]+kin|nok|emergency[ \t]+contact|contact[ \t]+person|surrogate"
    r"|health[ \t]*care[ \t]+proxy|(?:health[ \t]*care[ \t]+)?power[ \t]+of[ \t]+attorney|poa"
    r"|conservator)"
)
_RELATION_BEFORE = re.compile(
    rf"{_RELATION}(?![a-z])(?:'s)?(?:[ \t]+(?:name[ \t]+is|is[ \t]+named|named|called|is))?"
    r"[ \t]*(?:[:=,(-][ \t]*)?"
)
# The first letters of every word _RELATION starts with.
_RELATION_STARTS = tuple(
    words(
        """
    spouse wife husband partner fianc boyfriend girlfriend significant step god mother father
    son daughter child mom mum dad parent kid brother sister sibling twin grand aunt uncle
    niece nephew cousin guardian care roommate housemate neighb landlord next nok emergency
    contact surrogate health power poa conservator
    """
    )
)
# Employers and schools: "employed by", "works at", "Employer: ...", "attends ... School".
_EMPLOYER = re.compile(
    r"(?:employed[ \t]+(?:by|at|with)|works?[ \t]+(?:at|for)|working[ \t]+(?:at|for)"
    r"|retired[ \t]+from|attends|student[ \t]+at|enrolled[ \t]+(?:at|in)"
    r"|(?:employer|school|daycare|work(?:place)?)[ \t]*(?:name)?[ \t]*[:=])[ \t]+"
)
_EMPLOYER_STARTS = tuple(words("employ work retired attends student enrolled school daycare"))
# The name of an organisation: capitalised words, joined by "of", "and", "&", "the".
_ORG_WORD = r"[A-Z][A-Za-z0-9'.-]*[A-Za-z0-9]"
_ORGANISATION = re.compile(
    rf"(?P<name>{_ORG_WORD}(?:,?[ \t]+(?:(?:of|and|&|the|for)[ \t]+)?{_ORG_WORD}){{0,5}})"
)
# Mixed case only: a relation word followed by capitals in an all-caps note ("MOTHER DIED OF
# MI") is history, not a name. Capitals are a name after a label ("SPOUSE: JANE DOE") or in
# the "DOE, JANE" shape.
_RELATIVE_NAME = re.compile(
    rf"(?P<name>{_CAPS_WORD},[ \t]*{_CAPS_WORD}(?:[ \t]+{_CAPS_WORD})?"
    rf"|{_NAME_WORD},[ \t]*{_NAME_WORD}"
    rf"|{_NAME_WORD}(?:[ \t]+(?:[A-Z]\.[ \t]+)?{_NAME_WORD}){{0,2}})"
)
_LABELLED_CAPS = re.compile(rf"(?P<name>{_CAPS_WORD}(?:[ \t]+{_CAPS_WORD}){{0,2}})(?![\w'])")
# The name before its relation: "Jane Doe (sister)", "Jane Doe, her daughter", "Jane Doe - son".
_JOINED_BEFORE = re.compile(
    r"(?:[ \t]*[(,]|[ \t]+[-\u2013])[ \t]*"
    r"(?:(?:his|her|their|(?:the[ \t]+)?(?:patient|pt)'s)[ \t]+)?$"
)
_NAME_BEFORE = re.compile(
    rf"(?:{_CAPS_WORD},[ \t]*{_CAPS_WORD}|{_NAME_WORD},[ \t]*{_NAME_WORD}"
    rf"|{_NAME_WORD}(?:[ \t]+(?:[A-Z]\.[ \t]+)?{_NAME_WORD}){{0,2}})$"
)
# Capitalised words after a relation word that are not a name: "Mother Baby Unit", "Sister
# Hospital", "Father Unknown", "Parent Education"; checked with NOT_NAMES.
_NOT_RELATIVES = frozenset(
    words(
        """
    Baby Babies Infant Infants Newborn Newborns Child Children Pediatric Pediatrics Neonatal
    Medicine Hospital Hospitals Facility Facilities Site Sites Campus Organization Company
    Unknown Unk None Declined Deceased Living Present Absent Not No Yes Is Was Has Had Will
    Alive Also Only Both He She They His Her Their Its It We Our You Your Are Be At In On
    With Without To Or By As If But So Who Whom Which What When Where Why How
    Dr Doctor Nurse Rn Md Np Pa Law Laws Group Groups Class Classes Support Leave Visit
    Visits Visiting Room Unit Wing Lounge Meeting Meetings Night Nights Care Line Lines Fund
    Association Council Program Network Leader Leaders Medical Ward Wards Died Passed
    History Hx Deceased Diagnosed Age Aged Alzheimer Alzheimers Cancer Diabetes Dementia
    """
    )
)
_ORG_NOT_FIRST = frozenset(
    words(
        """
    The A An This That Home Night Nights Day Days Monday Tuesday Wednesday Thursday Friday
    Saturday Sunday Today Tomorrow Yesterday Noon Morning Evening Least Most Times Full Part
    January February March April May June July August September October November December
    Full-time Part-time Weekend Weekends Remote Remotely Grand Rounds
    """
    )
)
# Attending or enrolled "at" something is a school only when it says so ("attends Grand
# Rounds" is a meeting).
_SCHOOL_WORDS = frozenset(
    words(
        """
    School Elementary Middle High Academy College University Preschool Daycare Kindergarten
    Montessori Institute Prep Preparatory Seminary Conservatory
    """
    )
)
_SCHOOL_ONLY = ("attends", "enrolled")
_NAME_PIECE = re.compile(r"[A-Za-z'.-]+")


def _not_name_word(piece: str) -> bool:
    bare = piece.strip(".").rstrip("'")
    return len(bare) > 1 and (_listed(bare) or bare.capitalize() in _NOT_RELATIVES)


def _leading_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span of the name words from ``start``, up to the first word that is not a name."""
    kept = start
    for word in _NAME_PIECE.finditer(text, start, end):
        if _not_name_word(word.group()):
            break
        kept = word.end()
    return (start, kept) if kept > start else None


def _trailing_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span of the name words that end at ``end``, back to the last word that is not a
    name ("Reviewed With Jane Doe (sister)": Jane Doe)."""
    kept = end
    for word in reversed(list(_NAME_PIECE.finditer(text, start, end))):
        if _not_name_word(word.group()):
            break
        kept = word.start()
    return (kept, end) if kept < end else None


def _word_starts(low: str, stems: tuple[str, ...]) -> list[int]:
    """Where a word starting with one of ``stems`` starts: found by str.find, which is many
    times faster over a long text than a regex alternation of the words."""
    found: set[int] = set()
    for stem in stems:
        at = low.find(stem)
        while at != -1:
            if at == 0 or not (low[at - 1].isalnum() or low[at - 1] == "_"):
                found.add(at)
            at = low.find(stem, at + 1)
    return sorted(found)


def relative_spans(text: str, low: str | None = None) -> list[tuple[int, int]]:
    """Where the names of relatives, household members, employers and schools are in a text
    (``low``: its ``ascii_lower``). Not the patient's own name: those need a label or a
    record, and are found (and removed) as such."""
    if low is None:
        low = ascii_lower(text)
    spans: list[tuple[int, int] | None] = []
    for start in _word_starts(low, _RELATION_STARTS):
        kw = _RELATION_BEFORE.match(low, start)
        if kw is None:
            continue
        at = kw.end()
        m = _RELATIVE_NAME.match(text, at, at + 80)
        if m is None and low[start:at].rstrip()[-1:] in (":", "="):
            m = _LABELLED_CAPS.match(text, at, at + 80)
        if m is not None:
            spans.append(_leading_name(text, m.start("name"), m.end("name")))
        joined = _JOINED_BEFORE.search(low, max(0, start - 40), start)
        if joined is not None:
            before = _NAME_BEFORE.search(text, max(0, joined.start() - 60), joined.start())
            if before is not None:
                spans.append(_trailing_name(text, before.start(), before.end()))
    for start in _word_starts(low, _EMPLOYER_STARTS):
        kw = _EMPLOYER.match(low, start)
        if kw is None:
            continue
        m = _ORGANISATION.match(text, kw.end(), kw.end() + 120)
        if m is None:
            continue
        names = _NAME_PIECE.findall(m.group("name"))
        if names[0] in _ORG_NOT_FIRST:
            continue
        if kw.group().startswith(_SCHOOL_ONLY) and not _SCHOOL_WORDS.intersection(names):
            continue
        spans.append((m.start("name"), m.end("name")))
    return merged(sorted(span for span in spans if span is not None))


def _relatives(text: str, low: str) -> list[Hit]:
    return [Hit(C.NAME, a, b, Strength.ANCHOR) for a, b in relative_spans(text, low)]


# ---------------------------------------------------------------------------------------------
# Tables: a CSV/TSV header naming identifying columns, with rows that fill them
# ---------------------------------------------------------------------------------------------

_COLUMN_KINDS: dict[str, tuple[Category, Strength]] = {}
for _names_, _kind in (
    ("ssn social_security social_security_number ss_number", (C.SSN, Strength.STRONG)),
    (
        "mrn medical_record_number medical_record patient_id patientid pat_id chart chart_number"
        " chart_no",
        (C.MRN, Strength.STRONG),
    ),
    (
        "dob date_of_birth birth_date birthdate birth_dt birthday",
        (C.DATE, Strength.STRONG),
    ),
    ("patient patient_name pt_name", (C.NAME, Strength.STRONG)),
    (
        "name full_name first first_name firstname given given_name last last_name lastname"
        " family family_name surname middle_name",
        (C.NAME, Strength.ANCHOR),
    ),
    (
        "phone telephone tel phone_number home_phone mobile mobile_phone cell cell_phone"
        " work_phone",
        (C.PHONE, Strength.WEAK),
    ),
    ("email e_mail email_address", (C.EMAIL, Strength.WEAK)),
    (
        "address address1 address_1 address_line_1 addr street street_address city zip zipcode"
        " zip_code postal_code",
        (C.GEOGRAPHY, Strength.WEAK),
    ),
    ("account account_number acct acct_no", (C.ACCOUNT_NUMBER, Strength.WEAK)),
):
    for _column in _names_.split():
        _COLUMN_KINDS[_column] = _kind

_HEADER_CELL = re.compile(r"[A-Za-z][A-Za-z0-9 _.#\-]{0,39}")
_COLUMN_CLEAN = re.compile(r"[ .#\-]+")
_DELIMITERS = ",\t;|"
# Every character a header row can hold: _HEADER_CELL's, the delimiters, quotes and the
# blanks strip() removes. A cheap test that rules out prose before the CSV parse.
_HEADER_CHARS = re.compile(r'[A-Za-z0-9_.#\-,;|"\s]*')


@dataclass(frozen=True, slots=True)
class Column:
    index: int
    category: Category
    strength: Strength


def _header_columns(line: str) -> tuple[str, list[Column]] | None:
    """The delimiter and identifying columns of a header row, or None when ``line`` is not
    one (every cell must look like a column name)."""
    if not _HEADER_CHARS.fullmatch(line):
        return None  # a character no header cell, delimiter or quote holds: prose, not a header
    delimiter = max(_DELIMITERS, key=line.count)
    if line.count(delimiter) == 0:
        return None
    try:
        cells = next(csv.reader([line], delimiter=delimiter))
    except csv.Error:
        return None
    if not all(_HEADER_CELL.fullmatch(cell.strip()) for cell in cells):
        return None
    columns = []
    for index, cell in enumerate(cells):
        key = _COLUMN_CLEAN.sub("_", cell.strip().lower()).strip("_")
        kind = _COLUMN_KINDS.get(key)
        if kind:
            columns.append(Column(index, *kind))
    return (delimiter, columns) if columns else None


def _filled(value: str, column: Column) -> bool:
    """Does a cell hold something of the column's kind? (A "name" column of product names
    does not become PHI: names must be capitalised words.)"""
    value = value.strip()
    if column.category is C.NAME:
        return _NAME_CELL.fullmatch(value) is not None and is_name(value)
    if column.category is C.EMAIL:
        return "@" in value
    if column.category in (C.SSN, C.MRN, C.DATE, C.PHONE, C.ACCOUNT_NUMBER):
        return DIGIT.search(value) is not None
    return bool(value)


_NAME_CELL = re.compile(
    rf"{_NAME_WORD}(?:[ \t]+(?:[A-Z]\.?|{_NAME_WORD})){{0,3}}|{_NAME_WORD},[ \t]*{_NAME_WORD}"
    rf"|{_CAPS_WORD}(?:[ ,\t]+{_CAPS_WORD}){{0,3}}"
)


def _table(text: str, location: str) -> list[Finding]:
    """Findings for each identifying column some sample row fills, when the text starts (within
    a few lines) with a header naming identifying columns and the filled ones pass the table
    rule; empty otherwise."""
    lines = text[:_HEADER_MAX_CHARS].split("\n")[:_HEADER_LINES]
    offset = 0
    for line in lines:
        offset += len(line) + 1
        header = _header_columns(line.rstrip("\r"))
        if header is None:
            continue
        delimiter, columns = header
        sample = text[offset : offset + _TABLE_SAMPLE_CHARS].split("\n")[:_TABLE_SAMPLE_ROWS]
        filled: set[Column] = set()
        try:
            for row in csv.reader([r.rstrip("\r") for r in sample], delimiter=delimiter):
                filled.update(c for c in columns if c.index < len(row) and _filled(row[c.index], c))
        except csv.Error:  # a malformed sample: judge the rows read so far
            pass
        if not _table_counts(filled):
            return []
        ordered = sorted(filled, key=lambda c: c.index)
        return [Finding(c.category, f"{location}:column {c.index + 1}") for c in ordered]
    return []


def _table_counts(filled: set[Column]) -> bool:
    """A strong column, or identifying columns of two kinds (a name and a phone, an address
    and a phone: a list of people, unlike one signature)."""
    return any(c.strength is Strength.STRONG for c in filled) or (
        len({c.category for c in filled if c.strength > Strength.INFO}) >= 2
    )


# ---------------------------------------------------------------------------------------------
# The threshold and the entry points
# ---------------------------------------------------------------------------------------------


def _hits(text: str) -> list[Hit]:
    low = ascii_lower(text)
    hits = _names(text, low) + _relatives(text, low)
    if DIGIT.search(text):
        hits += _ssns(text, low) + _phones(text) + _births(text, low) + _records(text, low)
        hits += _addresses(text, low)
    if "@" in text:
        hits += _emails(text)
    return hits


def _distinct(hits: list[Hit]) -> list[Hit]:
    """In text order; a hit inside another of the same category (the SSN a keyword also
    pointed at, "MRN MRN12345678" seen from both keywords) is dropped."""
    hits.sort(key=lambda h: (h.start, -h.end))
    kept: list[Hit] = []
    last_end: dict[Category, int] = {}
    for hit in hits:
        if hit.end <= last_end.get(hit.category, -1):
            continue
        last_end[hit.category] = hit.end
        kept.append(hit)
    return kept


def _rule(text: str, hits: list[Hit]) -> str:
    if any(h.strength is Strength.STRONG for h in hits):
        return "strong"
    anchors = [h.start for h in hits if h.strength is Strength.ANCHOR]  # in text order
    if not anchors:
        return ""
    for other in hits:
        if other.category is C.NAME or other.strength < Strength.WEAK:
            continue
        # Only the nearest name on each side can pair: a paragraph break between the nearest
        # one and ``other`` also lies between any farther one and ``other``. Linear overall,
        # where anchors x weak hits would be quadratic on hostile input.
        i = bisect.bisect_left(anchors, other.start)
        for j in (i - 1, i):
            if 0 <= j < len(anchors) and _same_record(text, anchors[j], other.start):
                return "name+weak"
    return ""


_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")


def _same_record(text: str, a: int, b: int) -> bool:
    """Close together (``WINDOW``) and in the same paragraph: a name in an e-mail's text and the
    clinic's phone in its signature, a blank line apart, are not one person's details."""
    first, second = min(a, b), max(a, b)
    if second - first > WINDOW:
        return False
    return _PARAGRAPH_BREAK.search(text, first, second) is None


def scan_text(text: str, location: str = "text") -> TextScan:
    """Find identifiers in free text and decide whether it identifies a patient.

    ``location`` prefixes each finding's place (``body``, ``query``, ``header:X-Note``); the
    place is a character span (``body[120:131]``) or a table column (``body:column 3``).
    Pure and total: never raises on any ``str``; matched values never leave this function.
    The text is read in its normal form (``phi.normalise``: entities, zero-width and bidi
    characters, fullwidth digits), the spans are the text's as sent.
    """
    form = normalised(text)
    if form is not None:  # read as a person reads it; spans of the text as sent
        text = form.text
    hits = _distinct(_hits(text))
    table = _table(text, location)
    rule = "table" if table else _rule(text, hits)
    spans = [(h.start, h.end) for h in hits]
    if form is not None:
        spans = form.spans(spans)
    findings = table + [
        Finding(h.category, f"{location}[{a}:{b}]") for h, (a, b) in zip(hits, spans, strict=True)
    ]
    return TextScan(tuple(findings[:MAX_FINDINGS]), bool(rule), rule)


# A text with this many spaces is read as prose by ``prose_identifies``: notes, comments,
# narratives. Coded values and single words are not.
_PROSE_SPACES = 2


def prose_identifies(texts: Iterable[str], prepare: Callable[[str], str] | None = None) -> bool:
    """Do the detectors find a patient in any of ``texts`` that reads like prose? Used to
    verify redacted output: a relative's address or birth date written in a note is in no
    structured field, so neither the scrub nor the value search knows it. Each distinct text
    is read once, as its own paragraph, so identifiers in two texts never pair up.
    ``prepare``: undo a format's escapes first (line breaks must stay line breaks)."""
    prose = dict.fromkeys([t for t in texts if t.count(" ") >= _PROSE_SPACES])
    if not prose:
        return False
    text = "\n\n".join(prose)
    if prepare is not None:
        text = prepare(text)
    return scan_text(text).contains_phi


def decode_text(data: bytes) -> str:
    """UTF-8 when it is valid UTF-8, else Latin-1 (every byte is a character: nothing hides
    behind a decoding error). A UTF-8 BOM is dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def scan_bytes(data: bytes, location: str = "body") -> TextScan:
    return scan_text(decode_text(data), location)


def scan_query(query: str, location: str = "query") -> TextScan:
    """A URL query string (``family=Doe&given=Jane&birthdate=1980-02-03``): percent- and
    plus-decoded, one ``key=value`` per line so keys act as labels for their values."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return scan_text("\n".join(f"{key}={value}" for key, value in pairs), location)


_FILE_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")
_FILE_SEPARATORS = re.compile(
    r"[_+~]+|(?<=[A-Za-z])[-.](?=[A-Za-z])|(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])"
)


def looks_like_file_name(segment: str) -> bool:
    """A path segment or header value that names a file (``scan_2026.pdf``)."""
    return bool(_FILE_EXTENSION.search(segment)) and 2 < len(segment) <= 255


def scan_file_name(name: str, location: str = "filename") -> TextScan:
    """A file name read like free text: its extension dropped and its separators (``_``,
    ``+``, a hyphen or dot between words) read as spaces, so ``Doe_John_1970-01-01_MRN123.pdf``
    is the note "Doe John 1970-01-01 MRN123" while dates keep their own hyphens."""
    stem = _FILE_EXTENSION.sub("", name.strip().strip('"'))
    return scan_text(_FILE_SEPARATORS.sub(" ", stem), location)
