"""What in a DICOM header identifies the patient (profile.py says which attributes), as
findings: category and place ("ReferencedPatientSequence[0].PatientName"), never a value.

A dataset that declares itself de-identified (PatientIdentityRemoved = YES) may keep the
dummies the profile writes where it replaces rather than removes (D, Z): a pseudonym for
the name, an id for PatientID, a year-only or shifted date. Those pass when their shape is
a dummy's (a name without a real name's words, a date that is only a year, or dates the
dataset says were shifted); what the profile removes (X) must be gone either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.charset import convert_encodings, decode_bytes

from gateway.formats.dicom.profile import Rule, keyword_of, rules_by_tag
from gateway.formats.dicom.walk import Element, Header
from gateway.model import Category, Finding
from gateway.phi.safe_harbor import is_pseudonym

PATIENT_IDENTITY_REMOVED = 0x00120062
TEMPORAL_MODIFIED = 0x00280303
BURNED_IN = 0x00280301
CHARSET = 0x00080005
MODALITY = 0x00080060
SOP_CLASS = 0x00080016
SOP_INSTANCE = 0x00080018
MEDIA_SOP_CLASS = 0x00020002
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

# Words the profile's dummies are made of, not names.
_DUMMY_WORDS = frozenset(
    {"ANONYMOUS", "ANONYMIZED", "ANONYMISED", "ANON", "DEIDENTIFIED", "DE-IDENTIFIED"}
    | {"REMOVED", "REDACTED", "UNKNOWN", "NONE", "PATIENT", "SUBJECT", "CASE", "STUDY"}
    | {"RESEARCH", "PHANTOM", "TEST", "QA", "NA", "N/A", "DUMMY"}
)
_NAME_SPLIT = re.compile(r"[\^= ,]+")
_PN_DELIMITERS = {0x5E, 0x3D}  # ^ and =: where ISO 2022 escapes reset
# Modality codes (PS3.3 C.7.3.1.1.1, CID 29/33): the only Modality values that become a
# message type (an audit column); anything else says "dataset".
_MODALITIES = frozenset(
    [
        "AR",
        "ASMT",
        "AU",
        "BDUS",
        "BI",
        "BMD",
        "CD",
        "CR",
        "CT",
        "DG",
        "DOC",
        "DX",
        "ECG",
        "EEG",
        "EMG",
        "EOG",
        "EPS",
        "ES",
        "FID",
        "GM",
        "HC",
        "HD",
        "IO",
        "IOL",
        "IVOCT",
        "IVUS",
        "KER",
        "KO",
        "LEN",
        "LS",
        "MG",
        "MR",
        "M3D",
        "NM",
        "OAM",
        "OCT",
        "OP",
        "OPM",
        "OPT",
        "OPTBSV",
        "OPTENF",
        "OPV",
        "OSS",
        "OT",
        "PLAN",
        "POS",
        "PR",
        "PT",
        "PX",
        "REG",
        "RESP",
        "RF",
        "RG",
        "RTDOSE",
        "RTIMAGE",
        "RTINTENT",
        "RTPLAN",
        "RTRAD",
        "RTRECORD",
        "RTSEGANN",
        "RTSTRUCT",
        "RWV",
        "SEG",
        "SM",
        "SMR",
        "SR",
        "SRF",
        "STAIN",
        "TEXTUREMAP",
        "TG",
        "US",
        "VA",
        "XA",
        "XAPROTOCOL",
        "XC",
    ]
)
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_RULES: dict[int, tuple[str, Rule]] = {}


def rules() -> dict[int, tuple[str, Rule]]:
    if not _RULES:
        _RULES.update(rules_by_tag())
    return _RULES


@dataclass(slots=True)
class Judged:
    """What one dataset's header says: findings, the text for the free-text detectors, and
    the facts a refusal or the redactor needs."""

    findings: list[Finding] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (location, text)
    burned_in: bool = False
    identity_removed: bool = False
    modality: str = ""
    sop_class: str = ""
    sop_instance: str = ""


def text_of(element: Element, encoding: str | list[str]) -> str:
    """A value as text, in the dataset's character set(s) (pydicom's decoder, which knows
    ISO 2022 escapes); what cannot be decoded is read as Latin-1, byte for byte."""
    if isinstance(encoding, list):
        try:
            text = decode_bytes(element.value, convert_encodings(encoding), _PN_DELIMITERS)
        except (LookupError, ValueError):
            text = element.value.decode("latin-1")
    else:
        text = element.value.decode(encoding, "replace")
    return text.strip(" \x00")


def encoding_of(header: Header) -> str | list[str]:
    """The value encoding SpecificCharacterSet names (ASCII/Latin-1 when it names none)."""
    for element in header.elements:
        if element.tag == CHARSET and not element.parents:
            terms = element.value.decode("ascii", "replace").strip(" \x00").split("\\")
            if terms == ["ISO_IR 192"]:
                return "utf-8"
            if any(t.strip() for t in terms):
                return [t.strip() for t in terms]
            break
        if element.tag > CHARSET and not element.parents:
            break
    return "latin-1"


def place(element: Element, keyword: str = "") -> str:
    """Where an element sits: its sequences and items, then its keyword (or tag)."""
    parts = [f"{keyword_of(tag)}[{number}]" for tag, number in element.parents]
    parts.append(keyword or keyword_of(element.tag))
    return ".".join(parts)[:160]


def judge(header: Header, trust_shifted: bool = True, encoding: str = "") -> Judged:
    """``trust_shifted``: dates of a de-identified dataset that says they were shifted
    (LongitudinalTemporalInformationModified = MODIFIED) pass; False: only years pass (the
    redactor's own check of what it cut to the year). ``encoding``: of the values, when the
    dataset's SpecificCharacterSet does not say (DICOM JSON is UTF-8)."""
    codec: str | list[str] = encoding or encoding_of(header)
    elements = header.elements
    top = {e.tag: text_of(e, codec) for e in elements if not e.parents and e.value}
    judged = Judged(
        identity_removed=top.get(PATIENT_IDENTITY_REMOVED, "").upper() == "YES",
        burned_in=top.get(BURNED_IN, "").upper() == "YES",
        modality=_modality(top.get(MODALITY, "")),
        sop_class=top.get(SOP_CLASS, "")[:64],
        sop_instance=top.get(SOP_INSTANCE, "")[:64],
    )
    if header.meta.get(MEDIA_SOP_CLASS, b"").rstrip(b"\x00 ").decode("ascii", "replace") == (
        DICOMDIR_CLASS
    ):
        judged.modality = "DICOMDIR"
    shifted = trust_shifted and top.get(TEMPORAL_MODIFIED, "").upper() == "MODIFIED"
    dummies_allowed = judged.identity_removed
    table = rules()
    findings = judged.findings
    for index, element in enumerate(elements):
        tag = element.tag
        if tag & 0xFFFF == 0:
            continue  # group lengths
        if element.private:
            number = tag & 0xFFFF
            if number >= 0x0100 and element.length:
                findings.append(Finding(Category.OTHER_ID, place(element)))
            elif number >= 0x0010 and element.value:
                # A private creator names a vendor's block: read as text like any other.
                judged.texts.append((place(element), text_of(element, codec)))
            continue
        if tag == BURNED_IN and judged.burned_in and not element.parents:
            findings.append(Finding(Category.OPAQUE_CONTENT, "BurnedInAnnotation"))
            continue
        vr = element.vr
        entry = table.get(tag)
        if vr == "SQ":
            if entry is not None and entry[1].category is not None and _has_items(elements, index):
                findings.append(Finding(entry[1].category, place(element, entry[0])))
            continue
        if not element.length:
            continue
        if vr == "PN":
            value = text_of(element, codec)
            # A dummy is what the profile writes where it replaces (D, Z), never where it
            # removes (X): such a name must be gone.
            replaced = entry is None or "D" in entry[1].action or "Z" in entry[1].action
            dummy = dummies_allowed and replaced and not name_like(value)
            if value.strip("^= ") and not dummy:
                findings.append(Finding(Category.NAME, place(element)))
            continue
        if vr in ("DA", "DT"):
            value = text_of(element, codec)
            if value and not (dummies_allowed and (shifted or _year_only(value))):
                findings.append(Finding(Category.DATE, place(element)))
            continue
        if vr == "AS":
            match = _AGE.match(text_of(element, codec))
            # 090Y in a de-identified dataset is Safe Harbor's "90 or older".
            aggregated = dummies_allowed and match is not None and match.group(1) == "090"
            if match and match.group(2) == "Y" and int(match.group(1)) >= 90 and not aggregated:
                findings.append(Finding(Category.DATE, place(element)))
            continue
        if entry is None:
            if vr in ("LT", "ST", "UT"):
                judged.texts.append((place(element), text_of(element, codec)))
            continue
        keyword, rule = entry
        if rule.category is not None:
            value = text_of(element, codec)
            dummy = dummies_allowed and ("D" in rule.action or "Z" in rule.action)
            if value and not dummy:
                findings.append(Finding(rule.category, place(element, keyword)))
        elif rule.text or vr in ("LT", "ST", "UT"):
            value = text_of(element, codec)
            if value:
                judged.texts.append((place(element, keyword), value))
    return judged


def _modality(value: str) -> str:
    value = value.strip().upper()
    return value if value in _MODALITIES else ""


def _has_items(elements: list[Element], index: int) -> bool:
    if index + 1 >= len(elements):
        return False
    here, after = elements[index], elements[index + 1]
    depth = len(here.parents)
    return len(after.parents) > depth and after.parents[depth][0] == here.tag


def name_like(value: str) -> bool:
    """Does a person name hold a word of a real name (not a dummy word or a pseudonym)?"""
    if not value.isascii() or "\x1b" in value:
        return True  # a dummy is written in ASCII; other letters (or escapes) may be a name
    for word in _NAME_SPLIT.split(value):
        bare = word.strip(".'-")
        if len(bare) < 2 or not bare.replace("-", "").replace("'", "").isalpha():
            continue
        if bare.upper() in _DUMMY_WORDS or is_pseudonym(bare):
            continue
        return True
    return False


def _year_only(value: str) -> bool:
    """Every value of a date (or a date range) is a year, as DA writes one: CCYY0101."""
    for raw in re.split(r"[\\-]", value):
        one = raw.strip()
        if one and not (len(one) >= 4 and one[:4].isdigit() and one[4:8] in ("", "0101")):
            return False
        if one[8:].strip("0.+ ") and len(one) > 8:
            return False  # a time of day on a DT
    return True
