"""Named values with no healthcare format: URL query parameters, form fields, non-FHIR JSON
objects, CSV columns. The name says what a value is ("dob", "ssn", "last_name"); the value
must then look like one (a date, nine digits, a word) before it counts.

One threshold for every such record (documented in docs/phi-detection.md): PHI when it holds
one strong identifier (SSN, MRN or other record number, health plan id, date of birth), or
weaker identifiers of two different kinds (a name and a phone number; an e-mail and a ZIP).
A lone e-mail address in a login call is not PHI; an e-mail next to a birth date is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from gateway.model import Category, Finding
from gateway.phi.patterns import DATE_VALUE, DIGIT, ID_VALUE, ZIP

C = Category
STRONG = frozenset({C.SSN, C.MRN, C.HEALTH_PLAN_ID, C.DATE, C.ACCOUNT_NUMBER})
_SSN_VALUE = re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$")
_NAME_VALUE = re.compile(r"^[^\W\d_][^\W\d_'.\- ]*(?:[ '.\-,]+[^\W\d_]+){0,4}\.?$")
_PHONE_VALUE = re.compile(r"^[+()\d][\d ()+.\-]{6,20}$")
_EMAIL_VALUE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ZIP_VALUE = re.compile(rf"^{ZIP}$")
_STREET_VALUE = re.compile(r"^\d+[A-Za-z]?\s+\S+")

# Normalised field name (lower case, letters and digits only) → category and value check.
_NAMES: dict[str, tuple[Category, re.Pattern[str]]] = {}


def _register(category: Category, pattern: re.Pattern[str], *names: str) -> None:
    for name in names:
        _NAMES[name] = (category, pattern)


_register(C.SSN, _SSN_VALUE, "ssn", "socialsecurity", "socialsecuritynumber", "ssnumber")
_register(
    C.DATE,
    DATE_VALUE,
    "dob",
    "birthdate",
    "dateofbirth",
    "birthday",
    "birthdt",
    "patientdob",
    "patientbirthdate",
)
_register(
    C.MRN,
    ID_VALUE,
    "mrn",
    "medicalrecordnumber",
    "medicalrecord",
    "patientid",
    "patientmrn",
    "chartnumber",
    "chartno",
)
# Only names that say "patient": a vendor's own "account_number" or "policy_number" is not one.
_register(C.HEALTH_PLAN_ID, ID_VALUE, "memberid", "subscriberid", "insuranceid")
_register(C.ACCOUNT_NUMBER, ID_VALUE, "patientaccount", "patientaccountnumber", "encounterid")
_register(
    C.NAME,
    _NAME_VALUE,
    "family",
    "given",  # a bare "name" is too common (files, products, reports) to count
    "lastname",
    "firstname",
    "surname",
    "fullname",
    "patientname",
    "patientlastname",
    "patientfirstname",
    "middlename",
    "lname",
    "fname",
)
_register(C.PHONE, _PHONE_VALUE, "phone", "telephone", "mobile", "cell", "phonenumber", "telecom")
_register(C.EMAIL, _EMAIL_VALUE, "email", "emailaddress", "mail")
_register(C.GEOGRAPHY, _ZIP_VALUE, "zip", "zipcode", "postalcode", "addresspostalcode")
_register(
    C.GEOGRAPHY, _STREET_VALUE, "address", "street", "streetaddress", "addressline", "address1"
)


def field_category(name: str, value: str) -> Category | None:
    """The identifier category a named value holds, if its name and shape both say so."""
    entry = _NAMES.get(_name_key(name))
    if entry is None:
        return None
    category, pattern = entry
    value = value.strip()
    if not value or len(value) > 200 or not pattern.match(value):
        return None
    if category in (C.MRN, C.HEALTH_PLAN_ID, C.ACCOUNT_NUMBER) and not DIGIT.search(value):
        return None  # "unknown", "pending": not a record number
    return category


@functools.lru_cache(maxsize=4096)
def _name_key(name: str) -> str:
    """A field name as the table knows it (letters and digits, lower case). Cached: the
    same few names come in every record."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def scan_fields(
    pairs: Iterable[tuple[str, str]], location: str, aliases: dict[str, str] | None = None
) -> list[Finding]:
    """Findings for the named values of one record (never the values themselves). ``aliases``
    read a name as another where the context says more (FHIR search ``identifier`` → MRN)."""
    found: list[Finding] = []
    for name, value in pairs:
        category = field_category(aliases.get(name, name) if aliases else name, value)
        if category is not None:
            found.append(Finding(category, f"{location}.{safe_label(name)}"))
    return found


def is_phi(findings: Iterable[Finding]) -> bool:
    """One strong identifier, or weaker ones of two different kinds."""
    weak: set[Category] = set()
    for finding in findings:
        if finding.category in STRONG:
            return True
        weak.add(finding.category)
    return len(weak) >= 2


@functools.lru_cache(maxsize=4096)
def safe_label(name: str, keep: str = "_-") -> str:
    """A name fit for a finding's location (and so an audit row): names are chosen by
    programs, not people, but cap them and keep only letters, digits and ``keep`` anyway.
    Cached: every object of a document repeats its keys."""
    cleaned = "".join(ch if ch.isalnum() or ch in keep else "_" for ch in name[:40])
    return cleaned or "_"
