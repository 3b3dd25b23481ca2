"""The demo's synthetic hospital traffic: made-up patients in every format the gateway reads
(HL7 v2 over HTTP and MLLP, FHIR, a PDF discharge summary, a Word letter, an X12 837 claim, a
DICOM image, an e-mail with the summary attached) plus clean traffic, sent through the
gateway's proxy to a receiver "abroad" and a domestic one.

Every name, number and date is generated and obviously fictional. Nothing here prints or
logs a payload: the sender counts answers by kind.
"""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

_GIVEN = ("Aurelio", "Brunhilde", "Cosimo", "Delphine", "Evander", "Fenella", "Gideon")
_FAMILY = ("Quillfeather", "Ravensworth", "Stonebridge", "Thistlewood", "Underhill")
_CITIES = (("Ashtabula", "OH", "44004"), ("Kalispell", "MT", "59901"))
MLLP_START, MLLP_END = b"\x0b", b"\x1c\r"


@dataclass(frozen=True, slots=True)
class Patient:
    given: str
    family: str
    mrn: str
    ssn: str
    birth_date: str  # YYYYMMDD
    phone: str
    street: str
    city: str
    state: str
    zip: str
    account: str

    @property
    def birth_iso(self) -> str:
        return f"{self.birth_date[:4]}-{self.birth_date[4:6]}-{self.birth_date[6:]}"


def patient(seed: int) -> Patient:
    rng = random.Random(seed)  # noqa: S311 - made-up patients, repeatable per seed
    city, state, zip_code = rng.choice(_CITIES)
    return Patient(
        given=rng.choice(_GIVEN),
        family=rng.choice(_FAMILY) + str(rng.randint(10, 99)),
        mrn=f"MRN{rng.randint(10**7, 10**8 - 1)}",
        ssn=f"{rng.randint(101, 665):03d}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        birth_date=f"{rng.randint(1940, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        phone=f"(555) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
        street=f"{rng.randint(100, 9999)} Juniper Hollow Rd",
        city=city,
        state=state,
        zip=zip_code,
        account=f"ACC{rng.randint(10**6, 10**7 - 1)}",
    )


def hl7_adt(p: Patient, control: str) -> bytes:
    segments = [
        f"MSH|^~\\&|EPIC|GENERAL HOSPITAL|CODING|VENDOR|20261201083000||ADT^A01^ADT_A01|{control}"
        "|P|2.5.1",
        "EVN|A01|20261201083000",
        f"PID|1||{p.mrn}^^^HOSP^MR||{p.family}^{p.given}||{p.birth_date}|F|||{p.street}^^"
        f"{p.city}^{p.state}^{p.zip}||{p.phone}|||||{p.account}|{p.ssn}",
        "PV1|1|I|4E^401^1",
    ]
    return ("\r".join(segments) + "\r").encode()


def fhir_patient(p: Patient) -> bytes:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": p.ssn}],
        "name": [{"family": p.family, "given": [p.given]}],
        "telecom": [{"system": "phone", "value": p.phone}],
        "birthDate": p.birth_iso,
        "address": [{"line": [p.street], "city": p.city, "state": p.state, "postalCode": p.zip}],
    }
    return json.dumps(resource).encode()


def summary_lines(p: Patient) -> list[str]:
    return [
        "DISCHARGE SUMMARY",
        f"Patient: {p.given} {p.family.rstrip('0123456789')}",
        f"MRN: {p.mrn}    DOB: {p.birth_iso}    SSN: {p.ssn}",
        f"Address: {p.street}, {p.city}, {p.state} {p.zip}    Phone: {p.phone}",
        "Diagnosis: community-acquired pneumonia. Discharged home with follow-up.",
    ]


def discharge_pdf(p: Patient) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    for line in summary_lines(p):
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def letter_docx(p: Patient) -> bytes:
    """A minimal WordprocessingML package (the parts Word itself needs to open it)."""
    paragraphs = "".join(
        f'<w:p><w:r><w:t xml:space="preserve">{line}</w:t></w:r></w:p>' for line in summary_lines(p)
    )
    ns = "http://schemas.openxmlformats.org"
    parts = {
        "[Content_Types].xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{ns}/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.'
            'openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
            'document.main+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}/package/2006/'
            f'relationships"><Relationship Id="rId1" Type="{ns}/officeDocument/2006/'
            'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
        ),
        "word/document.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{ns}/'
            f'wordprocessingml/2006/main"><w:body>{paragraphs}</w:body></w:document>'
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for name, text in parts.items():
            package.writestr(name, text)
    return out.getvalue()


def claim_837(p: Patient) -> bytes:
    segments = [
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
        ["NM1", "IL", "1", p.family, p.given, "", "", "", "MI", "INS" + p.mrn[3:]],
        ["N3", p.street],
        ["N4", p.city, p.state, p.zip],
        ["DMG", "D8", p.birth_date, "F"],
        ["REF", "SY", p.ssn.replace("-", "")],
        ["NM1", "PR", "2", "ACME HEALTH PLAN", "", "", "", "", "PI", "12345"],
        ["CLM", p.account, "100", "", "", "11:B:1", "Y", "A", "Y", "Y"],
        ["REF", "EA", p.mrn],
        ["HI", "ABK:J189"],
        ["LX", "1"],
        ["SV1", "HC:99213", "100", "UN", "1", "", "", "1"],
        ["DTP", "472", "D8", "20261130"],
    ]
    segments.append(["SE", str(len(segments) + 1), "0001"])
    isa = "*".join(
        ["ISA", "00", " " * 10, "00", " " * 10, "ZZ", "SUBMITTERID".ljust(15), "ZZ",
         "RECEIVERID".ljust(15), "261201", "1200", "^", "00501", "000000001", "0", "T", ":"]
    )  # fmt: skip
    body = [
        ["GS", "HC", "SUBMITTERID", "RECEIVERID", "20261201", "1200", "1", "X", "005010X222A1"],
        *segments,
        ["GE", "1", "1"],
        ["IEA", "1", "000000001"],
    ]
    return (isa + "~" + "".join("*".join(s) + "~" for s in body)).encode()


def dicom_image(p: Patient, instance: int) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    root = "1.2.826.0.1.3680043.10.1137"
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{root}.7.{p.mrn[-4:]}.{instance}"
    ds.StudyInstanceUID = f"{root}.1.{p.mrn[-4:]}"
    ds.SeriesInstanceUID = f"{root}.2.{p.mrn[-4:]}"
    ds.Modality = "CT"
    ds.StudyDate = "20261130"
    ds.PatientName = f"{p.family}^{p.given}"
    ds.PatientID = p.mrn
    ds.PatientBirthDate = p.birth_date
    ds.PatientAddress = f"{p.street}, {p.city}, {p.state} {p.zip}"
    ds.OtherPatientIDs = p.ssn
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(64)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = bytes(128)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def email_with_summary(p: Patient) -> bytes:
    message = EmailMessage()
    message["From"] = "him@hospital.example"
    message["To"] = "coding@vendor.example"
    message["Subject"] = "Chart for coding"
    message.set_content("Please code the attached discharge summary.")
    message.add_attachment(
        discharge_pdf(p), maintype="application", subtype="pdf", filename="summary.pdf"
    )
    return bytes(message)


def clean_json(n: int) -> bytes:
    return json.dumps({"status": "ok", "beds_free": 12 + n % 5, "ward": "4E"}).encode()


# kind -> (content type, builder of one body for round n)
KINDS: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "hl7-http": ("application/hl7-v2", lambda n: hl7_adt(patient(n), f"DEMO{n:05d}")),
    "fhir": ("application/fhir+json", lambda n: fhir_patient(patient(n))),
    "pdf": ("application/pdf", lambda n: discharge_pdf(patient(n))),
    "docx": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        lambda n: letter_docx(patient(n)),
    ),
    "x12-837": ("application/edi-x12", lambda n: claim_837(patient(n))),
    "dicom": ("application/dicom", lambda n: dicom_image(patient(n), n)),
    "email": ("message/rfc822", lambda n: email_with_summary(patient(n))),
    "clean": ("application/json", clean_json),
}
MLLP_KIND = "hl7-mllp"


