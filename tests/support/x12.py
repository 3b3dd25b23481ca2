"""Synthetic X12 5010 interchanges for synthetic patients, with any delimiters, and the
independent validator the tests check them (and the gateway's answers) with: pyx12, which
carries the implementation guides' maps."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from tests.support.patients import Patient


@dataclass(frozen=True)
class Delims:
    element: str = "*"
    repetition: str = "^"
    component: str = ":"
    segment: str = "~"
    after: str = ""  # written after each terminator (CR/LF in many files)


DEFAULT = Delims()


def isa(d: Delims = DEFAULT, control: str = "000000001", usage: str = "T") -> str:
    fields = [
        "ISA", "00", " " * 10, "00", " " * 10, "ZZ", "SUBMITTERID".ljust(15), "ZZ",
        "RECEIVERID".ljust(15), "261201", "1200", d.repetition, "00501", control, "0", usage,
        d.component,
    ]  # fmt: skip
    header = d.element.join(fields) + d.segment
    assert len(header) == 106, len(header)
    return header + d.after


def _interchange(body: list[list[str]], functional: str, version: str, d: Delims) -> str:
    """ISA, one GS group around one transaction set (ST/SE counted), GE, IEA."""
    st = body[0]
    sets = [*body, ["SE", str(len(body) + 1), st[2]]]
    segments = [
        ["GS", functional, "SUBMITTERID", "RECEIVERID", "20261201", "1200", "1", "X", version],
        *sets,
        ["GE", "1", "1"],
        ["IEA", "1", "000000001"],
    ]
    return isa(d) + "".join(d.element.join(s) + d.segment + d.after for s in segments)


def claim_837p(patient: Patient, d: Delims = DEFAULT) -> str:
    """A professional claim: the subscriber is the patient (name, member id, address, birth
    date, SSN), with a medical record number, an admission date, a note and one service."""
    c = d.component
    body = [
        ["ST", "837", "0001", "005010X222A1"],
        ["BHT", "0019", "00", "0123", "20261201", "1200", "CH"],
        ["NM1", "41", "2", "NORTHSIDE BILLING", "", "", "", "", "46", "TGJ23"],
        ["PER", "IC", "BILLING DESK", "TE", "3125550100"],
        ["NM1", "40", "2", "ACME CLEARINGHOUSE", "", "", "", "", "46", "66783JJT"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "85", "2", "NORTHSIDE CLINIC", "", "", "", "", "XX", "1234567893"],
        ["N3", "1 CLINIC WAY"],
        ["N4", "CHICAGO", "IL", "606010000"],
        ["REF", "EI", "123456789"],
        ["HL", "2", "1", "22", "0"],
        ["SBR", "P", "18", "", "", "", "", "", "", "CI"],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["N3", patient.street],
        ["N4", patient.city, patient.state, patient.zip],
        ["DMG", "D8", patient.birth_date, "M"],
        ["REF", "SY", patient.ssn.replace("-", "")],
        ["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "12345"],
        ["CLM", patient.account, "100", "", "", f"11{c}B{c}1", "Y", "A", "Y", "Y"],
        ["DTP", "435", "D8", patient.admit_date],
        ["REF", "EA", patient.mrn],
        ["NTE", "ADD", f"PATIENT {patient.given} {patient.family} ASKED FOR A CALL"],
        ["HI", f"ABK{c}J449"],
        ["LX", "1"],
        ["SV1", f"HC{c}99213", "100", "UN", "1", "", "", "1"],
        ["DTP", "472", "D8", patient.admit_date],
    ]
    return _interchange(body, "HC", "005010X222A1", d)


def ack_999(d: Delims = DEFAULT) -> str:
    """An accepting 999: envelope only, no patient."""
    body = [
        ["ST", "999", "0001", "005010X231A1"],
        ["AK1", "HC", "1", "005010X222A1"],
        ["AK2", "837", "0001", "005010X222A1"],
        ["IK5", "A"],
        ["AK9", "A", "1", "1", "1"],
    ]
    return _interchange(body, "FA", "005010X231A1", d)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def validate(text: str) -> list[str]:
    """pyx12's findings for an interchange (empty: valid against its implementation guide)."""
    import pyx12.params
    import pyx12.x12n_document

    collect = _Collect()
    logger = logging.getLogger("pyx12")
    logger.addHandler(collect)
    try:
        ok = pyx12.x12n_document.x12n_document(
            param=pyx12.params.params(),
            src_file=io.StringIO(text),
            fd_997=None,  # its 999 generator fails on an 835 without ST03; not needed here
            fd_html=None,
            fd_xmldoc=None,
        )
    finally:
        logger.removeHandler(collect)
    if not ok and not collect.messages:
        collect.messages.append("pyx12: not valid")
    return collect.messages


