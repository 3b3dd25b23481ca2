"""X12 redaction to Safe Harbor: every identifier inspection finds, redaction removes; the
result is still a valid interchange (pyx12 where it has the map, our own reader and control
counts everywhere); pseudonyms are the ones HL7 v2 gets; verification refuses leftovers."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.formats.base import RedactContext
from gateway.formats.hl7v2 import HL7V2
from gateway.formats.x12 import X12
from gateway.formats.x12.envelope import find
from gateway.formats.x12.patient import patient_fields
from gateway.formats.x12.redact import ID_KIND, X12Redactor
from gateway.formats.x12.verify import counts_are_right, verify_x12
from gateway.inspector import Inspector
from gateway.model import Category
from gateway.phi.safe_harbor import DatePolicy, Pseudonymizer, is_pseudonym
from tests.support.patients import Patient, hl7_rich, make_patient
from tests.support.redaction import InspectingRedactor
from tests.support.x12 import (
    Delims,
    claim_837d,
    claim_837i,
    claim_837p,
    claim_status_276,
    claim_status_277,
    eligibility_270,
    eligibility_271,
    enrollment_834,
    remittance_835,
    review_278,
    validate,
)
from tests.unit.test_redact import leaked

SECRET = b"test-site-secret-0123456789abcdef"
Generator = Callable[[Patient, Delims], str]
GENERATORS: list[Generator] = [
    claim_837p,
    claim_837i,
    claim_837d,
    remittance_835,
    enrollment_834,
    eligibility_270,
    eligibility_271,
    claim_status_276,
    claim_status_277,
    review_278,
]
# pyx12 carries these 5010 maps; the others are checked by our reader and counts only.
VALIDATED = {claim_837p, claim_837i, remittance_835, enrollment_834}
DELIMITERS = [
    Delims(),
    Delims(after="\r\n"),
    Delims("|", "!", ">", "\n"),
    Delims("^", "{", "\\", "'", "\n"),
]
INSPECTOR = Inspector(parse_config({}).limits)
_YEAR_DATE = re.compile(r"^\d{4}0101(0000)?(-\d{4}0101)?$")


def redactor(**settings: object) -> InspectingRedactor:
    return InspectingRedactor(parse_config({"redaction": settings}), SECRET)


def _values(text: str) -> dict[str, list[str]]:
    """The value at each place the inspection's walk names, as a receiver would read it."""
    out: dict[str, list[str]] = {}
    for interchange in find(text):
        for f in patient_fields(interchange):
            value = interchange.segments[f.segment].element(f.element)
            out.setdefault(f.location, []).append(value)
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(seed=1594, generate=claim_837p, delims=Delims(), dates="shift")  # admission -> DOB
@given(
    seed=st.integers(0, 10**6),
    generate=st.sampled_from(GENERATORS),
    delims=st.sampled_from(DELIMITERS),
    dates=st.sampled_from(["year", "shift"]),
)
def test_every_identifier_found_is_removed_and_the_interchange_stays_valid(
    seed: int, generate: Generator, delims: Delims, dates: str
) -> None:
    patient = make_patient(seed)
    text = generate(patient, delims)
    before = _values(text)
    outcome = redactor(dates=dates).redact(text.encode(), "", X12)
    assert not outcome.error, outcome.error
    # Year-only dates are written CCYY0101: a date that was 1 January reads as it was. A
    # shifted date may land on another of the patient's dates (an admission moved onto the
    # birthday): dates are then checked where they stand, below.
    leaks = [v for v in leaked(outcome.body, patient) if v.replace("-", "")[4:] != "0101"]
    if dates == "shift":
        leaks = [v for v in leaks if v not in (patient.birth_date, patient.birth_date_iso)]
    assert leaks == []
    output = outcome.body.decode()
    after = _values(output)
    for location, values in before.items():
        for value in values:
            if value and not _YEAR_DATE.match(value):
                assert value not in after.get(location, []), location
    for location, values in after.items():
        for value in values:
            if "NM1-03" in location:
                assert is_pseudonym(value), location
            if "DMG-02" in location and dates == "year":
                assert _YEAR_DATE.match(value), location
    (interchange,) = find(output)
    assert counts_are_right(interchange)
    assert [s.tag for s in interchange.segments][:3] == ["ISA", "GS", "ST"]
    assert output.startswith(text[:106])  # the ISA header as sent
    if generate in VALIDATED and delims.element == "*":
        assert validate(output) == []


def test_segments_are_dropped_with_their_counts() -> None:
    patient = make_patient(40)
    text = claim_837p(patient)
    outcome = redactor().redact(text.encode(), "", X12)
    (before,) = find(text)
    (after,) = find(outcome.body.decode())
    assert len(after.segments) == len(before.segments) - 1  # REF*SY
    assert not any(s.tag == "REF" and s.element(1) == "SY" for s in after.segments)
    se = next(s for s in after.segments if s.tag == "SE")
    assert int(se.element(1)) == len(after.segments) - 4  # without ISA, GS, GE, IEA
    assert outcome.counts["ssn"] == 1 and "2010BA REF-02" in outcome.locations


