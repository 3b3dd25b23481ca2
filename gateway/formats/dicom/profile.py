"""DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile, as two
questions: what in a dataset identifies a patient (inspection), and what the profile does
to each attribute (redaction). One table answers both, so the two cannot disagree.

Actions (Table E.1-1): D replace with a dummy, Z empty (or a dummy), X remove, K keep,
C clean (descriptors: kept when the free-text detectors find nothing), U replace the UID.
Combinations ("X/Z/D") take the strongest our writer can keep valid; we write D where D
is allowed (a keyed pseudonym), else Z where allowed, else X.

What counts as PHI follows HIPAA Safe Harbor, which the whole gateway enforces: every
person name (PN), every date (DA, DT) below the year, ages over 89, and the identifying
attributes below with a category. Attributes the profile removes that Safe Harbor does not
name (the institution, the station, the patient's sex or weight) are removed by redaction
and are not findings; descriptors and comments are read by the free-text detectors.
Private data elements are findings (the profile removes them unless known safe: we know of
none). UIDs are remapped by redaction but are not findings: a de-identified study keeps
(remapped) UIDs, which no reader can tell from original ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.model import Category

# Code values of the de-identification methods (PS3.16 CID 7050).
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_DATES_MODIFIED = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
RETAIN_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")


@dataclass(frozen=True, slots=True)
class Rule:
    action: str  # "X", "Z", "D", "X/Z/D", ... (Table E.1-1)
    category: Category | None = None  # a finding when it holds a value
    text: bool = False  # read by the free-text detectors (descriptors, comments)
    characteristic: bool = False  # kept with the Retain Patient Characteristics option
    descriptor: bool = False  # cleaned, not removed, with the Clean Descriptors option


_N, _G, _P, _M, _O = (
    Category.NAME,
    Category.GEOGRAPHY,
    Category.PHONE,
    Category.MRN,
    Category.OTHER_ID,
)

# keyword: (action, category or "text"/"char"/"desc"/"" for profile-only)
_TABLE: dict[str, tuple[str, Category | str]] = {
    # the patient
    "PatientName": ("Z", _N),
    "PatientID": ("Z", _M),
    "OtherPatientIDs": ("X", _M),
    "OtherPatientIDsSequence": ("X", _M),
    "OtherPatientNames": ("X", _N),
    "PatientBirthName": ("X", _N),
    "PatientMotherBirthName": ("X", _N),
    "ResponsiblePerson": ("X", _N),
    "PatientBirthDate": ("Z", Category.DATE),
    "PatientBirthTime": ("X", Category.DATE),
    "PatientDeathDateInAlternativeCalendar": ("X", Category.DATE),
    "PatientBirthDateInAlternativeCalendar": ("X", Category.DATE),
    "PatientAddress": ("X", _G),
    "RegionOfResidence": ("X", _G),
    "CountryOfResidence": ("X", ""),
    "PatientTelephoneNumbers": ("X", _P),
    "PatientTelecomInformation": ("X", _P),
    "MedicalRecordLocator": ("X", _M),
    "InsurancePlanIdentification": ("X", Category.HEALTH_PLAN_ID),
    "PatientInsurancePlanCodeSequence": ("X", Category.HEALTH_PLAN_ID),
    "MilitaryRank": ("X", ""),
    "BranchOfService": ("X", ""),
    "IssuerOfPatientID": ("X", ""),
    "IssuerOfPatientIDQualifiersSequence": ("X", ""),
    "ReferencedPatientSequence": ("X", ""),
    "ReferencedPatientPhotoSequence": ("X", Category.PHOTO),
    "PatientPrimaryLanguageCodeSequence": ("X", ""),
    "PatientReligiousPreference": ("X", ""),
    "Occupation": ("X", ""),
    "AdmissionID": ("X", Category.ACCOUNT_NUMBER),
    "IssuerOfAdmissionIDSequence": ("X", ""),
    "ServiceEpisodeID": ("X", Category.ACCOUNT_NUMBER),
    "ServiceEpisodeDescription": ("X", "text"),
    "PatientTransportArrangements": ("X", "text"),
    "PatientComments": ("X", "text"),
    "AdditionalPatientHistory": ("X", "text"),
    "MedicalAlerts": ("X", "text"),
    "Allergies": ("X", "text"),
    "PatientState": ("X", "text"),
    "SpecialNeeds": ("X", "text"),
    "VisitComments": ("X", "text"),
    "CurrentPatientLocation": ("X", "text"),
    "AssignedLocation": ("X", "text"),
    "PatientInstitutionResidence": ("X", "text"),
    "ReasonForTheRequestedProcedure": ("X", "text"),
    "ReasonForStudy": ("X", "text"),
    "RequestedProcedureComments": ("X", "text"),
    "ImagingServiceRequestComments": ("X", "text"),
    "InterpretationText": ("X", "text"),
    "InterpretationDiagnosisDescription": ("X", "text"),
    "Impressions": ("X", "text"),
    "ResultsComments": ("X", "text"),
    "TextComments": ("X", "text"),
    "TextString": ("X", "text"),
    "FrameComments": ("X", "text"),
    "IdentifyingComments": ("X", "text"),
    # characteristics (Retain Patient Characteristics Option)
    "PatientAge": ("X", "char"),
    "PatientSex": ("Z", "char"),
    "PatientSize": ("X", "char"),
    "PatientWeight": ("X", "char"),
    "EthnicGroup": ("X", "char"),
    "SmokingStatus": ("X", "char"),
    "PregnancyStatus": ("X", "char"),
    "PatientSexNeutered": ("X/Z", "char"),
    "PatientSpeciesDescription": ("X/Z", "char"),
    "PatientBreedDescription": ("X/Z", "char"),
    "LastMenstrualDate": ("X", "char"),
    # the visit, the order, the study
    "AccessionNumber": ("Z", _O),
    "StudyID": ("Z", _O),
    "RequestedProcedureID": ("X", _O),
    "ScheduledProcedureStepID": ("X", _O),
    "PerformedProcedureStepID": ("X", _O),
    "PlacerOrderNumberImagingServiceRequest": ("X", _O),
    "FillerOrderNumberImagingServiceRequest": ("X", _O),
    "OrderCallbackPhoneNumber": ("X", ""),
    "OrderCallbackTelecomInformation": ("X", ""),
    "RequestAttributesSequence": ("X", ""),
    "ReferencedStudySequence": ("X/Z", ""),
    "ReferencedPerformedProcedureStepSequence": ("X/Z/D", ""),
    "ReferencedImageSequence": ("X/Z/U", ""),
    "DeviceSerialNumber": ("X/Z/D", Category.DEVICE_ID),
    "PlateID": ("X", Category.DEVICE_ID),
    "DetectorID": ("X/D", Category.DEVICE_ID),
    "CassetteID": ("X", Category.DEVICE_ID),
    "GantryID": ("X", Category.DEVICE_ID),
    "GeneratorID": ("X", Category.DEVICE_ID),
    "SourceSerialNumber": ("X", Category.DEVICE_ID),
    # the institution and its staff (names are PN: findings by their VR)
    "InstitutionName": ("X/Z/D", ""),
    "InstitutionAddress": ("X", ""),
    "InstitutionalDepartmentName": ("X", ""),
    "InstitutionCodeSequence": ("X/Z/D", ""),
    "StationName": ("X/Z/D", ""),
    "ReferringPhysicianName": ("Z", ""),
    "ReferringPhysicianAddress": ("X", ""),
    "ReferringPhysicianTelephoneNumbers": ("X", ""),
    "ReferringPhysicianIdentificationSequence": ("X", ""),
    "PerformingPhysicianName": ("X", ""),
    "PerformingPhysicianIdentificationSequence": ("X", ""),
    "NameOfPhysiciansReadingStudy": ("X", ""),
    "PhysiciansReadingStudyIdentificationSequence": ("X", ""),
    "PhysiciansOfRecord": ("X", ""),
    "PhysiciansOfRecordIdentificationSequence": ("X", ""),
    "RequestingPhysician": ("X", ""),
    "RequestingService": ("X", ""),
    "ScheduledPerformingPhysicianName": ("X", ""),
    "OperatorsName": ("X/Z/D", ""),
    "OperatorIdentificationSequence": ("X/D", ""),
    "ContentCreatorName": ("Z", ""),
    "ReviewerName": ("X/Z", ""),
    "VerifyingObserverName": ("D", ""),
    "VerifyingOrganization": ("X", ""),
    "PersonName": ("D", ""),
    "PersonAddress": ("X", ""),
    "PersonTelephoneNumbers": ("X", ""),
    "PersonTelecomInformation": ("X", ""),
    "PhysicianApprovingInterpretation": ("X", ""),
    "InterpretationRecorder": ("X", ""),
    "InterpretationTranscriber": ("X", ""),
    "InterpretationAuthor": ("X", ""),
    "DistributionName": ("X", ""),
    "DistributionAddress": ("X", ""),
    "NamesOfIntendedRecipientsOfResults": ("X", ""),
    "EvaluatorName": ("D", ""),
    "ScheduledStationName": ("X", ""),
    "PerformedStationName": ("X", ""),
    "PerformedLocation": ("X", ""),
    "ScheduledProcedureStepLocation": ("X", ""),
    # descriptors (Clean Descriptors Option)
    "StudyDescription": ("X", "desc"),
    "SeriesDescription": ("X", "desc"),
    "ProtocolName": ("X/D", "desc"),
    "ImageComments": ("X", "desc"),
    "StudyComments": ("X", "desc"),
    "AcquisitionComments": ("X", "desc"),
    "DerivationDescription": ("X", "desc"),
    "PerformedProcedureStepDescription": ("X", "desc"),
    "RequestedProcedureDescription": ("X", "desc"),
    "ScheduledProcedureStepDescription": ("X", "desc"),
    "ContrastBolusAgent": ("Z/D", "desc"),
    "AdmittingDiagnosesDescription": ("X", "desc"),
    "DischargeDiagnosisDescription": ("X", "desc"),
    "CommentsOnThePerformedProcedureStep": ("X", "desc"),
    "LabelText": ("X", "desc"),
    "BodyPartExamined": ("X", "desc"),
    # times (dates are all of VR DA/DT)
    "StudyTime": ("Z", ""),
    "SeriesTime": ("X/D", ""),
    "AcquisitionTime": ("X/D", ""),
    "ContentTime": ("Z/D", ""),
    "InstanceCreationTime": ("X/Z/D", ""),
    "PerformedProcedureStepStartTime": ("X", ""),
    "PerformedProcedureStepEndTime": ("X", ""),
    "OverlayTime": ("X", ""),
    "CurveTime": ("X", ""),
    # structured content (removed: the Clean Structured Content option is not offered)
    "ContentSequence": ("X", ""),
    "AcquisitionContextSequence": ("X", ""),
}


def _rule(action: str, kind: Category | str) -> Rule:
    if isinstance(kind, Category):
        return Rule(action, kind)
    return Rule(
        action,
        text=kind in ("text", "desc"),
        characteristic=kind == "char",
        descriptor=kind == "desc",
    )


RULES: dict[str, Rule] = {keyword: _rule(*entry) for keyword, entry in _TABLE.items()}


def rules_by_tag() -> dict[int, tuple[str, Rule]]:
    """Tag → (keyword, rule), resolved through pydicom's dictionary (a keyword it does not
    know is a mistake in the table: raised at first use, and by the tests)."""
    from pydicom.datadict import tag_for_keyword

    table: dict[int, tuple[str, Rule]] = {}
    for keyword, rule in RULES.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(f"unknown DICOM keyword in the profile table: {keyword}")
        table[tag] = (keyword, rule)
    return table


def keyword_of(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
