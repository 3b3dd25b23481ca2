"""X12 redaction to Safe Harbor, element by element, keeping a valid interchange.

What patient.py locates is rewritten in place, with the interchange's own delimiters:
- names (NM1-03) become a keyed pseudonym of the person's name; first and middle names and
  suffixes (NM1-04/05/07) and contact names (PER-02) are cleared; an enrollment's sponsor
  (834 N1*P5: the members' employer) becomes the placeholder;
- identifiers (NM1-09, REF-02, CLM-01, CLP-01/07, TRN-02) become keyed pseudonyms with the
  kind HL7 v2 uses ("hl7-id"), so an MRN or a patient control number is the same pseudonym in
  an ADT, a claim and its remittance; SSNs are never pseudonymised: a REF*SY segment is
  dropped, an NM1-09 with qualifier 34 becomes the placeholder;
- addresses keep state, ZIP3 (000 for restricted areas) and country: street lines (N3) and
  city (N4-01) become the placeholder;
- dates keep the year, written as a valid date of the same format (CCYY0101; a range
  CCYY0101-CCYY0101), or are shifted with the patient's keyed shift; birth dates that would
  reveal an age over 89 become the year 90 years back; times are cleared;
- communication numbers of the patient (PER) are dropped with their segment;
- free text (NTE-02, K3-01, MSG-01) is scrubbed of the interchange's identifiers and of SSN,
  phone and e-mail shapes, and cleared when the text detectors still find a patient.
Dropped segments are taken out of their transaction's SE-01 count; ISA/GS/ST/SE/GE/IEA and
their control numbers stay as sent. The output is verified (verify.py) before it leaves.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from gateway.formats.base import RedactContext
from gateway.formats.x12.envelope import Delimiters, Interchange, Segment
from gateway.formats.x12.patient import PATIENT_ENTITIES, Field, patient_fields
from gateway.formats.x12.verify import verify_x12
from gateway.model import Category
from gateway.phi.freetext import prose_identifies
from gateway.phi.safe_harbor import REDACTED, DatePolicy, zip3
from gateway.phi.scrub import MASK, ContextScrubber, searched_values

C = Category
ID_KIND = "hl7-id"  # the pseudonym kind of HL7 v2 record identifiers: one patient, one id
NAME_KIND = "x12-name"
# Free-text elements and their maximum lengths in the 5010 guides.
_TEXT_LENGTH = {"NTE": 80, "K3": 80, "MSG": 264}
_D8 = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_CLEARED_NAME_PARTS = frozenset({4, 5, 7})
# An interchange, its segments' new elements (None: dropped) and its free-text fields.
_Rewritten = tuple[Interchange, list[list[str] | None], list[Field]]


@dataclass
class X12Redaction:
    text: str
    counts: Counter[str] = field(default_factory=Counter)
    locations: set[str] = field(default_factory=set)
    # The removed values verification searches the output for, lower-cased: identifiers
    # everywhere past the envelope, dates in free text only (a claim's service date is
    # often the day the file was made, in BHT-04 and DTM*405 too).
    searched: set[str] = field(default_factory=set)
    searched_dates: set[str] = field(default_factory=set)


def rewrite_verified(
    text: str, interchanges: list[Interchange], context: RedactContext
) -> X12Redaction | str:
    """The payload's interchanges rewritten and verified (verify.py), or why the result may
    not leave (a reason, never a value)."""
    result = X12Redactor(context).redact(text, interchanges)
    problem = verify_x12(result.text, result.searched, result.searched_dates, context.shift)
    return problem or result


class X12Redactor:
    def __init__(self, context: RedactContext) -> None:
        self.context = context
        self._policies: dict[str, DatePolicy] = {}

    def redact(self, text: str, interchanges: list[Interchange]) -> X12Redaction:
        """The payload with every interchange rewritten; what lies between interchanges
        must be blank (it was never inspected as X12)."""
        result = X12Redaction("")
        scrubber = ContextScrubber()
        dates = ContextScrubber()
        rewritten: list[_Rewritten] = []
        for interchange in interchanges:
            notes: list[Field] = []
            out = self._interchange(interchange, result, scrubber, dates, notes)
            rewritten.append((interchange, out, notes))
        self._free_text(rewritten, scrubber, dates, result)
        pieces: list[str] = []
        position = 0
        written = ""  # the line break the last interchange written ends with
        for interchange, elements, _ in rewritten:
            gap = text[position : interchange.start]
            if gap.strip():
                raise ValueError("text between interchanges")
            pieces += (gap.removeprefix(written), _write(interchange, elements))
            position, written = interchange.end, interchange.line_end
        tail = text[position:].removeprefix(written)
        if tail.strip():
            raise ValueError("text after the last interchange")
        pieces.append(tail)
        result.text = "".join(pieces)
        result.searched = searched_values(scrubber.values())
        result.searched_dates = searched_values(dates.values())
        return result

    def _interchange(
        self,
        interchange: Interchange,
        result: X12Redaction,
        scrubber: ContextScrubber,
        dates: ContextScrubber,
        notes: list[Field],
    ) -> list[list[str] | None]:
        """Each segment's new elements (None: dropped); its free-text fields go to ``notes``,
        to be scrubbed once every identifier of the payload is known."""
        segments = interchange.segments
        out: list[list[str] | None] = [list(s.elements) for s in segments]
        keys = _patient_keys(interchange)
        for f in patient_fields(interchange):
            if f.free_text:
                notes.append(f)
                continue
            elements = out[f.segment]
            if elements is None:
                continue
            segment = segments[f.segment]
            value = segment.element(f.element)
            result.counts[f.category.value] += 1
            result.locations.add(f.location)
            if _drops_segment(segment, f):
                _learn(scrubber, dates, f.category, value)
                out[f.segment] = None
                continue
            new = self._value(segment, f, value, keys.get(f.segment, ""))
            if new != value:  # a date already reduced to the year is no secret
                _learn(scrubber, dates, f.category, value)
            if f.element == 3 and segment.tag == "NM1":
                scrubber.add(segment.element(4))
            elements[f.element] = new
        for elements in out:
            if elements is not None:
                while len(elements) > 2 and not elements[-1]:
                    elements.pop()  # no trailing empty elements
        _recount(segments, out)
        return out

    def _value(self, segment: Segment, f: Field, value: str, key: str) -> str:
        tag, number, category = segment.tag, f.element, f.category
        pseudonymizer = self.context.pseudonymizer
        if tag == "NM1" and number == 3:
            name = "^".join(segment.element(n).strip().upper() for n in (3, 4, 5))
            return pseudonymizer.pseudonym(NAME_KIND, name)
        if (tag == "NM1" and number in _CLEARED_NAME_PARTS) or (tag == "PER" and number == 2):
            return ""
        if tag == "N1":  # an employer's name
            return REDACTED
        if category is C.DATE:
            return self._date(segment, number, value, key)
        if category is C.GEOGRAPHY:
            if tag == "N4" and number == 3:
                return zip3(value.replace("-", ""))
            return REDACTED if number == 1 else ""
        if tag == "INS":
            return ""
        if category is C.SSN or not self.context.pseudonymize_ids:
            return REDACTED
        return pseudonymizer.pseudonym(ID_KIND, value.strip())

    def _date(self, segment: Segment, number: int, value: str, key: str) -> str:
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = self.context.dates(key if self.context.shift else "")
        birth = segment.tag == "DMG"
        parts = value.split("-")
        if len(parts) > 2 or not all(_D8.match(p[:8]) for p in parts):
            return _year_date(value, policy)  # a format we do not shift: the year alone
        return "-".join(_one_date(p, policy, birth) for p in parts)

    def _free_text(
        self,
        rewritten: list[_Rewritten],
        scrubber: ContextScrubber,
        dates: ContextScrubber,
        result: X12Redaction,
    ) -> None:
        """Free text is scrubbed once every identifier of the payload is known."""
        for interchange, out, notes in rewritten:
            mask = _mask(interchange.delimiters)
            for f in notes:
                elements = out[f.segment]
                if elements is None or f.element >= len(elements):
                    continue
                original = elements[f.element]
                text = dates.scrub(scrubber.scrub(original))
                if mask != MASK:
                    text = text.replace(MASK, mask)
                if prose_identifies([text]):
                    text = REDACTED
                limit = _TEXT_LENGTH.get(interchange.segments[f.segment].tag, 80)
                text = text[:limit].strip() or REDACTED
                if text != original:
                    elements[f.element] = text
                    result.counts[C.NAME.value if text == REDACTED else "free_text"] += 1
                    result.locations.add(f.location)


def _one_date(value: str, policy: DatePolicy, birth: bool) -> str:
    """One CCYYMMDD (with a time after it, cleared), written back as a valid date."""
    day, time = value[:8], value[8:]
    year = int(day[:4])
    if birth and year <= policy.reference_year - 90:
        new = f"{policy.reference_year - 90}0101"
    elif policy.mode == "shift":
        new = policy.generalize(day)
    else:
        new = f"{day[:4]}0101"
    return new + "0" * len(time) if time.isdigit() else new


def _year_date(value: str, policy: DatePolicy) -> str:
    year = policy.year_of(value) or ""
    return f"{year}0101" if year else REDACTED


def _drops_segment(segment: Segment, f: Field) -> bool:
    """Segments whose purpose is the identifier: the SSN reference, a patient's contacts."""
    return (segment.tag == "REF" and segment.element(1).upper() == "SY") or segment.tag == "PER"


