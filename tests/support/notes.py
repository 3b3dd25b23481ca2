"""Free text carrying synthetic patients' identifiers: short notes, an e-mail, a CSV export.

Each note template says which Safe Harbor categories it carries, so a test can check both that a
note is flagged and that the findings name the right categories. Family names are rendered
without the two-digit suffix ``make_patient`` adds for leak searches: real names have no digits,
and a detector should not be tuned to that artefact.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.model import Category
from tests.support.patients import Patient, make_patient

N = Category.NAME
G = Category.GEOGRAPHY
D = Category.DATE
P = Category.PHONE
E = Category.EMAIL
S = Category.SSN
M = Category.MRN
A = Category.ACCOUNT_NUMBER

_MONTHS = "January February March April May June July August September October November December"


@dataclass(frozen=True)
class Note:
    text: str
    categories: frozenset[Category]  # what the note carries (what the detector should report)
    name_in_context: bool  # the name sits next to a label a reader would recognise


def family(patient: Patient) -> str:
    return patient.family.rstrip("0123456789")


def _fields(p: Patient) -> dict[str, str]:
    b = p.birth_date
    return {
        "G": p.given,
        "F": family(p),
        "street": p.street,
        "city": p.city,
        "state": p.state,
        "zip": p.zip,
        "phone": p.phone,
        "email": p.email.replace(p.family.lower(), family(p).lower()),
        "ssn": p.ssn,
        "mrn": p.mrn,
        "mrn_digits": p.mrn[3:],
        "account": p.account,
        "rel": p.relative_given,
        "dob_us": f"{b[4:6]}/{b[6:]}/{b[:4]}",
        "dob_iso": p.birth_date_iso,
        "dob_long": f"{_MONTHS.split()[int(b[4:6]) - 1]} {int(b[6:])}, {b[:4]}",
    }


# (template, categories, name in context)
TEMPLATES: list[tuple[str, frozenset[Category], bool]] = [
    (
        "Patient: {G} {F}, DOB {dob_us}. Lives at {street}, {city}, {state} {zip}. "
        "Callback {phone}.",
        frozenset({N, D, G, P}),
        True,
    ),
    (
        "Pt {G} {F} (MRN {mrn}) called from {phone} about a refill; address on file "
        "{street}, {city}, {state} {zip}.",
        frozenset({N, M, P, G}),
        True,
    ),
    (
        "Name: {F}, {G}\nAddress: {street} Apt 4B\n{city}, {state} {zip}\nEmail: {email}",
        frozenset({N, G, E}),
        True,
    ),
    (
        "Mrs. {G} {F} was discharged home to {street}, {city}. Follow-up call to {phone} "
        "on Friday.",
        frozenset({N, G, P}),
        True,
    ),
    (
        "Spoke with Mr. {F} about billing; acct {account}; statement goes to {street}, "
        "{city}, {state} {zip}.",
        frozenset({N, A, G}),
        True,
    ),
    (
        "Transport request for patient {G} {F}: pick up at {street} ({city}) for dialysis, "
        "DOB {dob_iso}.",
        frozenset({N, G, D}),
        True,
    ),
    (
        # The one shape without a label: a name a reader recognises only as a name.
        "Hi team, {G} {F} (date of birth {dob_long}) moved to {street}; new number {phone}.",
        frozenset({D, G, P}),
        False,
    ),
    (
        "Guarantor: {G} {F}, {street}, {city}, {state} {zip}, SSN {ssn}.",
        frozenset({N, G, S}),
        True,
    ),
    (
        "Emergency contact: {rel} {F} at {phone}; patient {G} {F} lives at {street}.",
        frozenset({N, P, G}),
        True,
    ),
    (
        "Ms. {G} {F} missed her appointment. Letter mailed to {street}, {city}, {state} "
        "{zip}. Chart # {mrn_digits}.",
        frozenset({N, G, M}),
        True,
    ),
    (
        "pt {G} {F} reports a fall at home ({street}, {city}); daughter reachable at {email}.",
        frozenset({N, G, E}),
        True,
    ),
    (
        "Resident: {G} {F}\nRoom 214\nHome address {street}, {city}, {state}\nPhone {phone}",
        frozenset({N, G, P}),
        True,
    ),
]


def note(seed: int) -> Note:
    """Note ``seed`` for patient ``seed``: the templates in turn."""
    template, categories, in_context = TEMPLATES[seed % len(TEMPLATES)]
    return Note(template.format(**_fields(make_patient(seed))), categories, in_context)


def email_body(patient: Patient) -> str:
    f = _fields(patient)
    return (
        "Hello,\n\nPlease find below the referral details we discussed this morning.\n\n"
        f"Patient name: {f['G']} {f['F']}\nDate of birth: {f['dob_us']}\n"
        f"Phone: {f['phone']}\nAddress: {f['street']}, {f['city']}, {f['state']} {f['zip']}\n\n"
        "Thanks,\nReferral Coordination\n"
    )


CSV_HEADER = "first_name,last_name,dob,phone,email,street,city,state,zip"


def csv_export(patients: list[Patient], delimiter: str = ",") -> str:
    rows = [CSV_HEADER.replace(",", delimiter)]
    for p in patients:
        f = _fields(p)
        cells = [f["G"], f["F"], f["dob_iso"], f["phone"], f["email"], f["street"]]
        cells += [f["city"], f["state"], f["zip"]]
        rows.append(delimiter.join(cells))
    return "\n".join(rows) + "\n"
