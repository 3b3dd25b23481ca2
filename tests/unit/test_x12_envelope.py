"""X12 interchanges found and split by their own delimiters, and the patient's fields located
by transaction and loop (issue 16, first step: the format plug-in comes next)."""

from __future__ import annotations

import pytest

from gateway.config import Limits
from gateway.formats.x12.envelope import X12Error, find, starts_like_x12
from gateway.formats.x12.patient import patient_fields
from gateway.inspector import Inspector
from gateway.model import Category
from tests.support.patients import make_patient
from tests.support.x12 import Delims, ack_999, validate
from tests.support.x12 import claim_837p as generated_837p

PATIENT = make_patient(16)


def claim_837p(e: str = "*", c: str = ":", t: str = "~") -> str:
    """A valid 837P (pyx12 agrees, see test_generated_claims_are_valid) with these delimiters."""
    return generated_837p(PATIENT, Delims(e, "!" if e == "^" else "^", c, t))


ACK = ack_999()


def test_an_interchange_is_split_by_the_delimiters_its_header_declares() -> None:
    for e, c, t in (("*", ":", "~"), ("|", ">", "\n"), ("^", "\\", "'")):
        text = claim_837p(e, c, t)
        assert starts_like_x12(text)
        (found,) = find(text)
        assert (found.delimiters.element, found.delimiters.component) == (e, c)
        assert found.delimiters.segment == t
        assert found.transactions() == ["837"]
        assert [s.tag for s in found.segments][:3] == ["ISA", "GS", "ST"]
        assert found.segments[-1].tag == "IEA"


def test_what_real_senders_send_is_read() -> None:
    text = claim_837p()
    lower = text.lower().replace("~", "~\r\n")  # lower case, CR/LF after each terminator
    wrapped = "\n".join(text[i : i + 80] for i in range(0, len(text), 80))  # 80 columns
    for variant in (lower, wrapped, text[:-1]):  # and no final terminator
        (found,) = find(variant)
        tags = [s.tag for s in found.segments]
        assert tags[0] == "ISA" and "NM1" in tags and tags[-1] == "IEA", tags
    batch = find(text + "\r\n" + text)
    assert len(batch) == 2
    # Each interchange of a batch ends at its own IEA, whatever terminates its segments,
    # in upper or lower case.
    for e, c, t in (("*", ":", "~"), ("|", ">", "\n"), ("^", "\\", "'")):
        one = claim_837p(e, c, t)
        for joined in (one + one, one.lower() + "\n" + one.lower(), one + "\n \n" + one):
            pair = find(joined)
            assert [len(i.segments) for i in pair] == [len(find(one)[0].segments)] * 2
            assert all(i.segments[-1].tag == "IEA" for i in pair)
    bare = find("ST*837*0001~NM1*IL*1*DOE*JOHN~SE*3*0001~")
    assert len(bare) == 1 and not bare[0].has_isa and bare[0].segments[1].element(3) == "DOE"
    # A bare functional group ends at its GE, whatever follows it.
    group = "GS*HC*A*B*20261201*1200*1*X*005010X222A1~ST*837*0001~SE*2*0001~GE*1*1~"
    (alone,) = find(group + "NOTE: call back tomorrow")
    assert [s.tag for s in alone.segments] == ["GS", "ST", "SE", "GE"]
    assert alone.end == len(group)


def test_a_header_that_cannot_be_read_is_an_error() -> None:
    with pytest.raises(X12Error):
        find("ISA*00*short~GS*HC~")
    assert not starts_like_x12("ISA 00 plain words")


def test_the_patient_is_found_by_loop_never_the_providers() -> None:
    (found,) = find(claim_837p())
    fields = {f.location: f.category for f in patient_fields(found)}
    assert fields["2010BA NM1-03"] is Category.NAME
    assert fields["2010BA NM1-04"] is Category.NAME
    assert fields["2010BA NM1-09"] is Category.HEALTH_PLAN_ID
    assert fields["2010BA N3-01"] is Category.GEOGRAPHY
    assert fields["2010BA N4-03"] is Category.GEOGRAPHY
    assert fields["2010BA DMG-02"] is Category.DATE
    assert fields["2010BA REF-02"] is Category.SSN
    assert fields["2300 CLM-01"] is Category.ACCOUNT_NUMBER
    assert fields["2300 DTP-03"] is Category.DATE
    assert fields["2300 REF-02"] is Category.MRN
    assert fields["2400 DTP-03"] is Category.DATE
    assert fields["2300 REF-02"] is Category.MRN
    assert "2300 NTE-02" in fields
    # Provider and payer loops are not patient PHI.
    names = [f.location for f in patient_fields(found)]
    assert not any("NM1-85" in n or "-82" in n or "-PR" in n for n in names)
    segments = found.segments
    provider_rows = {
        i
        for i, s in enumerate(segments)
        if s.tag == "NM1" and s.element(1) in ("85", "82", "PR", "41")
    }
    assert not provider_rows & {f.segment for f in patient_fields(found)}


def test_an_acknowledgement_has_no_patient_fields() -> None:
    (found,) = find(ACK)
    assert found.transactions() == ["999"]
    assert list(patient_fields(found)) == []


INSPECTOR = Inspector(Limits())


def test_a_claim_is_phi_and_says_where_and_an_acknowledgement_is_not() -> None:
    claim = INSPECTOR.inspect(claim_837p().encode())
    assert claim.format.value == "x12" and claim.message_type == "837"
    assert claim.contains_phi
    locations = {f.location for f in claim.findings}
    assert {"2010BA NM1-03", "2010BA REF-02", "2300 CLM-01"} <= locations
    assert not any("DOE" in f.location or "123456789" in f.location for f in claim.findings)
    ack = INSPECTOR.inspect(ACK.encode())
    assert ack.format.value == "x12" and ack.message_type == "999"
    assert not ack.contains_phi and ack.inspected
    # Wrapped in base64 inside JSON, it is found all the same.
    import base64
    import json

    wrapped = json.dumps({"payload": base64.b64encode(claim_837p().encode()).decode()})
    assert INSPECTOR.inspect(wrapped.encode()).contains_phi


def test_an_unreadable_interchange_is_an_error_not_a_pass() -> None:
    broken = INSPECTOR.inspect(b"ISA*00*short header~GS*HC~ST*837*0001~SE*2*0001~")
    assert not broken.inspected and "X12" in broken.error


def test_generated_claims_are_valid() -> None:
    for text in (claim_837p(), claim_837p("|", ">", "\n"), claim_837p("^", "\\", "'"), ACK):
        assert validate(text) == []


def test_the_refusals_are_valid_x12() -> None:
    from gateway.formats.x12.ack import envelope_reply, reject_999, reject_ta1

    reply = envelope_reply(find(claim_837p()))
    ack = reject_999(reply, "INC-20261202T000000Z-3f9a1c0b")
    assert validate(ack) == []
    assert "IK5*R*5~" in ack and "AK9*R*1*1*0~" in ack and "AK2*837*0001" in ack
    ta1 = reject_ta1(reply, "INC-20261202T000000Z-3f9a1c0b")
    assert "TA1*000000001*261201*1200*R*024~" in ta1
    # pyx12's maps want a functional group in every interchange, which a TA1-only one (IEA01
    # 0) does not have: its envelope is checked by our reader instead.
    (read,) = find(ta1)
    assert [s.tag for s in read.segments] == ["ISA", "TA1", "IEA"]
    assert read.segments[2].element(1) == "0"
    assert read.segments[2].element(2) == read.segments[0].element(13)