def _learn(
    scrubber: ContextScrubber, dates: ContextScrubber, category: Category, value: str
) -> None:
    if not value:
        return
    if category is C.DATE:
        for part in value.split("-"):
            dates.add_date(part[:8])
    elif category is C.GEOGRAPHY:
        scrubber.add_address_line(value)
    elif category in (C.NAME, C.PHONE, C.FAX, C.EMAIL):
        scrubber.add(value)
    else:
        scrubber.add_number(value)


def _patient_keys(interchange: Interchange) -> dict[int, str]:
    """The patient each segment of a transaction is about (its date shift key): the id of the
    last patient NM1 before it in its transaction, else the first one after it."""
    keys: dict[int, str] = {}
    pending: list[int] = []
    current = ""
    for index, segment in enumerate(interchange.segments):
        if segment.tag == "ST":
            current, pending = "", []
        elif segment.tag == "NM1" and segment.element(9) and _is_patient(segment):
            current = segment.element(9).strip()
            for waiting in pending:
                keys[waiting] = current
            pending = []
        if current:
            keys[index] = current
        else:
            pending.append(index)
    return keys


def _is_patient(segment: Segment) -> bool:
    return segment.element(1).upper() in PATIENT_ENTITIES


def _recount(segments: list[Segment], out: list[list[str] | None]) -> None:
    """The control counts: SE-01 (the segments of its transaction now, ST and SE included),
    GE-01 (transaction sets of its group) and IEA-01 (groups of its interchange)."""
    count = sets = groups = 0
    for segment, elements in zip(segments, out, strict=True):
        if elements is None:
            continue
        count += 1
        tag = segment.tag
        number = None
        if tag == "ST":
            count, sets = 1, sets + 1
        elif tag == "GS":
            sets, groups = 0, groups + 1
        elif tag == "SE":
            number = count
        elif tag == "GE":
            number = sets
        elif tag == "IEA":
            number = groups
        if number is not None and len(elements) > 1 and elements[1].strip().isdigit():
            elements[1] = str(number)


def _mask(delimiters: Delimiters) -> str:
    """The scrubber's mask, unless one of its characters delimits this interchange."""
    used = {delimiters.element, delimiters.repetition, delimiters.component, delimiters.segment}
    return MASK if not used & set(MASK) else REDACTED


def _write(interchange: Interchange, out: list[list[str] | None]) -> str:
    d = interchange.delimiters
    after = d.segment + interchange.line_end
    return "".join(d.element.join(elements) + after for elements in out if elements is not None)
