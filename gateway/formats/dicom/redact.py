"""The Basic Application Level Confidentiality Profile applied to one dataset (pydicom
rewrites it; the table is profile.py), then verified by our own reader before it leaves.

- Patient names and ids become keyed pseudonyms (the same patient, the same pseudonym in
  every file and session); other names, ids and addresses are removed or emptied as the
  profile says. Private elements, curves and overlays are removed.
- Dates: the year (CCYY0101, still a valid DA) or, with ``redaction.dates: shift``, moved
  by the patient's keyed shift (the Retain Longitudinal Temporal Information with Modified
  Dates option); ages over 89 become 090Y.
- Instance UIDs are remapped with the site key (2.25.<decimal of an HMAC>): a study stays
  one study across files and sessions; class and transfer syntax UIDs are kept.
- PatientIdentityRemoved, DeidentificationMethod and its code sequence say what was done.
- The transfer syntax, the file meta group and the pixels are kept; the preamble is zeroed
  (PS3.10 7.1: an unused preamble is zeros). BurnedInAnnotation = YES blocks: pixels that
  carry PHI cannot be cleaned here.
"""

from __future__ import annotations

import io
import logging
from collections import Counter

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from gateway.errors import DicomError
from gateway.formats.base import RedactContext
from gateway.formats.dicom.inspect import DICOMDIR_CLASS, judge
from gateway.formats.dicom.profile import (
    BASIC_PROFILE,
    CLEAN_DESCRIPTORS,
    RETAIN_CHARACTERISTICS,
    RETAIN_DATES_MODIFIED,
    Rule,
    keyword_of,
)
from gateway.formats.dicom.walk import (
    EXPLICIT_BE,
    IMPLICIT_LE,
    Header,
    WalkLimits,
    read_header,
)
from gateway.model import Category, RedactionOutcome
from gateway.phi.freetext import scan_text
from gateway.phi.safe_harbor import DatePolicy

# pydicom's validation warnings and log records quote the values they judge ("invalid value
# for VR PN: '...'"): never written (what is invalid is our verification's business).
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
logging.getLogger("pydicom").disabled = True

