"""HL7 v2 ER7 redaction to Safe Harbor, segment by segment, with each message's own delimiters.

Rules (data types from hl7apy's definitions for the message's version, see types.py):
- MSH/FHS/BHS/MSA/ERR and batch trailers stay as they are: the receiver must be able to ACK.
- Patient segments (PID, PD1, NK1, GT1, IN1, IN2, IN3, MRG, ACC): every field is cleared except
  a short list of coded, non-identifying fields; record identifiers (PID-2/3/4/18/21, MRG ids)
  become keyed pseudonyms; addresses keep state, ZIP3 and country; dates keep the year.
- Every other segment: dates → year; names, phones → cleared; addresses generalised;
  identifiers (CX, EI: visit and order numbers) → pseudonyms; free text (OBX-5 of text types,
  NTE-3) is scrubbed of the identifiers this message's structured fields held and of SSN,
  phone and e-mail patterns. OBX-5 of ED/RP (documents, pointers) is cleared.
- Z-segments: every field cleared (configurable).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from gateway.errors import Hl7RedactionError
from gateway.formats.hl7v2.er7 import (
    END_BLOCK,
    HEADERS,
    START_BLOCK,
    Delimiters,
    is_segment_id,
    split_keeping_ends,
    unescape,
)
from gateway.formats.hl7v2.identifiers import IDENTIFIER_FIELDS
from gateway.formats.hl7v2.types import field_types
from gateway.model import Category
from gateway.phi.safe_harbor import AGE_UNITS, REDACTED, DatePolicy, Pseudonymizer, is_old_age, zip3
from gateway.phi.scrub import MIN_SEARCHED, ContextScrubber

C = Category
PATIENT_SEGMENTS = frozenset(
    {
        "PID",
        "PD1",
        "NK1",
        "GT1",
        "IN1",
        "IN2",
        "IN3",
        "MRG",
        "ACC",
        "QPD",
        "QRD",
    }
)
# Coded fields that describe, but do not identify (sex, race, language, relationship, ...).
KEEP_FIELDS: dict[str, frozenset[int]] = {
    "PID": frozenset({1, 8, 10, 15, 16, 17, 22, 24, 25, 26, 27, 28, 30, 31, 32, 35, 36}),
    "PD1": frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15}),
    "NK1": frozenset({1, 3, 7, 14, 15, 17, 20, 21, 24, 25, 27, 28, 35}),
    "GT1": frozenset({1, 9, 10, 11, 15, 35, 36, 42, 43}),
    "IN1": frozenset(
        {
            1,
            2,
            3,
            4,
            15,
            17,
            20,
            21,
            22,
            23,
            25,
            27,
            28,
            31,
            32,
            33,
            34,
            35,
            38,
            39,
            40,
            41,
            42,
            45,
            47,
        }
    ),
    "IN2": frozenset(),
    "IN3": frozenset({1}),
    "MRG": frozenset(),
    "ACC": frozenset({2, 4, 5, 6}),
    # Queries keep their name and tag (the responder needs them), not their parameters.
    "QPD": frozenset({1, 2}),
    "QRD": frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12}),
}
# Identifiers that link records: pseudonymised (keyed) rather than cleared, so that the
# receiver can still tell patients and visits apart.
PSEUDONYM_FIELDS = frozenset(
    {
        ("PID", 2),
        ("PID", 3),
        ("PID", 4),
        ("PID", 18),
        ("PID", 21),
        ("MRG", 1),
        ("MRG", 2),
        ("MRG", 3),
        ("MRG", 4),
        ("MRG", 5),
        ("MRG", 6),
        ("PV1", 19),
        ("PV1", 50),
        ("PD1", 10),
    }
)
# Required fields that must not be empty for most engines: filled with the placeholder.
PLACEHOLDER_FIELDS = frozenset({("PID", 5)})
DATE_TYPES = frozenset({"TS", "DT", "DTM", "DR", "DIN", "DLD"})
NAME_TYPES = frozenset({"XPN", "PN"})
ADDRESS_TYPES = frozenset({"XAD", "AD"})
PHONE_TYPES = frozenset({"XTN", "TN"})
ID_TYPES = frozenset({"CX", "CK", "EI", "CM_PAT_ID", "CM_PAT_ID_0192"})
TEXT_VALUE_TYPES = frozenset({"TX", "FT", "ST", "CE", "CWE", "CF", "SN", "TN", "AD", "PN"})
OPAQUE_VALUE_TYPES = frozenset({"ED", "RP"})
BIRTH_FIELDS = frozenset({("PID", 7), ("NK1", 16), ("GT1", 8), ("IN1", 18)})
CATEGORY_OF_TYPE = {
    "name": C.NAME,
    "address": C.GEOGRAPHY,
    "phone": C.PHONE,
    "date": C.DATE,
    "id": C.MRN,
    "text": C.OTHER_ID,
}


# Which components of a field identify a person (0-based): XPN family/given/middle, XAD
# street/other/city, XTN number/e-mail/local number, CX/EI id.
_LEARN_COMPONENTS: dict[str, tuple[int, ...]] = {
    "name": (0, 1, 2),
    "address": (0, 1, 2),
    "phone": (0, 3, 6),
    "id": (0,),
}


_NAME_PARTS = re.compile(r"[\s\-']+")
_VISIT_SEGMENTS = frozenset({"PV1", "PV2", "EVN"})
# The first letters of the units that make an OBX number an age: a cheap test before the
# unit is read.
_AGE_UNIT_INITIALS = frozenset(u[0] for u in AGE_UNITS) | frozenset(u[0].upper() for u in AGE_UNITS)
_NUMERIC_TYPES = frozenset({"NM", "SN"})


@dataclass
class Hl7Redaction:
    text: str
    counts: Counter[str] = field(default_factory=Counter)
    locations: set[str] = field(default_factory=set)
    # What verification searches the output for: the identifier values the redactor learned,
    # lower-cased, long enough (as verify.searched_values would choose them).
    searched: set[str] = field(default_factory=set)


@dataclass
class Hl7Options:
    pseudonymizer: Pseudonymizer
    dates: DatePolicy
    pseudonymize_ids: bool = True
    redact_z_segments: bool = True
    keep: frozenset[str] = frozenset()  # locations such as "PID-11" a contract allows


# A piece of the rewritten message the scrub still has to search, besides its text: ``out[index]``
# is ``prefix + text + suffix``; segments also carry their delimiters, their fields as the
# rules left them, the contract exceptions and their plan (header pieces: None). A plain
# tuple: one is made per segment of every message.
_Piece = tuple[
    int, str, str, "Delimiters | None", "list[str] | None", AbstractSet[int], "_SegmentPlan | None"
]


class Hl7Redactor:
    def __init__(self, options: Hl7Options) -> None:
        self.options = options
        # What a Z-segment's fields become when no plan says otherwise.
        self._z_default = _CLEAR if options.redact_z_segments else _UNCHANGED
        # Values rewritten in the message at hand (cleared once it is rewritten).
        self._rewritten: dict[tuple[int, str, Delimiters], str] = {}

    def redact(self, text: str) -> Hl7Redaction:
        # Segment ends as a receiver reads them (see er7.segment_ends).
        parts = split_keeping_ends(text)
        result = Hl7Redaction(text="")
        scrubber = ContextScrubber()
        # One pass over the segments: learn this message's identifiers from the structured
        # fields, and apply every field rule; then scrub the learned identifiers and the
        # SSN/phone/e-mail shapes from what the fields kept (only then are all known).
        try:
            out, texts, pieces = self._rewrite(parts, scrubber, result)
        finally:
            self._rewritten.clear()
        self._scrub(out, texts, pieces, scrubber, result)
        result.text = "".join(out)
        # The scrubber keeps only values worth matching, lower-cased: no need to choose again.
        result.searched = {v for v in scrubber.lowered_values() if len(v) >= MIN_SEARCHED}
        return result

    def _rewrite(
        self, parts: list[str], scrubber: ContextScrubber, result: Hl7Redaction
    ) -> tuple[list[str], list[str], list[_Piece]]:
        """The message with every field rule applied, and the identifiers learned from it;
        ``texts`` and ``pieces`` say what of it the scrub still has to search (every segment
        but MSH; not the terminators)."""
        delims: Delimiters | None = None
        version = "2.5"
        # The same date comes back in several fields (birth date in PID, GT1, IN1): each is
        # spelled out once.
        dates: set[str] = set()
        learned: set[tuple[str, tuple[int, ...] | None, bool, str]] = set()
        out: list[str] = []
        texts: list[str] = []
        pieces: list[_Piece] = []
        for index in range(0, len(parts), 2):
            if index:
                out.append(parts[index - 1])  # the segment terminator, as sent
            part = parts[index]
            seg, prefix, suffix = part, "", ""
            if part[:1] == START_BLOCK:
                seg = part.lstrip(START_BLOCK)
                prefix = part[: len(part) - len(seg)]
            if seg[-1:] == END_BLOCK:
                seg, suffix = seg[:-1], END_BLOCK
            seg_id = seg[:3]
            if seg_id in HEADERS:
                delims = Delimiters(seg)
                if seg_id == "MSH":
                    # Forwarded as sent: routing, control id and version let the receiver ACK.
                    fields = seg.split(delims.field)
                    version = fields[11].split(delims.component)[0] if len(fields) > 11 else ""
                    out.append(part)
                else:
                    # File and batch headers keep their delimiters; their names and comments
                    # are scrubbed like any text.
                    texts.append(seg[4:])
                    header = prefix + seg[:4]
                    pieces.append((len(out), header, suffix, None, None, _NOTHING_KEPT, None))
                    out.append(part)
                continue
            if not seg or seg.isspace():
                out.append(part)
                continue
            if delims is None or not is_segment_id(seg_id):
                raise Hl7RedactionError("a segment does not start with a segment id")
            fields = seg.split(delims.field)
            if seg_id in PATIENT_SEGMENTS:
                self._learn(fields, seg_id, delims, version, scrubber, dates, learned)
            elif seg_id in _VISIT_SEGMENTS:
                _learn_dates(fields, seg_id, delims, version, dates)
            plan = _plan(seg_id, version)
            kept, changed = self._segment(fields, plan, delims, result)
            # Most segments (results, orders) come out as they went in: no join needed.
            joined = delims.field.join(fields) if changed else seg
            texts.append(joined)
            pieces.append((len(out), prefix, suffix, delims, fields, kept, plan))
            out.append(prefix + joined + suffix if prefix or suffix else joined)
        for date in dates:
            scrubber.add_date(date)
        return out, texts, pieces

    def _scrub(
        self,
        out: list[str],
        texts: list[str],
        pieces: list[_Piece],
        scrubber: ContextScrubber,
        result: Hl7Redaction,
    ) -> None:
        """Whatever a field kept, the message's own identifiers and SSN/phone/e-mail shapes
        are scrubbed from it (a provider who shares the patient's name, an MRN inside an
        order number). All pieces are scrubbed as one text: one pass of each search."""
        for number, scrubbed in scrubber.scrub_pieces(texts, "\r").items():
            index, prefix, suffix, delims, fields, kept, plan = pieces[number]
            if delims is None or fields is None or plan is None:  # FHS/BHS: any text
                out[index] = prefix + scrubbed + suffix
                continue
            segment = self._rescrubbed(scrubbed, delims, fields, kept, plan, result)
            out[index] = prefix + segment + suffix

    @staticmethod
    def _rescrubbed(  # noqa: PLR0917 - the parts of one piece
        scrubbed: str,
        d: Delimiters,
        fields: list[str],
        kept: AbstractSet[int],
        plan: _SegmentPlan,
        result: Hl7Redaction,
    ) -> str:
        """A segment after the scrub, with its contract exceptions as sent; every field the
        scrub changed is counted (the mask holds no delimiter, so fields stay in place)."""
        after = scrubbed.split(d.field)
        for number in range(1, len(after)):
            if after[number] != fields[number]:
                if number in kept:
                    after[number] = fields[number]  # a contract exception stays as sent
                    continue
                plan.count((number,), result)
        return d.field.join(after)

    # -- pass 1 ---------------------------------------------------------------------------------
    def _learn(  # noqa: PLR0917 - one call site, in the hot loop
        self,
        fields: list[str],
        seg_id: str,
        d: Delimiters,
        version: str,
        scrubber: ContextScrubber,
        dates: set[str],
        learned: set[tuple[str, tuple[int, ...] | None, bool, str]],
    ) -> None:
        """Remember the values that identify: names, street and city, phones and e-mail,
        identifiers, birth and death dates, and the identifier fields of IDENTIFIER_FIELDS.
        ``learned``: the (rule, field value) pairs of this message already learned from (the
        patient's name and address come back in NK1, GT1 and IN1)."""
        size = len(fields)
        for number, kind, wanted, learn_date in _learn_plan(seg_id, version):
            if number >= size or not fields[number]:
                continue
            value = fields[number]
            seen = (kind, wanted, learn_date, value)
            if seen in learned:
                continue
            learned.add(seen)
            for rep in value.split(d.repetition):
                # Every subcomponent counts: FN.5 is the partner's surname, for one.
                comps = rep.split(d.component)
                if kind == "date":
                    if learn_date:
                        dates.add(comps[0])
                elif wanted is not None:
                    for index in wanted:
                        if index < len(comps):
                            for part in comps[index].split(d.subcomponent):
                                if not part:
                                    continue
                                self._learn_value(kind, unescape(part, d), scrubber)
                                if kind == "address" and index == 0:  # XAD.1 street
                                    scrubber.add_address_line(unescape(part, d))
                    if kind == "address" and len(comps) > 4:
                        scrubber.add(comps[4].split("-")[0])  # the ZIP, as notes write it
                else:  # an identifier field of IDENTIFIER_FIELDS (see _learn_plan)
                    scrubber.add_number(unescape(rep, d))

    @staticmethod
    def _learn_value(kind: str, value: str, scrubber: ContextScrubber) -> None:
        scrubber.add_number(value)
        if kind == "name" and not value.isalnum():
            # Parts of compound names ("Garcia-Lopez", "Van Der Berg") are written alone too.
            for part in _NAME_PARTS.split(value):
                scrubber.add(part)

    # -- pass 2 ---------------------------------------------------------------------------------
    def _segment(
        self, fields: list[str], plan: _SegmentPlan, d: Delimiters, result: Hl7Redaction
    ) -> tuple[AbstractSet[int], bool]:
        """Every field rule applied to the segment's ``fields`` (in place); the contract
        exceptions (fields the keep-list names) and whether any field changed."""
        keep = self.options.keep
        kept: set[int] | None = None
        changed: list[int] | None = None
        size = len(fields)
        rules = plan.rules
        default = self._z_default if plan.zseg else plan.default
        # Patient and Z-segments: every field; the rest: only the fields a rule may change.
        for number in range(1, size) if plan.every_field else plan.numbers:
            if number >= size:
                break  # plan.numbers is sorted
            value = fields[number]
            if not value:
                continue
            if keep and plan.location(number) in keep:
                if kept is None:
                    kept = set()
                kept.add(number)
                continue
            rule = rules.get(number, default)
            if rule == _UNCHANGED:
                continue
            if rule == _CLEAR:
                new = ""
            elif rule == _OBX_VALUE:  # depends on the value type and unit fields too
                if fields[2] in _NUMERIC_TYPES and (
                    size < 7 or fields[6].lstrip()[:1] not in _AGE_UNIT_INITIALS
                ):
                    continue  # a number that is no age (the usual result): as sent
                new = self._field(rule, value, fields, d)
            else:
                # A message repeats its patient's address and birth date (PID, NK1, GT1,
                # IN1): each distinct value is rewritten once.
                key = (rule, value, d)
                known = self._rewritten.get(key)
                if known is None:
                    known = self._rewritten[key] = self._field(rule, value, fields, d)
                new = known
            if new != value:
                fields[number] = new
                if changed is None:
                    changed = []
                changed.append(number)
        if changed is None:
            return kept or _NOTHING_KEPT, False
        plan.count(changed, result)
        return kept or _NOTHING_KEPT, True

    def _field(self, rule: int, value: str, fields: list[str], d: Delimiters) -> str:
        if rule in (_DATE, _BIRTH):
            birth = rule == _BIRTH
            if d.repetition not in value:  # the usual case: one date
                return self._date(value, d, birth)
            return d.repetition.join(self._date(rep, d, birth) for rep in value.split(d.repetition))
        if rule in (_ID, _PSEUDONYM):
            return self._ids(value, d)
        if rule == _ADDRESS:
            if d.repetition not in value:
                return self._address(value, d)
            return d.repetition.join(self._address(rep, d) for rep in value.split(d.repetition))
        if rule == _PLACEHOLDER:
            return REDACTED
        assert rule == _OBX_VALUE
        value_type = fields[2] if len(fields) > 2 else ""
        if value_type in OPAQUE_VALUE_TYPES:
            return ""
        if value_type in ("NM", "SN"):
            unit = fields[6] if len(fields) > 6 else ""
            # Safe Harbor: ages over 89 are reported as one category
            return "90" if _is_old_age(value, unit, d) else value
        value_kind = _kind(value_type)
        if value_kind == "date":
            return d.repetition.join(
                d.component.join(self._date(c, d, birth=False) for c in rep.split(d.component))
                for rep in value.split(d.repetition)
            )
        if value_kind == "address":
            return d.repetition.join(self._address(r, d) for r in value.split(d.repetition))
        if value_kind in ("name", "phone"):
            return ""
        if value_kind == "id":
            return self._ids(value, d)
        # Free text (OBX-5 of text types, NTE-3, TX/FT) is scrubbed with the whole segment.
        return value

    def _ids(self, value: str, d: Delimiters) -> str:
        reps = []
        for rep in value.split(d.repetition):
            comps = rep.split(d.component)
            if not comps[0]:
                reps.append(rep)
                continue
            if self.options.pseudonymize_ids:
                comps[0] = self.options.pseudonymizer.pseudonym("hl7-id", comps[0])
            else:
                comps[0] = ""
            # Keep the assigning authority and type (CX.4/5, EI.2-4): they name the hospital.
            reps.append(d.component.join(comps[:6]))
        return d.repetition.join(reps)

    def _date(self, rep: str, d: Delimiters, birth: bool) -> str:
        first = rep.split(d.component, maxsplit=1)[0].split(d.subcomponent, maxsplit=1)[0]
        dates = self.options.dates
        return dates.birth_year(first) if birth else dates.generalize(first)

    def _address(self, rep: str, d: Delimiters) -> str:
        comps = rep.split(d.component) + [""] * 6
        state, postal, country = comps[3], comps[4], comps[5]
        # Codes only: a spelled-out state or country is kept only when it is a short code.
        kept = ["", "", "", _code(state), zip3(postal) if postal else "", _code(country)]
        return d.component.join(kept).rstrip(d.component)


# A field's rule, decided once per segment type and version (see _plan).
_UNCHANGED, _CLEAR, _PSEUDONYM, _PLACEHOLDER, _DATE, _BIRTH, _ADDRESS, _ID, _OBX_VALUE = range(9)
_NOTHING_KEPT: frozenset[int] = frozenset()


class _SegmentPlan:
    """What pass 2 does to each field of one segment type in one version: the rule, the
    location ("PID-11") and the category it is counted as. Built once, so that a message
    pays a dictionary lookup per field, not the type lookups and rule tests."""

    def __init__(self, seg_id: str, version: str) -> None:
        types = field_types(seg_id, version)
        self.seg_id = seg_id
        self.zseg = seg_id.startswith("Z")
        patient = seg_id in PATIENT_SEGMENTS
        self.every_field = patient or self.zseg
        keep_fields = KEEP_FIELDS.get(seg_id, frozenset())
        special = {n for s, n in PSEUDONYM_FIELDS | PLACEHOLDER_FIELDS if s == seg_id}
        top = max(types.keys() | keep_fields | special | {0})
        # Fields past the definition: cleared in patient and Z-segments, else as text.
        self.default = _CLEAR if self.every_field else _UNCHANGED
        self.rules: dict[int, int] = {}
        for number in range(1, top + 1):
            if self.zseg:
                rule = _CLEAR
            elif patient and number in keep_fields:
                rule = _UNCHANGED
            else:
                rule = _rule(seg_id, number, types.get(number, "ST"), patient)
            self.rules[number] = rule
        # Non-patient segments visit only the fields a rule may change.
        self.numbers = tuple(n for n, rule in self.rules.items() if rule != _UNCHANGED)
        self._locations = {n: f"{seg_id}-{n}" for n in range(1, top + 1)}
        self._categories = {
            n: (C.OTHER_ID if self.zseg else _category(seg_id, n, types.get(n, "ST"))).value
            for n in range(1, top + 1)
        }

    def location(self, number: int) -> str:
        known = self._locations.get(number)
        return known if known is not None else f"{self.seg_id}-{number}"

    def count(self, numbers: Iterable[int], result: Hl7Redaction) -> None:
        """Changed fields, counted by category and location."""
        counts, locations = result.counts, result.locations
        for number in numbers:
            category = self._categories.get(number)
            if category is None:  # past the definition: text, unless named as an identifier
                seg_id = self.seg_id
                category = (C.OTHER_ID if self.zseg else _category(seg_id, number, "ST")).value
            counts[category] = counts.get(category, 0) + 1
            location = self._locations.get(number)
            locations.add(location if location is not None else f"{self.seg_id}-{number}")


def _rule(seg_id: str, number: int, dtype: str, patient: bool) -> int:
    key = (seg_id, number)
    kind = _kind(dtype)
    if key in PSEUDONYM_FIELDS:
        return _PSEUDONYM
    if key in PLACEHOLDER_FIELDS:
        return _PLACEHOLDER
    if kind == "date":
        return _BIRTH if key in BIRTH_FIELDS else _DATE
    if kind == "address":
        return _ADDRESS
    if patient or kind in ("name", "phone"):
        return _CLEAR
    if kind == "id":
        return _ID
    if seg_id == "OBX" and number == 5:
        return _OBX_VALUE
    return _UNCHANGED


@functools.lru_cache(maxsize=1024)
def _plan(seg_id: str, version: str) -> _SegmentPlan:
    return _SegmentPlan(seg_id, version)


@functools.lru_cache(maxsize=1024)
def _learn_plan(
    seg_id: str, version: str
) -> tuple[tuple[int, str, tuple[int, ...] | None, bool], ...]:
    """What pass 1 learns from a patient segment, field by field (number, kind, components,
    whether a date is learned), in field order: only fields that teach something, so that
    the usual empty or coded field costs nothing per message."""
    types = field_types(seg_id, version)
    identifying = IDENTIFIER_FIELDS.get(seg_id, {})
    keep = KEEP_FIELDS.get(seg_id, frozenset())
    plan = []
    for number in sorted((types.keys() | identifying.keys()) - keep):
        dtype = types.get(number, "ST")
        kind = _kind(dtype)
        # Organisations named in patient segments are employers (NK1-13, GT1-51, ...).
        wanted = (0,) if dtype == "XON" else _LEARN_COMPONENTS.get(kind)
        learn_date = (seg_id, number) in BIRTH_FIELDS or identifying.get(number) is C.DATE
        if learn_date if kind == "date" else wanted is not None or number in identifying:
            plan.append((number, kind, wanted, learn_date))
    return tuple(plan)


def _learn_dates(
    fields: list[str], seg_id: str, d: Delimiters, version: str, dates: set[str]
) -> None:
    """Admission, discharge and event dates: notes repeat them ("admitted 03/15/2024")."""
    size = len(fields)
    for number in _date_fields(seg_id, version):
        if number < size and fields[number]:
            dates.add(fields[number].split(d.component)[0])


@functools.lru_cache(maxsize=1024)
def _date_fields(seg_id: str, version: str) -> tuple[int, ...]:
    return tuple(sorted(n for n, t in field_types(seg_id, version).items() if _kind(t) == "date"))


def _is_old_age(value: str, unit: str, d: Delimiters) -> bool:
    """An age of 90 or more: a number with a years unit (OBX-6 CE: code first)."""
    if unit.lstrip()[:1] not in _AGE_UNIT_INITIALS:
        return False  # the usual unit (mg/dL, %): no number to read
    unit_code = unit.partition(d.component)[0].strip().lower()
    number = value.rpartition(d.component)[2].strip()
    try:
        return is_old_age(float(number), unit_code)
    except ValueError:
        return False


def _code(value: str) -> str:
    return value if value.isalpha() and len(value) <= 3 else ""


_KIND_OF_TYPE = {
    dtype: kind
    for kind, types in (
        ("id", ID_TYPES),
        ("phone", PHONE_TYPES),
        ("address", ADDRESS_TYPES),
        ("name", NAME_TYPES),
        ("date", DATE_TYPES),
    )
    for dtype in types
}


def _kind(dtype: str) -> str:
    return _KIND_OF_TYPE.get(dtype, "text")


@functools.lru_cache(maxsize=4096)
def _category(seg_id: str, number: int, dtype: str) -> Category:
    known = IDENTIFIER_FIELDS.get(seg_id, {}).get(number)
    return known or CATEGORY_OF_TYPE[_kind(dtype)]
