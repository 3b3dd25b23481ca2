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


def claim_837p(patient: Patient, d: Delims = DEFAULT, services: int = 1) -> str:
    """A professional claim: the subscriber is the patient (name, member id, address, birth
    date, SSN), with a medical record number, an admission date, a note and ``services``
    service lines."""
    return _interchange(_claim_837p_set(patient, d, services), "HC", "005010X222A1", d)


def claim_batch(patients: list[Patient], d: Delims = DEFAULT, services: int = 1) -> str:
    """A batch file as clearinghouses send them: one interchange, one functional group, a
    professional claim transaction set per patient (ST/SE control numbers counted up)."""
    segments: list[list[str]] = [
        ["GS", "HC", "SUBMITTERID", "RECEIVERID", "20261201", "1200", "1", "X", "005010X222A1"]
    ]
    for number, patient in enumerate(patients, 1):
        body = _claim_837p_set(patient, d, services)
        control = f"{number:04d}"
        body[0][2] = control
        segments += [*body, ["SE", str(len(body) + 1), control]]
    segments += [["GE", str(len(patients)), "1"], ["IEA", "1", "000000001"]]
    return isa(d) + "".join(d.element.join(s) + d.segment + d.after for s in segments)


def _claim_837p_set(patient: Patient, d: Delims, services: int) -> list[list[str]]:
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
    ]
    for line in range(1, services + 1):
        body += [
            ["LX", str(line)],
            ["SV1", f"HC{c}{99210 + line % 6}", "100", "UN", "1", "", "", "1"],
            ["DTP", "472", "D8", patient.admit_date],
        ]
    claim = next(segment for segment in body if segment[0] == "CLM")
    claim[2] = str(100 * services)  # CLM-02: the total of the lines
    return body


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
        ["N1", "P5", patient.employer.upper(), "FI", "123456789"],  # the employer
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


