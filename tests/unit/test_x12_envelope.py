"""X12 interchanges found and split by their own delimiters, and the patient's fields located
by transaction and loop (issue 16, first step: the format plug-in comes next)."""

from __future__ import annotations

import pytest

from gateway.config import Limits
from gateway.formats.x12.envelope import X12Error, find, starts_like_x12
from gateway.formats.x12.patient import patient_fields
from gateway.inspector import Inspector
from gateway.model import Category


def isa(element: str = "*", repetition: str = "^", component: str = ":", term: str = "~") -> str:
    fields = [
        "ISA", "00", " " * 10, "00", " " * 10, "ZZ", "SUBMITTER".ljust(15), "ZZ",
        "RECEIVER".ljust(15), "261201", "1200", repetition, "00501", "000000001", "0", "P",
        component,
    ]  # fmt: skip
    header = element.join(fields) + term
    assert len(header) == 106
    return header


def claim_837p(e: str = "*", c: str = ":", t: str = "~") -> str:
    segments = [
        f"GS{e}HC{e}SUBMITTER{e}RECEIVER{e}20261201{e}1200{e}1{e}X{e}005010X222A1",
        f"ST{e}837{e}0001{e}005010X222A1",
        f"BHT{e}0019{e}00{e}244579{e}20261201{e}1200{e}CH",
        f"NM1{e}41{e}2{e}BILLING SERVICE{e}{e}{e}{e}{e}46{e}TGJ23",
        f"HL{e}1{e}{e}20{e}1",
        f"NM1{e}85{e}2{e}CLINIC{e}{e}{e}{e}{e}XX{e}1234567893",
        f"N3{e}1 CLINIC WAY",
        f"HL{e}2{e}1{e}22{e}0",
        f"SBR{e}P{e}18{e}{e}{e}{e}{e}{e}{e}CI",
        f"NM1{e}IL{e}1{e}DOE{e}JOHN{e}Q{e}{e}{e}MI{e}W123456789",
        f"N3{e}12 ELM STREET",
        f"N4{e}SPRINGFIELD{e}IL{e}62701",
        f"DMG{e}D8{e}19700101{e}M",
        f"REF{e}SY{e}123456789",
        f"NM1{e}PR{e}2{e}ACME HEALTH{e}{e}{e}{e}{e}PI{e}12345",
        f"CLM{e}PCN0001{e}100{e}{e}{e}11{c}B{c}1{e}Y{e}A{e}Y{e}Y",
        f"DTP{e}435{e}D8{e}20261115",
        f"REF{e}EA{e}MRN7788",
        f"NTE{e}ADD{e}PATIENT JOHN DOE CALLED",
        f"NM1{e}82{e}1{e}SMITH{e}ANNA{e}{e}{e}{e}XX{e}1497758544",
        f"LX{e}1",
        f"SV1{e}HC{c}99213{e}100{e}UN{e}1{e}{e}{e}1",
        f"DTP{e}472{e}D8{e}20261115",
        f"SE{e}22{e}0001",
        f"GE{e}1{e}1",
        f"IEA{e}1{e}000000001",
    ]
    repetition = "!" if e == "^" else "^"
    return isa(e, repetition, c, t) + t.join(segments) + t


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
    bare = find("ST*837*0001~NM1*IL*1*DOE*JOHN~SE*3*0001~")
    assert len(bare) == 1 and not bare[0].has_isa and bare[0].segments[1].element(3) == "DOE"


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


ACK = isa() + "~".join(
    [
        "GS*FA*R*S*20261201*1200*2*X*005010X231A1",
        "ST*999*0001*005010X231A1",
        "AK1*HC*1*005010X222A1",
        "AK2*837*0001",
        "IK5*A",
        "AK9*A*1*1*1",
        "SE*6*0001",
        "GE*1*2",
        "IEA*1*000000002~",
    ]
)


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
