"""Synthetic DICOM studies for synthetic patients, written by pydicom (the library that
writes them): CT, MR, US and secondary capture, single and multi-frame, with sequences and
private tags, in every transfer syntax the gateway reads; and pydicom again as the
independent reader of what the gateway answered or forwarded."""

from __future__ import annotations

import io
from collections.abc import Iterable

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from tests.support.patients import Patient

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
SC = "1.2.840.10008.5.1.4.1.1.7"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
MODALITY = {CT: "CT", MR: "MR", US: "US", SC: "OT", ENHANCED_CT: "CT"}
STUDY_ROOT = "1.2.826.0.1.3680043.8.498"


def uid(*parts: int) -> str:
    return ".".join([STUDY_ROOT, *(str(p) for p in parts)])


def dataset(
    patient: Patient,
    *,
    sop_class: str = CT,
    instance: int = 1,
    frames: int = 1,
    rows: int = 16,
    private: bool = True,
    sequences: bool = True,
    burned_in: str = "",
    pixels: bool = True,
) -> Dataset:
    """One image of a study that names ``patient`` everywhere Annex E looks."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(7, int(patient.mrn[-4:] or 1), instance)
    ds.StudyDate = "20261114"
    ds.SeriesDate = "20261114"
    ds.StudyTime = "101530"
    ds.AccessionNumber = "ACC" + patient.mrn[-6:]
    ds.Modality = MODALITY.get(sop_class, "OT")
    ds.Manufacturer = "Synthetic Imaging"
    ds.InstitutionName = "Riverside General Hospital"
    ds.ReferringPhysicianName = "Halloran^Desmond"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.SeriesDescription = "AXIAL 1.25MM"
    ds.PatientName = f"{patient.family}^{patient.given}"
    ds.PatientID = patient.mrn
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = "F"
    ds.PatientAddress = f"{patient.street}, {patient.city}, {patient.state} {patient.zip}"
    ds.PatientTelephoneNumbers = patient.phone
    ds.OtherPatientIDs = patient.ssn
    ds.PatientComments = f"Spouse asks for a copy; patient {patient.given} {patient.family}"
    ds.StudyInstanceUID = uid(1, int(patient.mrn[-4:] or 1))
    ds.SeriesInstanceUID = uid(2, int(patient.mrn[-4:] or 1))
    ds.FrameOfReferenceUID = uid(3, int(patient.mrn[-4:] or 1))
    ds.StudyID = "S" + patient.mrn[-5:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    if sequences:
        other = Dataset()
        other.PatientID = patient.mrn + "-OLD"
        other.IssuerOfPatientID = "OLDHIS"
        ds.OtherPatientIDsSequence = Sequence([other])
        request = Dataset()
        request.RequestedProcedureID = "RP" + patient.mrn[-4:]
        request.ScheduledProcedureStepID = "SPS" + patient.mrn[-4:]
        ds.RequestAttributesSequence = Sequence([request])
        code = Dataset()
        code.CodeValue = "T-D3000"
        code.CodingSchemeDesignator = "SRT"
        code.CodeMeaning = "Chest"
        ds.AnatomicRegionSequence = Sequence([code])
    if private:
        block = ds.private_block(0x0029, "SYNTHETIC VENDOR 1.0", create=True)
        block.add_new(0x10, "LO", f"{patient.family} {patient.mrn}")
        block.add_new(0x11, "OB", b"\x01\x02\x03\x04")
    if burned_in:
        ds.BurnedInAnnotation = burned_in
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if pixels:
        ds.PixelData = bytes(range(256)) * (rows * rows * 2 * frames // 256) + bytes(
            rows * rows * 2 * frames % 256
        )
    return ds


def deidentified(sop_class: str = CT) -> Dataset:
    """A study de-identified by the Basic Profile as another tool would write it."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "2.25.1234567890123456789"
    ds.StudyDate = "20260101"
    ds.Modality = MODALITY.get(sop_class, "OT")
    ds.PatientName = "ANONYMOUS^SUBJECT042"
    ds.PatientID = "SUBJ-0042"
    ds.PatientBirthDate = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 Basic Profile"
    ds.StudyInstanceUID = "2.25.99887766554433221100"
    ds.SeriesInstanceUID = "2.25.11223344556677889900"
    ds.Rows = 8
    ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(64)
    return ds


def part10(ds: Dataset, syntax: str = ExplicitVRLittleEndian, preamble: bytes = b"") -> bytes:
    """``ds`` as a Part 10 file: 128-byte preamble (zeros unless given), DICM, file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID(STUDY_ROOT + ".1")
    copy = Dataset(ds)
    copy.file_meta = meta
    copy.preamble = preamble.ljust(128, b"\x00")[:128]
    out = io.BytesIO()
    copy.save_as(out, enforce_file_format=True)
    return out.getvalue()


def bare(ds: Dataset, syntax: str = ImplicitVRLittleEndian) -> bytes:
    """``ds`` without a Part 10 header, as DIMSE carries it."""
    out = DicomBytesIO()
    out.is_implicit_VR = syntax == ImplicitVRLittleEndian
    out.is_little_endian = syntax != ExplicitVRBigEndian
    write_dataset(out, ds)
    return out.getvalue()


def read(data: bytes) -> Dataset:
    """An independent reading: pydicom, Part 10 or not."""
    return dcmread(io.BytesIO(data), force=True)


def leaked(data: bytes, patient: Patient) -> list[str]:
    """Which of the patient's identifiers appear in ``data`` (bytes, in any case)."""
    text = data.decode("latin-1").lower()
    values: Iterable[str] = [patient.family, patient.given, patient.mrn, patient.ssn, patient.phone]
    values = [*values, patient.birth_date, patient.street]
    return [v for v in values if v and v.lower() in text]


SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