CONTENT_TYPE = "application/dicom"
_STANDARD_UID_ROOT = "1.2.840.10008."
_KEPT_UIDS = frozenset(
    {
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "PrivateInformationCreatorUID",
    }
)
_MAX_SH = 16
_NUMERIC_VRS = frozenset({"DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})


def _limits(size: int) -> WalkLimits:
    return WalkLimits(10_000_000, 64, max(size * 4, 64 * 1024 * 1024), lambda: None)


class _Profile:
    """One dataset's redaction: the settings, the patient's date policy, what changed."""

    def __init__(self, context: RedactContext, patient_key: str) -> None:
        self.context = context
        self.pseudonyms = context.pseudonymizer
        self.dates: DatePolicy = context.dates(patient_key)
        self.counts: Counter[str] = Counter()
        self.locations: set[str] = set()
        from gateway.formats.dicom.inspect import rules

        self.rules = rules()

    def changed(self, category: Category | None, where: str) -> None:
        if category is not None:
            self.counts[category.value] += 1
        self.locations.add(where[:160])

    def dataset(self, ds: Dataset, path: str) -> None:
        for element in list(ds):
            tag = int(element.tag)
            group, number = tag >> 16, tag & 0xFFFF
            keyword = keyword_of(tag)
            where = f"{path}{keyword}"
            if group & 1:
                if number >= 0x10 and number < 0x100:
                    del ds[tag]  # a private creator: its block goes below
                    continue
                del ds[tag]
                self.changed(Category.OTHER_ID, f"{path}private")
                continue
            if 0x5000 <= group <= 0x50FF or (
                0x6000 <= group <= 0x60FF and number in (0x3000, 0x4000)
            ):
                del ds[tag]  # curves, overlay bitmaps and their comments
                self.changed(None, where)
                continue
            entry = self.rules.get(tag)
            if entry is not None:
                self.apply(ds, element, entry[1], where)
            else:
                self.generic(ds, element, where)

    def apply(self, ds: Dataset, element: DataElement, rule: Rule, where: str) -> None:
        vr, tag = element.VR, int(element.tag)
        context = self.context
        if rule.characteristic and context.dicom_characteristics:
            if vr in ("DA", "DT") and not element.is_empty:  # still a date of the patient
                element.value = self.date(_flat(element.value), vr)
                self.changed(Category.DATE, where)
            elif vr == "AS" and _old_age(str(element.value or "")):
                element.value = "090Y"
                self.changed(Category.DATE, where)
            return
        if rule.descriptor and context.dicom_clean_descriptors and vr != "SQ":
            if not scan_text(str(element.value or ""), "dicom").findings:
                return
            del ds[tag]
            self.changed(None, where)
            return
        if vr == "SQ":
            if "X" in rule.action:
                del ds[tag]
                self.changed(rule.category, where)
            else:
                self.sequence(element, where)
            return
        if element.is_empty:
            return
        action = rule.action
        category = rule.category or (Category.NAME if vr == "PN" else None)
        if vr in ("DA", "DT"):
            element.value = self.date(str(element.value), vr)
            self.changed(Category.DATE, where)
            return
        patient = rule.category in (Category.NAME, Category.MRN)
        pseudonym = patient and ("D" in action or "Z" in action)
        if pseudonym and (vr == "PN" or context.pseudonymize_ids) and vr not in ("SH",):
            kind = "name" if vr == "PN" else "mrn"
            element.value = self.pseudonyms.pseudonym(kind, _flat(element.value))
        elif "X" in action:
            del ds[tag]
        elif "Z" in action:
            element.value = None
        else:
            element.value = _dummy(vr)
        self.changed(category, where)

    def generic(self, ds: Dataset, element: DataElement, where: str) -> None:
        """What the table does not name: every name, date and instance UID; text is cleaned."""
        vr = element.VR
        if vr == "SQ":
            self.sequence(element, where)
            return
        if element.is_empty:
            return
        if vr == "PN":
            element.value = None
            self.changed(Category.NAME, where)
        elif vr in ("DA", "DT"):
            element.value = self.date(_flat(element.value), vr)
            self.changed(Category.DATE, where)
        elif vr == "AS" and _old_age(str(element.value)):
            element.value = "090Y"
            self.changed(Category.DATE, where)
        elif vr == "UI" and self.remaps(element):
            element.value = self.uid(element.value)
        elif vr in ("LT", "ST", "UT") and scan_text(_flat(element.value), "dicom").findings:
            del ds[int(element.tag)]
            self.changed(None, where)

    def sequence(self, element: DataElement, where: str) -> None:
        items: Sequence = element.value
        for number, item in enumerate(items):
            self.dataset(item, f"{where}[{number}].")

    def remaps(self, element: DataElement) -> bool:
        keyword = element.keyword or ""
        return not (keyword.endswith("ClassUID") or keyword in _KEPT_UIDS)

    def uid(self, value: object) -> object:
        if isinstance(value, list | tuple | Sequence):
            return [self._one_uid(str(v)) for v in value]
        return self._one_uid(str(value))

    def _one_uid(self, value: str) -> str:
        value = value.strip("\x00 ")
        if not value or value.startswith(_STANDARD_UID_ROOT):
            return value
        digest = self.pseudonyms.pseudonym("dicom-uid", value)
        return "2.25." + str(int.from_bytes(digest.encode(), "big") % 10**38)

    def date(self, value: str, vr: str) -> str:
        out = []
        for part in value.split("\\"):
            ends = part.split("-") if vr == "DA" else [part]
            out.append("-".join(self._one_date(end.strip(), vr) for end in ends))
        return "\\".join(out)

    def _one_date(self, value: str, vr: str) -> str:
        if not value:
            return value
        iso = f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) >= 8 else value[:4]
        moved = self.dates.generalize(iso)
        if len(moved) == 10:  # shifted: YYYY-MM-DD
            return moved.replace("-", "")
        year = moved[:4]
        return f"{year}0101" if year.isdigit() else ""


def _flat(value: object) -> str:
    if isinstance(value, list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value if value is not None else "")


def _old_age(value: str) -> bool:
    value = value.strip()
    return len(value) == 4 and value[3] == "Y" and value[:3].isdigit() and int(value[:3]) >= 90


def _dummy(vr: str) -> object:
    if vr in _NUMERIC_VRS:
        return 0
    if vr == "PN":
        return "ANONYMOUS"
    return "REDACTED"


def _code(value: tuple[str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue = value[0]
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = value[1]
    return item


def _read(data: bytes, header: Header) -> Dataset:
    if header.part10:
        return dcmread(io.BytesIO(data))
    implicit = header.syntax_uid == IMPLICIT_LE
    little = header.syntax_uid != EXPLICIT_BE
    return read_dataset(io.BytesIO(data), implicit, little)


def _write(ds: Dataset, header: Header) -> bytes:
    out = io.BytesIO()
    if header.part10:
        ds.preamble = b"\x00" * 128
        dcmwrite(out, ds, enforce_file_format=True)
    else:
        implicit = header.syntax_uid == IMPLICIT_LE
        little = header.syntax_uid != EXPLICIT_BE
        dcmwrite(out, ds, implicit_vr=implicit, little_endian=little)
    return out.getvalue()


def _patient_key(ds: Dataset) -> str:
    return str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")


def redact_dataset(data: bytes, header: Header, context: RedactContext) -> RedactionOutcome:
    try:
        return _redact(data, header, context)
    except DicomError as exc:
        return RedactionOutcome(error=exc.reason)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, EOFError):
        # pydicom could not read or write what our reader accepted: never sent half-done.
        return RedactionOutcome(error="DICOM dataset cannot be rewritten")


def _redact(data: bytes, header: Header, context: RedactContext) -> RedactionOutcome:
    ds = _read(data, header)
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise DicomError("DICOM pixels carry burned-in annotation: cannot be de-identified")
    if "EncapsulatedDocument" in ds and ds.EncapsulatedDocument:
        raise DicomError("an encapsulated document cannot be de-identified inside DICOM")
    meta_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if meta_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        # Its records point at byte offsets a rewrite would move.
        raise DicomError("a DICOMDIR cannot be de-identified here")
    profile = _Profile(context, _patient_key(ds))
    profile.dataset(ds, "")
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = profile.uid(meta.MediaStorageSOPInstanceUID)
    methods = [BASIC_PROFILE]
    if context.shift:
        methods.append(RETAIN_DATES_MODIFIED)
    if context.dicom_characteristics:
        methods.append(RETAIN_CHARACTERISTICS)
    if context.dicom_clean_descriptors:
        methods.append(CLEAN_DESCRIPTORS)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PHI gateway: PS3.15 Basic Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([_code(m) for m in methods])
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    body = _write(ds, header)
    problem = verify(body, context.shift)
    if problem:
        return RedactionOutcome(error=problem)
    counts = dict(sorted(profile.counts.items()))
    return RedactionOutcome(body, CONTENT_TYPE, counts, tuple(sorted(profile.locations)))


def verify(body: bytes, shifted: bool) -> str:
    """Our reader on the rewritten dataset: nothing identifying may remain ("" if so)."""
    header = read_header(body, _limits(len(body)))
    judged = judge(header, trust_shifted=shifted)
    if judged.findings:
        return "DICOM redaction left identifying attributes"
    for location, text in judged.texts:
        if scan_text(text, location).findings:
            return "DICOM redaction left identifying text"
    return ""
