"""Synthetic patients: every identifier is generated, so a test can search for each value in
whatever reached a receiver, an audit row or a log. Deterministic per seed."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

_GIVEN = [
    "Aurelio",
    "Brunhilde",
    "Cosimo",
    "Delphine",
    "Evander",
    "Fenella",
    "Gideon",
    "Honoria",
    "Ignatius",
    "Jessamine",
    "Leopold",
    "Marisol",
    "Octavia",
    "Percival",
]
_FAMILY = [
    "Quillfeather",
    "Ravensworth",
    "Stonebridge",
    "Thistlewood",
    "Underhill",
    "Vantongeren",
    "Wolfenden",
    "Yarborough",
    "Zabriskie",
    "Ashcombe",
    "Blackwater",
]
_STREETS = ["Juniper Hollow Rd", "Marigold Crescent", "Sycamore Bend Ave", "Tanager Way"]
_CITIES = [
    ("Ashtabula", "OH", "44004"),
    ("Kalispell", "MT", "59901"),
    ("Nacogdoches", "TX", "75961"),
    ("Wapakoneta", "OH", "45895"),
]


@dataclass(frozen=True)
class Patient:
    given: str
    family: str
    mrn: str
    ssn: str
    birth_date: str  # YYYYMMDD
    phone: str
    email: str
    street: str
    city: str
    state: str
    zip: str
    account: str
    insurance_id: str = "INS0000000"
    employer: str = "Quarrybrook Tannery"
    relative_given: str = "Morwenna"
    admit_date: str = "20240102"  # YYYYMMDD
    visit: str = "V0000000"

    def all_identifiers(self) -> list[str]:
        """Including those only the richer renderings (insurance, employer, notes) carry."""
        digits = self.phone.translate(str.maketrans("", "", "() -"))
        return [
            *self.identifiers(),
            self.city,
            self.insurance_id,
            self.employer,
            self.relative_given,
            self.visit,
            self.birth_date_iso,
            digits,
        ]

    def identifiers(self) -> list[str]:
        """Every value that must never appear where PHI must not go."""
        return [
            self.given,
            self.family,
            self.mrn,
            self.ssn,
            self.ssn.replace("-", ""),
            self.birth_date,
            self.phone,
            self.email,
            self.street,
            self.account,
        ]

    @property
    def birth_date_iso(self) -> str:
        d = self.birth_date
        return f"{d[:4]}-{d[4:6]}-{d[6:]}"


def make_patient(seed: int) -> Patient:
    rng = random.Random(seed)
    given, family = rng.choice(_GIVEN), rng.choice(_FAMILY) + str(rng.randint(10, 99))
    city, state, zip_code = rng.choice(_CITIES)
    # SSNs in the valid ranges (area 001-665 and 667-899, group and serial non-zero).
    area = rng.choice([a for a in range(101, 899) if a != 666])
    ssn = f"{area:03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
    return Patient(
        given=given,
        family=family,
        mrn=f"MRN{rng.randint(10**7, 10**8 - 1)}",
        ssn=ssn,
        birth_date=f"{rng.randint(1935, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        phone=f"(555) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
        email=f"{given.lower()}.{family.lower()}@example.org",
        street=f"{rng.randint(100, 9999)} {rng.choice(_STREETS)}",
        city=city,
        state=state,
        zip=zip_code,
        account=f"ACC{rng.randint(10**6, 10**7 - 1)}",
        insurance_id=f"INS{rng.randint(10**8, 10**9 - 1)}",
        employer=rng.choice(["Quarrybrook Tannery", "Velloran Freight", "Oxlade Mills"]),
        relative_given=rng.choice(["Morwenna", "Thaddeus", "Isolde", "Barnaby"]),
        admit_date=f"{rng.randint(2015, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        visit=f"V{rng.randint(10**7, 10**8 - 1)}",
    )


def hl7_adt(
    patient: Patient,
    control_id: str = "MSG00001",
    version: str = "2.5.1",
    delimiters: str = "|^~\\&",
    segment_end: str = "\r",
) -> str:
    f, c, r, e, s = delimiters[0], delimiters[1], delimiters[2], delimiters[3], delimiters[4]
    enc = c + r + e + s
    segments = [
        f"MSH{f}{enc}{f}EPIC{f}GENERAL HOSPITAL{f}CODING{f}VENDOR{f}20240102030405{f}{f}"
        f"ADT{c}A01{c}ADT_A01{f}{control_id}{f}P{f}{version}",
        f"EVN{f}A01{f}20240102030405",
        f"PID{f}1{f}{f}{patient.mrn}{c}{c}{c}HOSP{c}MR{f}{f}{patient.family}{c}{patient.given}"
        f"{f}{f}{patient.birth_date}{f}F{f}{f}{f}{patient.street}{c}{c}{patient.city}{c}"
        f"{patient.state}{c}{patient.zip}{f}{f}{patient.phone}{f}{f}{f}{f}{f}{patient.account}"
        f"{f}{patient.ssn}",
        f"NK1{f}1{f}{patient.family}{c}Morwenna{f}SPO",
        f"PV1{f}1{f}I{f}4E{c}401{c}1{f}{f}{f}{f}1234{c}Careful{c}Clara",
        f"OBX{f}1{f}NM{f}8867-4{c}Heart rate{c}LN{f}{f}72{f}/min{f}{f}{f}{f}{f}F",
    ]
    return segment_end.join(segments) + segment_end


def fhir_patient(patient: Patient) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": patient.mrn.lower(),
        "identifier": [
            {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": patient.mrn},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": patient.ssn},
        ],
        "name": [{"family": patient.family, "given": [patient.given]}],
        "telecom": [
            {"system": "phone", "value": patient.phone},
            {"system": "email", "value": patient.email},
        ],
        "gender": "female",
        "birthDate": patient.birth_date_iso,
        "address": [
            {
                "line": [patient.street],
                "city": patient.city,
                "state": patient.state,
                "postalCode": patient.zip,
            }
        ],
    }


def fhir_patient_json(patient: Patient) -> bytes:
    return json.dumps(fhir_patient(patient)).encode()


def fhir_patient_xml(patient: Patient) -> bytes:
    return (
        '<Patient xmlns="http://hl7.org/fhir">'
        f'<id value="{patient.mrn.lower()}"/>'
        f'<identifier><system value="urn:oid:1.2.36.146.595.217.0.1"/>'
        f'<value value="{patient.mrn}"/></identifier>'
        f'<name><family value="{patient.family}"/><given value="{patient.given}"/></name>'
        f'<telecom><system value="phone"/><value value="{patient.phone}"/></telecom>'
        f'<birthDate value="{patient.birth_date_iso}"/>'
        "</Patient>"
    ).encode()


def fhir_observation_bundle(patient: Patient) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": fhir_patient(patient),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                    "valueQuantity": {"value": 72, "unit": "/min"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


CAPABILITY_STATEMENT = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "date": "2024-01-01",
    "kind": "instance",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [{"mode": "server", "resource": [{"type": "Patient"}]}],
}


def _segment(name: str, fields: dict[int, str], f: str) -> str:
    """A segment from {field number: value}; fields in between stay empty."""
    top = max(fields)
    return f.join([name, *(fields.get(n, "") for n in range(1, top + 1))])


def hl7_rich(
    patient: Patient,
    message_type: str = "ADT^A01",
    version: str = "2.5.1",
    delimiters: str = "|^~\\&",
    segment_end: str = "\r",
) -> str:
    """A fuller message: next of kin, guarantor, insurance, visit number and dates, a
    free-text note and a TX observation that repeat identifiers, a Z-segment."""
    f, c, r, e, s = delimiters[0], delimiters[1], delimiters[2], delimiters[3], delimiters[4]
    address = f"{patient.street}{c}{c}{patient.city}{c}{patient.state}{c}{patient.zip}{c}USA"
    name = f"{patient.family}{c}{patient.given}"
    note = (
        f"Pt {patient.given} {patient.family} (MRN {patient.mrn}) seen; callback "
        f"{patient.phone}, {patient.email}. DOB {patient.birth_date_iso}."
    )
    msh = (
        f"MSH{f}{c}{r}{e}{s}{f}EPIC{f}GENERAL HOSPITAL{f}CODING{f}VENDOR{f}20240102030405"
        f"{f}{f}{message_type.replace('^', c)}{f}CTRL{patient.visit[1:]}{f}P{f}{version}"
    )
    segments = [
        msh,
        _segment("EVN", {1: "A01", 2: f"{patient.admit_date}0930"}, f),
        _segment(
            "PID",
            {
                1: "1",
                3: f"{patient.mrn}{c}{c}{c}HOSP{c}MR",
                5: name,
                7: patient.birth_date,
                8: "F",
                11: address,
                13: f"{patient.phone}{c}PRN{c}PH{r}{c}NET{c}Internet{c}{patient.email}",
                18: patient.account,
                19: patient.ssn,
            },
            f,
        ),
        _segment(
            "NK1",
            {
                1: "1",
                2: f"{patient.family}{c}{patient.relative_given}",
                3: f"SPO{c}Spouse",
                4: address,
                5: patient.phone,
            },
            f,
        ),
        _segment(
            "PV1",
            {
                1: "1",
                2: "I",
                3: f"4E{c}401{c}1",
                7: f"1234{c}Careful{c}Clara",
                19: patient.visit,
                44: f"{patient.admit_date}0930",
            },
            f,
        ),
        _segment(
            "GT1",
            {
                1: "1",
                3: name,
                5: address,
                6: patient.phone,
                8: patient.birth_date,
                9: "F",
                11: "SEL",
                12: patient.ssn,
                16: patient.employer,
            },
            f,
        ),
        _segment(
            "IN1",
            {
                1: "1",
                2: "PPO",
                3: "AETNA",
                4: "Aetna Health",
                16: name,
                17: "SEL",
                18: patient.birth_date,
                19: address,
                36: patient.insurance_id,
            },
            f,
        ),
        _segment(
            "OBX",
            {
                1: "1",
                2: "TX",
                3: f"11492-6{c}History{c}LN",
                5: note,
                11: "F",
                14: patient.admit_date,
            },
            f,
        ),
        _segment("NTE", {1: "1", 3: note}, f),
        _segment("ZPI", {1: "1", 2: patient.mrn, 3: patient.given}, f),
    ]
    return segment_end.join(segments) + segment_end


def fhir_rich_bundle(patient: Patient) -> dict[str, object]:
    """A transaction Bundle: Patient (with a contact), Encounter with a period, Observation with
    a note, Coverage, all linked by urn:uuid references."""
    pid = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    eid = "urn:uuid:0c1f3a52-0b35-4d49-9f4e-2a9f1c9d7e11"
    admit = patient.admit_date
    admit_iso = f"{admit[:4]}-{admit[4:6]}-{admit[6:]}"
    resource = fhir_patient(patient)
    resource["contact"] = [
        {
            "name": {"family": patient.family, "given": [patient.relative_given]},
            "telecom": [{"system": "phone", "value": patient.phone}],
        }
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pid,
                "resource": resource,
                "request": {"method": "PUT", "url": f"Patient?identifier={patient.mrn}"},
            },
            {
                "fullUrl": eid,
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "IMP",
                    },
                    "identifier": [{"system": "urn:hosp:visit", "value": patient.visit}],
                    "subject": {"reference": pid, "display": f"{patient.given} {patient.family}"},
                    "period": {"start": f"{admit_iso}T09:30:00-05:00", "end": admit_iso},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": pid},
                    "encounter": {"reference": eid},
                    "effectiveDateTime": f"{admit_iso}T10:00:00Z",
                    "issued": f"{admit_iso}T10:05:00Z",
                    "note": [
                        {"text": f"{patient.given} reports feeling well; phone {patient.phone}"}
                    ],
                    "valueQuantity": {"value": 72, "unit": "/min"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    "resourceType": "Coverage",
                    "status": "active",
                    "subscriberId": patient.insurance_id,
                    "beneficiary": {"reference": pid},
                    "payor": [{"display": "Aetna Health"}],
                },
                "request": {"method": "POST", "url": "Coverage"},
            },
        ],
    }