def remittance_835(patient: Patient, d: Delims = DEFAULT) -> str:
    """A payment advice for one claim of the patient (CLP, NM1*QC, dates of service)."""
    c = d.component
    body = [
        ["ST", "835", "0001"],
        ["BPR", "I", "80", "C", "ACH", "CCP", "01", "999999999", "DA", "123456", "1512345678",
         "", "01", "999988880", "DA", "98765", "20261201"],
        ["TRN", "1", "12345", "1512345678"],
        ["DTM", "405", "20261201"],
        ["N1", "PR", "ACME HEALTH PLAN"],
        ["N3", "1 PAYER WAY"],
        ["N4", "CHICAGO", "IL", "60601"],
        ["PER", "BL", "CLAIMS", "TE", "3125550199"],
        ["N1", "PE", "NORTHSIDE CLINIC", "XX", "1234567893"],
        ["LX", "1"],
        ["CLP", patient.account, "1", "100", "80", "", "12", "PAYERCLAIM77", "11", "1"],
        ["NM1", "QC", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["DTM", "232", patient.admit_date],
        ["SVC", f"HC{c}99213", "100", "80", "", "1"],
        ["DTM", "472", patient.admit_date],
        ["CAS", "CO", "45", "20"],
    ]  # fmt: skip
    return _interchange(body, "HP", "005010X221A1", d)


def enrollment_834(patient: Patient, d: Delims = DEFAULT) -> str:
    """A member enrolled: INS, subscriber number, name and SSN, contact, address, birth date."""
    body = [
        ["ST", "834", "0001", "005010X220A1"],
        ["BGN", "00", "12456", "20261201", "1200", "", "", "", "2"],
        ["N1", "P5", "OXLADE MILLS", "FI", "123456789"],
        ["N1", "IN", "ACME HEALTH PLAN", "FI", "987654321"],
        ["INS", "Y", "18", "021", "28", "A", "", "", "FT"],
        ["REF", "0F", patient.insurance_id],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "34",
         patient.ssn.replace("-", "")],
        ["PER", "IP", "", "HP", patient.phone.translate(str.maketrans("", "", "() -"))],
        ["N3", patient.street],
        ["N4", patient.city, patient.state, patient.zip],
        ["DMG", "D8", patient.birth_date, "F"],
        ["HD", "021", "", "HLT"],
        ["DTP", "348", "D8", "20260101"],
    ]  # fmt: skip
    return _interchange(body, "BE", "005010X220A1", d)


def eligibility_270(patient: Patient, d: Delims = DEFAULT) -> str:
    """An eligibility inquiry for the subscriber (2100C): name, member id, birth date."""
    body = [
        ["ST", "270", "0001", "005010X279A1"],
        ["BHT", "0022", "13", "10001234", "20261201", "1200"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "12345"],
        ["HL", "2", "1", "21", "1"],
        ["NM1", "1P", "2", "NORTHSIDE CLINIC", "", "", "", "", "XX", "1234567893"],
        ["HL", "3", "2", "22", "0"],
        ["TRN", "1", "93175012547", "9877281234"],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["DMG", "D8", patient.birth_date],
        ["DTP", "291", "D8", "20261201"],
        ["EQ", "30"],
    ]
    return _interchange(body, "HS", "005010X279A1", d)


def claim_status_276(patient: Patient, d: Delims = DEFAULT) -> str:
    """A claim status request: the subscriber's birth date before the name (2000D), the
    patient account number and the service dates."""
    body = [
        ["ST", "276", "0001", "005010X212"],
        ["BHT", "0010", "13", "ABC276XXX", "20261201", "1200"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "12345"],
        ["HL", "2", "1", "21", "1"],
        ["NM1", "41", "2", "NORTHSIDE BILLING", "", "", "", "", "46", "X67E"],
        ["HL", "3", "2", "19", "1"],
        ["NM1", "1P", "2", "NORTHSIDE CLINIC", "", "", "", "", "XX", "1234567893"],
        ["HL", "4", "3", "22", "0"],
        ["DMG", "D8", patient.birth_date, "M"],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["TRN", "1", "ABCXYZ1"],
        ["REF", "EJ", patient.account],
        ["AMT", "T3", "100"],
        ["DTP", "472", "RD8", f"{patient.admit_date}-{patient.admit_date}"],
    ]
    return _interchange(body, "HR", "005010X212", d)
