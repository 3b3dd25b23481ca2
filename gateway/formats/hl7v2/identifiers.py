"""What identifies a person in HL7 v2, field by field: the table inspection scans, redaction
learns from and verification checks."""

from __future__ import annotations

from gateway.model import Category

C = Category
# segment → {field number: category}. Field numbers are HL7's (PID-5 is the patient name).
IDENTIFIER_FIELDS: dict[str, dict[int, Category]] = {
    "PID": {
        2: C.MRN,
        3: C.MRN,
        4: C.MRN,
        5: C.NAME,
        6: C.NAME,
        7: C.DATE,
        9: C.NAME,
        11: C.GEOGRAPHY,
        12: C.GEOGRAPHY,
        13: C.PHONE,
        14: C.PHONE,
        18: C.ACCOUNT_NUMBER,
        19: C.SSN,
        20: C.LICENSE_NUMBER,
        21: C.OTHER_ID,
        23: C.GEOGRAPHY,
        29: C.DATE,
    },
    "PD1": {10: C.OTHER_ID},  # duplicate patient (CX)
    "NK1": {
        2: C.NAME,
        4: C.GEOGRAPHY,
        5: C.PHONE,
        6: C.PHONE,
        12: C.OTHER_ID,
        16: C.DATE,
        30: C.NAME,
        31: C.PHONE,
        32: C.GEOGRAPHY,
        33: C.OTHER_ID,
        37: C.SSN,
    },
    "GT1": {
        2: C.ACCOUNT_NUMBER,
        3: C.NAME,
        4: C.NAME,
        5: C.GEOGRAPHY,
        6: C.PHONE,
        7: C.PHONE,
        8: C.DATE,
        12: C.SSN,
        16: C.NAME,
        17: C.GEOGRAPHY,
        18: C.PHONE,
        19: C.OTHER_ID,
    },
    "IN1": {16: C.NAME, 18: C.DATE, 19: C.GEOGRAPHY, 36: C.HEALTH_PLAN_ID, 49: C.HEALTH_PLAN_ID},
    "IN2": {
        1: C.OTHER_ID,
        2: C.SSN,
        6: C.HEALTH_PLAN_ID,
        7: C.NAME,
        8: C.HEALTH_PLAN_ID,
        61: C.HEALTH_PLAN_ID,
        63: C.PHONE,
    },
    "MRG": {
        1: C.MRN,
        2: C.MRN,
        3: C.ACCOUNT_NUMBER,
        4: C.MRN,
        5: C.ACCOUNT_NUMBER,
        6: C.ACCOUNT_NUMBER,
        7: C.NAME,
    },
    "PV1": {19: C.ACCOUNT_NUMBER, 44: C.DATE, 45: C.DATE, 50: C.ACCOUNT_NUMBER},
    # Queries that name their subject: the query itself is the identifier.
    "QRD": {8: C.OTHER_ID},
    "QPD": {3: C.OTHER_ID, 4: C.OTHER_ID, 5: C.OTHER_ID, 6: C.OTHER_ID, 7: C.OTHER_ID},
}


# Fields whose first component (of each repetition) is a record identifier (CX, EI): only that
# component is the identifier; the assigning authority and type may stay.
RECORD_ID_CATEGORIES = frozenset({C.MRN, C.ACCOUNT_NUMBER, C.HEALTH_PLAN_ID, C.OTHER_ID})
