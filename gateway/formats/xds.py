"""IHE XDS.b metadata (ebRIM 3.0): Provide and Register Document Set (ITI-41), Register (ITI-42),
Registry Stored Query (ITI-18) and their responses, in a SOAP envelope or alone.

The documents travel beside the metadata: as MTOM/XOP parts of a ``multipart/related`` body
(each part read by its own format through the containers stage) or inline as base64 in
``xdsb:Document`` (read by the generic XML reader this format builds on). The metadata names
the patient too: ``sourcePatientInfo`` carries PID fields (PID-5 name, PID-7 birth date, PID-11
address, ...), ``sourcePatientId`` and the ``patientId`` external identifiers carry record
numbers, and a stored query asks by patient id. Practitioners (``authorPerson``,
``legalAuthenticator``) are not the patient and are not findings."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.containers.budget import Combined
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.formats.generic_xml import GenericXml
from gateway.formats.xmldoc import split_tag
from gateway.model import Category, Finding, Format, Inspection

XDS = Format("xds")
C = Category
RIM_NS = b"urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
XDSB_NS = b"urn:ihe:iti:xds-b:2007"
# sourcePatientInfo holds "PID-n|value": the PID fields that identify the patient.
_PID_FIELDS: dict[str, Category] = {
    "3": C.MRN,
    "5": C.NAME,
    "6": C.NAME,  # mother's maiden name
    "7": C.DATE,
    "9": C.NAME,  # patient alias
    "11": C.GEOGRAPHY,
    "13": C.PHONE,
    "14": C.PHONE,
    "18": C.ACCOUNT_NUMBER,
    "19": C.SSN,
    "20": C.LICENSE_NUMBER,
    "29": C.DATE,  # death date
}
# XDSDocumentEntry.patientId, XDSSubmissionSet.patientId, XDSFolder.patientId.
_PATIENT_ID_SCHEMES = frozenset(
    {
        "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
        "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
        "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a",
    }
)
# Slots whose values are the patient's identifier (metadata and stored-query parameters).
_PATIENT_ID_SLOTS = frozenset(
    {
        "sourcePatientId",
        "$XDSDocumentEntryPatientId",
        "$XDSSubmissionSetPatientId",
        "$XDSFolderPatientId",
        "$patientId",
    }
)


class Xds(FormatHandler):
    """ebRIM/XDS.b metadata: the generic XML reading of the whole message, plus the patient
    the metadata describes."""

    formats = frozenset({XDS})

    def sniff(self, payload: Payload) -> bool:
        if payload.first != b"<":
            return False
        data = payload.data
        return (RIM_NS in data or XDSB_NS in data) and payload.xml_root() is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        root = payload.xml()
        combined = Combined(XDS)
        combined.add_fields(metadata_findings(root))
        combined.add("soap", _GENERIC.inspect(payload, reader))
        return combined.result()


_GENERIC = GenericXml()


def metadata_findings(root: ET.Element) -> list[Finding]:
    """The patient in the metadata: categories and locations, never values."""
    found: list[Finding] = []
    for element in root.iter():
        local = split_tag(str(element.tag))[1]
        if local == "Slot":
            name = element.get("name", "")
            values = _slot_values(element)
            if name == "sourcePatientInfo":
                for value in values:
                    number, _, rest = value.partition("|")
                    field = number.strip().upper().removeprefix("PID-")
                    category = _PID_FIELDS.get(field)
                    if category is not None and rest.strip(" ^&'()"):
                        found.append(Finding(category, f"xds/Slot[sourcePatientInfo]/PID-{field}"))
            elif name in _PATIENT_ID_SLOTS and any(v.strip(" '()") for v in values):
                found.append(Finding(C.MRN, f"xds/Slot[{name.lstrip('$')}]"))
        elif local == "ExternalIdentifier":
            scheme = element.get("identificationScheme", "")
            if scheme in _PATIENT_ID_SCHEMES and element.get("value", "").strip():
                found.append(Finding(C.MRN, "xds/ExternalIdentifier[patientId]"))
        if len(found) >= 1000:
            break
    return found


def _slot_values(slot: ET.Element) -> list[str]:
    return [(value.text or "") for value in slot.iter() if split_tag(str(value.tag))[1] == "Value"]
