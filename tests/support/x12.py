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
            fd_997=io.StringIO(),
            fd_html=None,
            fd_xmldoc=None,
        )
    finally:
        logger.removeHandler(collect)
    if not ok and not collect.messages:
        collect.messages.append("pyx12: not valid")
    return collect.messages