def test_one_patient_is_one_pseudonym_in_hl7_and_in_x12() -> None:
    patient = make_patient(41)
    pseudonym = Pseudonymizer(SECRET).pseudonym(ID_KIND, patient.mrn)
    hl7 = redactor().redact(hl7_rich(patient, "ADT^A01").encode(), "", HL7V2)
    assert not hl7.error and pseudonym in hl7.body.decode()
    for generate in (claim_837p, claim_837i, claim_837d):
        claim = redactor().redact(generate(patient, Delims()).encode(), "", X12)
        assert f"REF*EA*{pseudonym}~" in claim.body.decode(), generate.__name__
    # The claim and its remittance keep one patient control number.
    account = Pseudonymizer(SECRET).pseudonym(ID_KIND, patient.account)
    remittance = redactor().redact(remittance_835(patient).encode(), "", X12)
    claim = redactor().redact(claim_837p(patient).encode(), "", X12)
    assert f"CLP*{account}*" in remittance.body.decode()
    assert f"CLM*{account}*" in claim.body.decode()


def test_dates_are_shifted_by_the_patients_key_in_every_transaction() -> None:
    patient = make_patient(42)
    context = RedactContext(
        pseudonymizer=Pseudonymizer(SECRET),
        dates=lambda key: DatePolicy("shift", Pseudonymizer(SECRET).shift_days(key, 30)),
        shift=True,
        pseudonymize_ids=True,
        redact_z_segments=True,
        keep=frozenset(),
    )
    shift = DatePolicy("shift", Pseudonymizer(SECRET).shift_days(patient.insurance_id, 30))
    expected = shift.generalize(patient.birth_date)
    for generate in (claim_837p, eligibility_270, review_278):
        text = generate(patient, Delims())
        result = X12Redactor(context).redact(text, find(text))
        assert f"DMG*D8*{expected}" in result.text, generate.__name__
    shifted = redactor(dates="shift").redact(claim_837p(patient).encode(), "", X12)
    assert not shifted.error
    (dmg,) = _values(shifted.body.decode())["2010BA DMG-02"]
    assert dmg != patient.birth_date and len(dmg) == 8


def test_an_age_over_89_is_not_revealed_by_the_birth_year() -> None:
    patient = make_patient(43)
    text = claim_837p(patient).replace(patient.birth_date, "19200315")
    outcome = redactor().redact(text.encode(), "", X12)
    year = DatePolicy().reference_year - 90
    assert f"DMG*D8*{year}0101*" in outcome.body.decode()


def test_without_pseudonyms_identifiers_become_the_placeholder() -> None:
    patient = make_patient(44)
    outcome = redactor(identifiers="remove").redact(claim_837p(patient).encode(), "", X12)
    assert not outcome.error
    body = outcome.body.decode()
    assert "REF*EA*REDACTED~" in body and "*MI*REDACTED~" in body
    assert leaked(outcome.body, patient) == []


def test_a_batch_of_interchanges_is_redacted_whole() -> None:
    one, two = make_patient(45), make_patient(46)
    batch = claim_837p(one, Delims(after="\n")) + "\n" + remittance_835(two, Delims(after="\n"))
    outcome = redactor().redact(batch.encode(), "", X12)
    assert not outcome.error
    assert leaked(outcome.body, one) == [] and leaked(outcome.body, two) == []
    found = find(outcome.body.decode())
    assert [i.transactions() for i in found] == [["837"], ["835"]]
    assert all(counts_are_right(i) for i in found)
    assert outcome.body.count(b"\n\n") == batch.count("\n\n") == 1  # the gap as sent


def test_text_between_interchanges_is_read_and_not_forwarded() -> None:
    patient = make_patient(47)
    note = f"\nCall {patient.given} {patient.family} at {patient.phone}\n"
    batch = claim_837p(patient) + note + ack_free_claim()
    inspection = INSPECTOR.inspect(batch.encode())
    assert any(f.location.startswith("outside the interchanges") for f in inspection.findings)
    outcome = redactor().redact(batch.encode(), "", X12)
    assert outcome.error  # blocked, never forwarded half-read


def ack_free_claim() -> str:
    return claim_837p(make_patient(48))


def test_verification_refuses_what_redaction_left() -> None:
    patient = make_patient(49)
    text = claim_837p(patient)
    searched = {patient.family.lower(), patient.mrn.lower()}
    assert verify_x12(text, searched, set(), False) == "an identifying element survived redaction"
    outcome = redactor().redact(text.encode(), "", X12)
    clean = outcome.body.decode()
    assert verify_x12(clean, searched, set(), False) == ""
    # The removed name put back into a provider's loop is still found.
    sneaked = clean.replace("NORTHSIDE CLINIC", patient.family.upper())
    assert verify_x12(sneaked, searched, set(), False) == "an identifier value survived redaction"
    broken = re.sub(r"SE\*\d+\*", "SE*99*", clean)
    assert verify_x12(broken, searched, set(), False) == (
        "redacted interchange has wrong control counts"
    )
    with_ssn = clean.replace("HI*ABK", f"NTE*ADD*SSN {patient.ssn}~HI*ABK")
    with_ssn = re.sub(r"SE\*(\d+)\*", lambda m: f"SE*{int(m[1]) + 1}*", with_ssn)
    assert verify_x12(with_ssn, set(), set(), False) != ""


@pytest.mark.parametrize("generate", GENERATORS)
def test_redacted_output_inspects_as_the_same_transaction(generate: Generator) -> None:
    patient = make_patient(50)
    text = generate(patient, Delims())
    outcome = redactor().redact(text.encode(), "", X12)
    again = INSPECTOR.inspect(outcome.body)
    assert again.format == X12
    assert again.message_type == INSPECTOR.inspect(text.encode()).message_type
    names = [f for f in again.findings if f.category is Category.NAME]
    assert names  # the places are still there, holding pseudonyms
