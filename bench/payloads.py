"""Benchmark payloads, generated here from the repo's synthetic-patient helpers.

Every identifier is synthetic (tests.support.patients); the output is deterministic.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from PIL import Image

from tests.support.dicom import dataset, part10
from tests.support.documents import docx_face_sheet, summary_lines
from tests.support.patients import fhir_patient, fhir_patient_json, hl7_adt, make_patient
from tests.support.protobuf import frame, patient_record
from tests.support.x12 import claim_837p

HL7_TARGET = 2048
BUNDLE_TARGET = 500_000
_SEED = 20240102

# (LOINC code, display, value range, unit), Synthea's usual vital signs and labs.
_OBSERVATIONS: list[tuple[str, str, tuple[float, float], str]] = [
    ("8867-4", "Heart rate", (55, 110), "/min"),
    ("9279-1", "Respiratory rate", (12, 22), "/min"),
    ("8310-5", "Body temperature", (36.1, 38.4), "Cel"),
    ("8302-2", "Body height", (150, 195), "cm"),
    ("29463-7", "Body weight", (50, 120), "kg"),
    ("39156-5", "Body mass index", (18, 35), "kg/m2"),
    ("8480-6", "Systolic blood pressure", (100, 160), "mm[Hg]"),
    ("8462-4", "Diastolic blood pressure", (60, 100), "mm[Hg]"),
    ("2339-0", "Glucose [Mass/volume] in Blood", (70, 180), "mg/dL"),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", (140, 260), "mg/dL"),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", (4.5, 9.0), "%"),
    ("2947-0", "Sodium [Moles/volume] in Blood", (134, 146), "mmol/L"),
    ("6298-4", "Potassium [Moles/volume] in Blood", (3.4, 5.2), "mmol/L"),
    ("38483-4", "Creatinine [Mass/volume] in Blood", (0.6, 1.4), "mg/dL"),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", (11.5, 17.5), "g/dL"),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", (92, 100), "%"),
]


@dataclass(frozen=True)
class Payload:
    name: str
    description: str
    content_type: str
    body: bytes
    phi: bool = True  # False: a clean payload, forwarded abroad with no audit row

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.name}.payload"
        path.write_bytes(self.body)
        return path


def hl7_adt_2k(target: int = HL7_TARGET) -> bytes:
    """ADT^A01 for one synthetic patient, padded with OBX result segments to ~2 KB."""
    rng = random.Random(_SEED)
    message = hl7_adt(make_patient(_SEED), control_id="BENCH0001")
    segments = [s for s in message.split("\r") if s]
    n = sum(1 for s in segments if s.startswith("OBX|"))
    while len("\r".join(segments)) + 1 < target - 60:
        code, display, (low, high), unit = _OBSERVATIONS[n % len(_OBSERVATIONS)]
        n += 1
        value = round(rng.uniform(low, high), 1)
        segments.append(
            f"OBX|{n}|NM|{code}^{display}^LN||{value}|{unit}|||||F|||2024010203{n % 60:02d}"
        )
    return ("\r".join(segments) + "\r").encode()


def x12_837p_2k(target: int = HL7_TARGET) -> bytes:
    """A professional claim (837P) for one synthetic patient, with service lines to ~2 KB."""
    patient = make_patient(_SEED + 4)
    services = 1
    while len(claim_837p(patient, services=services + 1)) <= target:
        services += 1
    return claim_837p(patient, services=services).encode()


def dicom_ct() -> bytes:
    """A CT image (Part 10, 128 x 128 x 16 bit) naming one synthetic patient: ~33 kB."""
    return part10(dataset(make_patient(_SEED + 5), rows=128))


def grpc_record_2k(target: int = HL7_TARGET) -> bytes:
    """One gRPC message (protobuf, no schema on the wire) holding a chart record for one
    synthetic patient, with result notes to ~2 KB."""
    patient = make_patient(_SEED + 6)
    notes: list[str] = []
    while len(patient_record(patient, notes=notes)) < target - 80:
        code, display, _, unit = _OBSERVATIONS[len(notes) % len(_OBSERVATIONS)]
        notes.append(f"{display} ({code}) reviewed; result in {unit} within the reference range.")
    return frame(patient_record(patient, notes=notes))


def fhir_patient_resource() -> bytes:
    return fhir_patient_json(make_patient(_SEED + 1))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _observation(rng: random.Random, subject: str, index: int) -> dict[str, object]:
    code, display, (low, high), unit = _OBSERVATIONS[index % len(_OBSERVATIONS)]
    when = f"20{rng.randint(10, 24):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    category = "vital-signs" if index % len(_OBSERVATIONS) < 8 else "laboratory"
    return {
        "resourceType": "Observation",
        "id": _uuid(rng),
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": code, "display": display}],
            "text": display,
        },
        "subject": {"reference": subject},
        "effectiveDateTime": f"{when}T08:{rng.randint(0, 59):02d}:00-05:00",
        "issued": f"{when}T09:{rng.randint(0, 59):02d}:00.000-05:00",
        "valueQuantity": {
            "value": round(rng.uniform(low, high), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def fhir_bundle(target: int = BUNDLE_TARGET, observations_per_patient: int = 12) -> bytes:
    """A Synthea-like transaction Bundle of Patient and Observation entries, ~target bytes."""
    rng = random.Random(_SEED + 2)
    entries: list[dict[str, object]] = []
    size = 100
    seed = _SEED + 100
    while size < target:
        patient_url = f"urn:uuid:{_uuid(rng)}"
        group: list[dict[str, object]] = [
            {
                "fullUrl": patient_url,
                "resource": fhir_patient(make_patient(seed)),
                "request": {"method": "POST", "url": "Patient"},
            }
        ]
        seed += 1
        for i in range(observations_per_patient):
            group.append(
                {
                    "fullUrl": f"urn:uuid:{_uuid(rng)}",
                    "resource": _observation(rng, patient_url, i),
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
        entries.extend(group)
        size += len(json.dumps(group))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return json.dumps(bundle).encode()


def discharge_summary_200k() -> bytes:
    """A discharge summary as an EHR prints it, ~200 KB: a letterhead picture (noise, so it
    does not compress: most of the bytes), the patient's page and two pages of narrative.
    What reading costs per page beyond that: ``python -m bench.documents``."""
    return _summary_pdf(3)


def _summary_pdf(pages: int) -> bytes:
    rng = random.Random(_SEED)
    side = 258
    letterhead = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    pdf.add_page()
    pdf.image(letterhead, x=10, y=10, w=30)
    pdf.set_y(45)
    for line in summary_lines(make_patient(_SEED + 2)):
        pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    course = (
        "Hospital course: admitted for evaluation, treated with fluids and antibiotics, "
        "vital signs stable on the ward, tolerating diet, ambulating without assistance. "
    )
    for page in range(2, pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 5, f"Page {page}\n" + course * rng.randint(10, 14))
    return bytes(pdf.output())


def clean_json_2k(target: int = HL7_TARGET) -> bytes:
    """A supply-chain order with no identifier of anyone, ~2 KB: what a hospital also sends
    abroad, inspected and forwarded."""
    rng = random.Random(_SEED)
    lines: list[dict[str, object]] = []
    order: dict[str, object] = {"order": "PO-2026-1187", "site": "Central", "lines": lines}
    while len(json.dumps(order)) < target:
        lines.append(
            {
                "sku": f"SKU-{rng.randint(10000, 99999)}",
                "item": rng.choice(["gloves, nitrile, M", "saline 0.9% 500 mL", "gauze 4x4"]),
                "quantity": rng.randint(1, 400),
                "unit_price": round(rng.uniform(0.1, 40), 2),
            }
        )
    return json.dumps(order).encode()


def build_payloads() -> list[Payload]:
    hl7 = hl7_adt_2k()
    patient = fhir_patient_resource()
    bundle = fhir_bundle()
    pdf = discharge_summary_200k()
    docx = docx_face_sheet(make_patient(_SEED + 3))
    claim = x12_837p_2k()
    image = dicom_ct()
    grpc = grpc_record_2k()
    clean = clean_json_2k()
    return [
        Payload(
            "hl7-adt-2k",
            f"HL7 v2 ADT^A01, {len(hl7)} B",
            "x-application/hl7-v2+er7",
            hl7,
        ),
        Payload(
            "clean-json-2k",
            f"supply order JSON, no PHI, {len(clean)} B",
            "application/json",
            clean,
            phi=False,
        ),
        Payload(
            "fhir-patient",
            f"FHIR Patient JSON, {len(patient)} B",
            "application/fhir+json",
            patient,
        ),
        Payload(
            "fhir-bundle-500k",
            f"FHIR Bundle JSON, {len(bundle) // 1000} kB",
            "application/fhir+json",
            bundle,
        ),
        Payload(
            "pdf-200k", f"discharge summary PDF, {len(pdf) // 1000} kB", "application/pdf", pdf
        ),
        Payload("x12-837p-2k", f"X12 837P claim, {len(claim)} B", "application/edi-x12", claim),
        Payload("grpc-record-2k", f"gRPC protobuf record, {len(grpc)} B", "application/grpc", grpc),
        Payload("dicom-ct", f"DICOM CT image, {len(image) // 1000} kB", "application/dicom", image),
        Payload(
            "docx-face-sheet",
            f"DOCX face sheet, {len(docx) // 1000} kB",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            docx,
        ),
    ]