def claim_837i(patient: Patient, d: Delims = DEFAULT) -> str:
    """An institutional claim for a dependent (2000C): the subscriber and the patient both
    named, statement and admission dates, a medical record number, an attending physician."""
    c = d.component
    body = [
        ["ST", "837", "0001", "005010X223A2"],
        ["BHT", "0019", "00", "0123", "20261201", "1200", "CH"],
        ["NM1", "41", "2", "NORTHSIDE BILLING", "", "", "", "", "46", "TGJ23"],
        ["PER", "IC", "BILLING DESK", "TE", "3125550100"],
        ["NM1", "40", "2", "ACME CLEARINGHOUSE", "", "", "", "", "46", "66783JJT"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "85", "2", "NORTHSIDE HOSPITAL", "", "", "", "", "XX", "1234567893"],
        ["N3", "1 HOSPITAL WAY"],
        ["N4", "CHICAGO", "IL", "606010000"],
        ["REF", "EI", "123456789"],
        ["HL", "2", "1", "22", "1"],
        ["SBR", "P", "", "GRP01", "", "", "", "", "", "CI"],
        ["NM1", "IL", "1", "Hollowmere", patient.relative_given, "", "", "", "MI",
         patient.insurance_id],
        ["N3", patient.street],
        ["N4", patient.city, patient.state, patient.zip],
        ["DMG", "D8", "19600704", "F"],
        ["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "12345"],
        ["HL", "3", "2", "23", "0"],
        ["PAT", "19"],
        ["NM1", "QC", "1", patient.family, patient.given],
        ["N3", patient.street],
        ["N4", patient.city, patient.state, patient.zip],
        ["DMG", "D8", patient.birth_date, "M"],
        ["CLM", patient.account, "500", "", "", f"11{c}A{c}1", "", "A", "Y", "Y"],
        ["DTP", "434", "RD8", f"{patient.admit_date}-{patient.admit_date}"],
        ["DTP", "435", "DT", f"{patient.admit_date}0930"],
        ["CL1", "1", "7", "01"],
        ["REF", "EA", patient.mrn],
        ["HI", f"ABK{c}J449"],
        ["NM1", "71", "1", "ATTENDING", "ALICE", "", "", "", "XX", "1234567893"],
        ["LX", "1"],
        ["SV2", "0450", f"HC{c}99283", "500", "UN", "1"],
        ["DTP", "472", "D8", patient.admit_date],
    ]  # fmt: skip
    return _interchange(body, "HC", "005010X223A2", d)


def claim_837d(patient: Patient, d: Delims = DEFAULT) -> str:
    """A dental claim: the subscriber is the patient; a cleaning on one tooth."""
    c = d.component
    body = [
        ["ST", "837", "0001", "005010X224A2"],
        ["BHT", "0019", "00", "0123", "20261201", "1200", "CH"],
        ["NM1", "41", "2", "NORTHSIDE DENTAL", "", "", "", "", "46", "TGJ23"],
        ["PER", "IC", "FRONT DESK", "TE", "3125550100"],
        ["NM1", "40", "2", "ACME CLEARINGHOUSE", "", "", "", "", "46", "66783JJT"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "85", "2", "NORTHSIDE DENTAL", "", "", "", "", "XX", "1234567893"],
        ["N3", "1 DENTAL WAY"],
        ["N4", "CHICAGO", "IL", "606010000"],
        ["REF", "EI", "123456789"],
        ["HL", "2", "1", "22", "0"],
        ["SBR", "P", "18", "", "", "", "", "", "", "CI"],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["N3", patient.street],
        ["N4", patient.city, patient.state, patient.zip],
        ["DMG", "D8", patient.birth_date, "F"],
        ["NM1", "PR", "2", "ACME DENTAL PLAN", "", "", "", "", "PI", "12345"],
        ["CLM", patient.account, "200", "", "", f"11{c}B{c}1", "Y", "A", "Y", "Y"],
        ["DTP", "472", "D8", patient.admit_date],
        ["REF", "EA", patient.mrn],
        ["NTE", "ADD", f"CALL {patient.phone} BEFORE THE VISIT"],
        ["LX", "1"],
        ["SV3", f"AD{c}D1110", "200", "", "", "", "1"],
        ["TOO", "JP", "3"],
    ]  # fmt: skip
    return _interchange(body, "HC", "005010X224A2", d)


def eligibility_271(patient: Patient, d: Delims = DEFAULT) -> str:
    """An eligibility answer: the subscriber's name, id, address, birth date and a message."""
    body = [
        ["ST", "271", "0001", "005010X279A1"],
        ["BHT", "0022", "11", "10001234", "20261201", "1200"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "12345"],
        ["HL", "2", "1", "21", "1"],
        ["NM1", "1P", "2", "NORTHSIDE CLINIC", "", "", "", "", "XX", "1234567893"],
        ["HL", "3", "2", "22", "0"],
        ["TRN", "2", "93175012547", "9877281234"],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["N3", patient.street],
        ["N4", patient.city, patient.state, patient.zip],
        ["DMG", "D8", patient.birth_date, "M"],
        ["DTP", "346", "D8", "20260101"],
        ["EB", "1", "IND", "30", "", "GOLD PLAN"],
        ["MSG", f"MEMBER {patient.given} {patient.family} ALSO COVERED UNDER {patient.mrn}"],
    ]  # fmt: skip
    return _interchange(body, "HB", "005010X279A1", d)


def claim_status_277(patient: Patient, d: Delims = DEFAULT) -> str:
    """A claim status answer for the subscriber's claim (2100D, 2200D)."""
    c = d.component
    body = [
        ["ST", "277", "0001", "005010X212"],
        ["BHT", "0010", "08", "ABC277XXX", "20261201", "1200", "DG"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "12345"],
        ["HL", "2", "1", "21", "1"],
        ["NM1", "41", "2", "NORTHSIDE BILLING", "", "", "", "", "46", "X67E"],
        ["HL", "3", "2", "19", "1"],
        ["NM1", "1P", "2", "NORTHSIDE CLINIC", "", "", "", "", "XX", "1234567893"],
        ["HL", "4", "3", "22", "0"],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["TRN", "2", "ABCXYZ1"],
        ["STC", f"A1{c}20", "20261201", "", "100", "80"],
        ["REF", "1K", "PAYERCLAIM77"],
        ["REF", "EJ", patient.account],
        ["DTP", "472", "RD8", f"{patient.admit_date}-{patient.admit_date}"],
    ]
    return _interchange(body, "HN", "005010X212", d)


def acknowledgement_277ca(d: Delims = DEFAULT) -> str:
    """A claim acknowledgement that rejects a whole batch at the provider level: envelope,
    clearinghouse, submitter and provider, no patient loop (pyx12's X214 map wants a patient
    level under every provider, so this one is checked by our own reader only)."""
    c = d.component
    body = [
        ["ST", "277", "0001", "005010X214"],
        ["BHT", "0085", "08", "BATCH0001", "20261201", "1200", "TH"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "AY", "2", "ACME CLEARINGHOUSE", "", "", "", "", "46", "66783JJT"],
        ["TRN", "1", "BATCH0001"],
        ["DTP", "050", "D8", "20261201"],
        ["DTP", "009", "D8", "20261201"],
        ["HL", "2", "1", "21", "1"],
        ["NM1", "41", "2", "NORTHSIDE BILLING", "", "", "", "", "46", "TGJ23"],
        ["TRN", "2", "0123"],
        ["STC", f"A3{c}24", "", "U", "100"],
        ["QTY", "AA", "1"],
        ["AMT", "YY", "100"],
        ["HL", "3", "2", "19", "0"],
        ["NM1", "85", "2", "NORTHSIDE CLINIC", "", "", "", "", "XX", "1234567893"],
        ["TRN", "1", "0"],
        ["STC", f"A3{c}24", "", "U", "100"],
    ]
    return _interchange(body, "HN", "005010X214", d)


def review_278(patient: Patient, d: Delims = DEFAULT) -> str:
    """A services review request: the subscriber (2010C) and the event's dates (2000E)."""
    c = d.component
    body = [
        ["ST", "278", "0001", "005010X217"],
        ["BHT", "0007", "13", "REVIEW0001", "20261201", "1200"],
        ["HL", "1", "", "20", "1"],
        ["NM1", "X3", "2", "ACME REVIEW", "", "", "", "", "PI", "12345"],
        ["HL", "2", "1", "21", "1"],
        ["NM1", "1P", "2", "NORTHSIDE CLINIC", "", "", "", "", "XX", "1234567893"],
        ["HL", "3", "2", "22", "1"],
        ["NM1", "IL", "1", patient.family, patient.given, "", "", "", "MI", patient.insurance_id],
        ["DMG", "D8", patient.birth_date, "M"],
        ["HL", "4", "3", "EV", "0"],
        ["UM", "HS", "I", "3", f"11{c}B"],
        ["DTP", "472", "D8", patient.admit_date],
        ["HI", f"ABK{c}J449"],
        ["MSG", f"RE {patient.family} MRN {patient.mrn}"],
    ]
    return _interchange(body, "HI", "005010X217", d)


SOAP_12 = "http://www.w3.org/2003/05/soap-envelope"
CORE_NS = "http://www.caqh.org/SOAP/WSDL/CORERule2.2.0.xsd"


def core_envelope(
    payload: str,
    request: str = "COREEnvelopeRealTimeRequest",
    soap: str = SOAP_12,
    sender: str = "HospitalA",
    payload_type: str = "X12_270_Request_005010X279A1",
) -> str:
    """A CAQH CORE connectivity request (rule 270) around ``payload``, the Payload element's
    content as written (escaped X12, a CDATA section, or base64)."""
    fields = [
        ("PayloadType", payload_type),
        ("ProcessingMode", "RealTime" if "RealTime" in request else "Batch"),
        ("PayloadID", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
        ("TimeStamp", "2026-12-01T10:20:34Z"),
        ("SenderID", sender),
        ("ReceiverID", "PayerB"),
        ("CORERuleVersion", "2.2.0"),
    ]
    elements = "".join(f"<{k}>{v}</{k}>" for k, v in fields)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{soap}" '
        f'xmlns:cor="{CORE_NS}"><soapenv:Header/><soapenv:Body><cor:{request}>{elements}'
        f"<Payload>{payload}</Payload></cor:{request}></soapenv:Body></soapenv:Envelope>"
    )
