"""The patient in each X12 transaction the issue names, by loop: generated for synthetic
patients, valid for pyx12 where it has the 5010 map (837P, 837I, 835, 834; it has none for
837D, 270/271, 276/277 and 278, whose structure our own reader checks), and inspected as PHI
with the right places. A 277CA without patient loops is no PHI."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Limits
from gateway.formats.x12.envelope import find
from gateway.formats.x12.patient import patient_fields
from gateway.inspector import Inspector
from gateway.model import Category
from tests.support.patients import Patient, make_patient
from tests.support.x12 import (
    acknowledgement_277ca,
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
from tests.unit.test_nested import assert_sound

INSPECTOR = Inspector(Limits())
PATIENT = make_patient(31)
Generator = Callable[[Patient], str]

EXPECTED: list[tuple[Generator, str, dict[str, Category]]] = [
    (
        remittance_835,
        "835",
        {
            "2100 CLP-01": Category.ACCOUNT_NUMBER,
            "2100 NM1-03": Category.NAME,
            "2100 NM1-09": Category.HEALTH_PLAN_ID,
            "2100 DTM-02": Category.DATE,
            "2110 DTM-02": Category.DATE,
        },
    ),
    (
        enrollment_834,
        "834",
        {
            "2000 REF-02": Category.HEALTH_PLAN_ID,
            "2100A NM1-03": Category.NAME,
            "2100A NM1-09": Category.SSN,
            "2100A PER-04": Category.PHONE,
            "2100A N3-01": Category.GEOGRAPHY,
            "2100A DMG-02": Category.DATE,
            "1000A N1-02": Category.NAME,  # the sponsor: the members' employer
        },
    ),
    (
        eligibility_270,
        "270",
        {
            "2100C NM1-03": Category.NAME,
            "2100C NM1-09": Category.HEALTH_PLAN_ID,
            "2100C DMG-02": Category.DATE,
        },
    ),
    (
        claim_status_276,
        "276",
        {
            "2000D DMG-02": Category.DATE,
            "2100D NM1-03": Category.NAME,
            "2200D REF-02": Category.ACCOUNT_NUMBER,
            "2200D DTP-03": Category.DATE,
        },
    ),
    (
        claim_837i,
        "837",
        {
            "2010BA NM1-03": Category.NAME,  # the subscriber, a relative of the patient
            "2010BA NM1-09": Category.HEALTH_PLAN_ID,
            "2010CA NM1-03": Category.NAME,
            "2010CA N3-01": Category.GEOGRAPHY,
            "2010CA DMG-02": Category.DATE,
            "2300 CLM-01": Category.ACCOUNT_NUMBER,
            "2300 REF-02": Category.MRN,
            "2300 DTP-03": Category.DATE,
            "2400 DTP-03": Category.DATE,
        },
    ),
    (
        claim_837d,
        "837",
        {
            "2010BA NM1-03": Category.NAME,
            "2010BA DMG-02": Category.DATE,
            "2300 CLM-01": Category.ACCOUNT_NUMBER,
            "2300 DTP-03": Category.DATE,
            "2300 REF-02": Category.MRN,
        },
    ),
    (
        eligibility_271,
        "271",
        {
            "2100C NM1-03": Category.NAME,
            "2100C NM1-09": Category.HEALTH_PLAN_ID,
            "2100C N3-01": Category.GEOGRAPHY,
            "2100C N4-03": Category.GEOGRAPHY,
            "2100C DMG-02": Category.DATE,
        },
    ),
    (
        claim_status_277,
        "277",
        {
            "2100D NM1-03": Category.NAME,
            "2100D NM1-09": Category.HEALTH_PLAN_ID,
            "2200D TRN-02": Category.ACCOUNT_NUMBER,
            "2200D REF-02": Category.ACCOUNT_NUMBER,
            "2200D DTP-03": Category.DATE,
        },
    ),
    (
        review_278,
        "278",
        {
            "2010C NM1-03": Category.NAME,
            "2010C NM1-09": Category.HEALTH_PLAN_ID,
            "2010C DMG-02": Category.DATE,
            "2000E DTP-03": Category.DATE,
        },
    ),
]


@pytest.mark.parametrize(("generate", "kind", "expected"), EXPECTED)
def test_each_transaction_names_its_patient_by_loop(
    generate: Generator, kind: str, expected: dict[str, Category]
) -> None:
    text = generate(PATIENT)
    (interchange,) = find(text)
    assert interchange.transactions() == [kind]
    fields = {f.location: f.category for f in patient_fields(interchange)}
    for location, category in expected.items():
        assert fields.get(location) is category, (location, sorted(fields))
    inspection = INSPECTOR.inspect(text.encode())
    assert inspection.contains_phi and inspection.message_type == kind
    for finding in inspection.findings:
        assert not any(v in finding.location for v in PATIENT.identifiers())


# Payers, payees, providers, submitters, insurers: not the patient. (An 834's sponsor, N1*P5,
# is the members' employer, which Safe Harbor removes: see the 834 case.)
NOT_PATIENTS = ("PR", "PE", "85", "1P", "41", "IN", "71", "40")


def test_payer_and_provider_loops_are_not_the_patient() -> None:
    for generate, _, _ in EXPECTED:
        (interchange,) = find(generate(PATIENT))
        flagged = {f.segment for f in patient_fields(interchange)}
        for index, segment in enumerate(interchange.segments):
            if segment.tag in ("NM1", "N1") and segment.element(1) in NOT_PATIENTS:
                assert index not in flagged, (segment.tag, segment.element(1))


def test_the_generated_transactions_pyx12_knows_are_valid() -> None:
    for generate in (claim_837p, claim_837i, remittance_835, enrollment_834):
        assert validate(generate(PATIENT)) == [], generate.__name__


def test_free_text_in_a_message_or_note_is_read_for_the_patient() -> None:
    for generate, location in ((eligibility_271, "2100C MSG-01"), (claim_837d, "2300 NTE-02")):
        (interchange,) = find(generate(PATIENT))
        fields = {f.location: f.free_text for f in patient_fields(interchange)}
        assert fields.get(location) is True, (location, sorted(fields))
        inspection = INSPECTOR.inspect(generate(PATIENT).encode())
        assert any(f.location.startswith(location) for f in inspection.findings)


def test_a_claim_acknowledgement_without_patient_loops_is_no_phi() -> None:
    text = acknowledgement_277ca()
    (interchange,) = find(text)
    assert interchange.transactions() == ["277"]
    assert list(patient_fields(interchange)) == []
    inspection = INSPECTOR.inspect(text.encode())
    assert inspection.format == "x12" and not inspection.contains_phi


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([g for g, _, _ in EXPECTED] + [claim_837p]),
    st.integers(0, 4000),
    st.binary(max_size=8),
)
def test_mutated_interchanges_never_raise(generate: Generator, position: int, junk: bytes) -> None:
    body = bytearray(generate(PATIENT).encode())
    position %= len(body)
    body[position : position + len(junk)] = junk
    assert_sound(INSPECTOR.inspect(bytes(body)))


def test_the_collector_is_paused_while_x12_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's tens of thousands of segments would set off collection after collection
    (gateway/collector.py); the collector is resumed after, also when a reader fails."""
    from gateway.formats.x12 import X12Format

    seen: list[bool] = []
    original = X12Format._inspect

    def spy(self: X12Format, payload: object, reader: object) -> object:
        seen.append(gc.isenabled())
        return original(self, payload, reader)  # type: ignore[arg-type]

    monkeypatch.setattr(X12Format, "_inspect", spy)
    INSPECTOR.inspect(claim_837p(PATIENT).encode())
    assert seen == [False] and gc.isenabled()

    def broken(self: X12Format, payload: object, reader: object) -> object:
        raise KeyError("boom")

    monkeypatch.setattr(X12Format, "_inspect", broken)
    assert INSPECTOR.inspect(claim_837p(PATIENT).encode()).error
    assert gc.isenabled()