@dataclass(slots=True)
class Sent:
    """Answers by (kind, destination name): blocked (451 / MLLP AR), passed, failed."""

    answers: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, kind: str, where: str, outcome: str) -> None:
        self.answers[(kind, where, outcome)] += 1

    def count(self, kind: str, where: str, outcome: str) -> int:
        return self.answers[(kind, where, outcome)]


def post(proxy: tuple[str, int], url: str, body: bytes, content_type: str) -> int:
    """A POST through the explicit proxy; the HTTP status."""
    connection = http.client.HTTPConnection(*proxy, timeout=30)
    try:
        connection.request("POST", url, body=body, headers={"Content-Type": content_type})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def mllp(proxy: tuple[str, int], target: tuple[str, int], message: bytes) -> str:
    """One HL7 message over MLLP through a CONNECT tunnel; the ACK's code (AA, AR, ...)."""
    with socket.create_connection(proxy, timeout=30) as sock:
        host = f"{target[0]}:{target[1]}"
        sock.sendall(f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return "no tunnel"
            head += chunk
        if b" 200" not in head.split(b"\r\n", 1)[0]:
            return "refused"
        sock.sendall(MLLP_START + message + MLLP_END)
        reply = b""
        while MLLP_END not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    for segment in reply.strip(b"\x0b\x1c\r").split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode(errors="replace")
    return "no answer"


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # "abroad" | "domestic"
    http_base: str  # http://127.0.0.2:PORT
    mllp: tuple[str, int]


def send_demo_traffic(
    proxy: tuple[str, int],
    targets: list[Target],
    duration_seconds: float,
    round_seconds: float = 5.0,
    on_round: Callable[[int], None] | None = None,
) -> Sent:
    """Every kind to every target, round after round, for about ``duration_seconds``."""
    sent = Sent()
    started = time.monotonic()
    n = 0
    while True:
        n += 1
        for target in targets:
            for kind, (content_type, build) in KINDS.items():
                try:
                    status = post(proxy, f"{target.http_base}/{kind}", build(n), content_type)
                except OSError:
                    sent.add(kind, target.name, "failed")
                    continue
                outcome = {451: "blocked", 200: "passed"}.get(status, f"http {status}")
                sent.add(kind, target.name, outcome)
            try:
                code = mllp(proxy, target.mllp, hl7_adt(patient(n), f"MLLP{n:05d}"))
            except OSError:
                code = "failed"
            sent.add(MLLP_KIND, target.name, {"AA": "passed", "AR": "blocked"}.get(code, code))
        if on_round is not None:
            on_round(n)
        left = duration_seconds - (time.monotonic() - started)
        if left <= 0:
            return sent
        time.sleep(min(round_seconds, left))
