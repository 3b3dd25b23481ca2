"""The patient in each X12 transaction the issue names, by loop: generated for synthetic
patients, valid for pyx12 where it has the 5010 map (835, 834; it has none for 270/271, 276
and 278, whose structure our own reader checks), and inspected as PHI with the right places."""

from __future__ import annotations

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
    claim_837p,
    claim_status_276,
    eligibility_270,
    enrollment_834,
    remittance_835,
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


NOT_PATIENTS = ("PR", "PE", "85", "1P", "41", "P5", "IN")


def test_payer_and_provider_loops_are_not_the_patient() -> None:
    for generate, _, _ in EXPECTED:
        (interchange,) = find(generate(PATIENT))
        flagged = {f.segment for f in patient_fields(interchange)}
        for index, segment in enumerate(interchange.segments):
            if segment.tag in ("NM1", "N1") and segment.element(1) in (
                "PR",
                "PE",
                "85",
                "1P",
                "41",
                "P5",
                "IN",
            ):
                assert index not in flagged, (segment.tag, segment.element(1))


def test_the_generated_transactions_pyx12_knows_are_valid() -> None:
    for generate in (claim_837p, remittance_835, enrollment_834):
        assert validate(generate(PATIENT)) == []


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
