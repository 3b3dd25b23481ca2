"""Documents inside the healthcare formats that carry them: a FHIR Binary, DocumentReference or
Parameters, a CDA nonXMLBody, an IHE XDS.b Provide and Register Document Set (inline base64
and MTOM/XOP). Built with json, ElementTree and the email package, as their senders build
them."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from email.message import EmailMessage
from email.policy import HTTP

from tests.support.patients import Patient

FHIR = "http://hl7.org/fhir"
CDA = "urn:hl7-org:v3"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
XDSB = "urn:ihe:iti:xds-b:2007"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
XOP = "http://www.w3.org/2004/08/xop/include"
DOCUMENT_ENTRY_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
SUBMISSION_SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def fhir_binary(document: bytes, content_type: str = "application/pdf") -> bytes:
    return json.dumps(
        {"resourceType": "Binary", "id": "b1", "contentType": content_type, "data": _b64(document)}
    ).encode()


def fhir_binary_xml(document: bytes) -> bytes:
    root = ET.Element("Binary", xmlns=FHIR)
    ET.SubElement(root, "contentType", value="application/pdf")
    ET.SubElement(root, "data", value=_b64(document))
    return ET.tostring(root)


def fhir_document_reference(document: bytes, patient: Patient | None) -> bytes:
    """A DocumentReference with the document inline; with ``patient``, about that patient."""
    resource: dict[str, object] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": _b64(document),
                    "size": len(document),
                    "title": "discharge-summary.pdf",
                }
            }
        ],
    }
    if patient is not None:
        resource["subject"] = {"reference": f"Patient/{patient.mrn}"}
    return json.dumps(resource).encode()


def fhir_parameters(document: bytes) -> bytes:
    return json.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "document", "valueBase64Binary": _b64(document)}],
        }
    ).encode()


def cda_non_xml_body(document: bytes, patient: Patient | None) -> bytes:
    """An unstructured CDA document (a scanned or PDF chart wrapped in a ClinicalDocument);
    without ``patient`` its recordTarget says only that the patient is masked."""
    ET.register_namespace("", CDA)
    n = f"{{{CDA}}}"
    root = ET.Element(f"{n}ClinicalDocument")
    ET.SubElement(root, f"{n}code", code="18842-5", codeSystem="2.16.840.1.113883.6.1")
    role = ET.SubElement(ET.SubElement(root, f"{n}recordTarget"), f"{n}patientRole")
    if patient is None:
        ET.SubElement(role, f"{n}id", nullFlavor="MSK")
    else:
        ET.SubElement(role, f"{n}id", root="2.16.840.1.113883.19.5", extension=patient.mrn)
        name = ET.SubElement(ET.SubElement(role, f"{n}patient"), f"{n}name")
        ET.SubElement(name, f"{n}given").text = patient.given
        ET.SubElement(name, f"{n}family").text = patient.family
    body = ET.SubElement(ET.SubElement(root, f"{n}component"), f"{n}nonXMLBody")
    text = ET.SubElement(body, f"{n}text", mediaType="application/pdf", representation="B64")
    text.text = _b64(document)
    return bytes(ET.tostring(root, xml_declaration=True, encoding="utf-8"))


def _slot(parent: ET.Element, name: str, *values: str) -> None:
    slot = ET.SubElement(parent, f"{{{RIM}}}Slot", name=name)
    listing = ET.SubElement(slot, f"{{{RIM}}}ValueList")
    for value in values:
        ET.SubElement(listing, f"{{{RIM}}}Value").text = value


def _pnr(patient: Patient, document: bytes | None) -> ET.Element:
    """ProvideAndRegisterDocumentSetRequest: one DocumentEntry about ``patient``; its
    document inline (``document``) or by XOP reference (None)."""
    for prefix, uri in (("soap", SOAP), ("xdsb", XDSB), ("lcm", LCM), ("rim", RIM), ("xop", XOP)):
        ET.register_namespace(prefix, uri)
    patient_id = f"{patient.mrn}^^^&1.3.6.1.4.1.21367.2005.3.7&ISO"
    envelope = ET.Element(f"{{{SOAP}}}Envelope")
    body = ET.SubElement(envelope, f"{{{SOAP}}}Body")
    request = ET.SubElement(body, f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest")
    submit = ET.SubElement(request, f"{{{LCM}}}SubmitObjectsRequest")
    objects = ET.SubElement(submit, f"{{{RIM}}}RegistryObjectList")
    entry = ET.SubElement(
        objects, f"{{{RIM}}}ExtrinsicObject", id="Document01", mimeType="application/pdf"
    )
    _slot(entry, "creationTime", "20261201120000")
    _slot(entry, "sourcePatientId", patient_id)
    _slot(
        entry,
        "sourcePatientInfo",
        f"PID-3|{patient_id}",
        f"PID-5|{patient.family}^{patient.given}^^^",
        f"PID-7|{patient.birth_date_iso.replace('-', '')}",
        "PID-8|F",
        f"PID-11|{patient.street}^^{patient.city}^{patient.state}^{patient.zip}",
    )
    _slot(entry, "authorPerson", "^Welby^Marcus^^^Dr")
    ET.SubElement(
        entry,
        f"{{{RIM}}}ExternalIdentifier",
        id="ei01",
        identificationScheme=DOCUMENT_ENTRY_PATIENT_ID,
        registryObject="Document01",
        value=patient_id,
    )
    package = ET.SubElement(objects, f"{{{RIM}}}RegistryPackage", id="SubmissionSet01")
    ET.SubElement(
        package,
        f"{{{RIM}}}ExternalIdentifier",
        id="ei02",
        identificationScheme=SUBMISSION_SET_PATIENT_ID,
        registryObject="SubmissionSet01",
        value=patient_id,
    )
    element = ET.SubElement(request, f"{{{XDSB}}}Document", id="Document01")
    if document is None:
        ET.SubElement(element, f"{{{XOP}}}Include", href="cid:document01@hospital.example")
    else:
        element.text = _b64(document)
    return envelope


def xds_inline(patient: Patient, document: bytes) -> bytes:
    return bytes(ET.tostring(_pnr(patient, document), xml_declaration=True, encoding="utf-8"))


def xds_mtom(patient: Patient, document: bytes) -> tuple[bytes, str]:
    """The MTOM/XOP form (multipart/related): the SOAP envelope, then the document as a part
    of its own. Returns (body, Content-Type)."""
    message = EmailMessage(policy=HTTP)
    message.set_type("multipart/related")
    message.set_param("type", "application/xop+xml")
    message.set_param("start", "<root@hospital.example>")
    root = EmailMessage(policy=HTTP)
    root.set_content(
        ET.tostring(_pnr(patient, None), xml_declaration=True, encoding="utf-8"),
        "application",
        "xop+xml",
        cte="binary",
    )
    root.replace_header("Content-Type", 'application/xop+xml; type="application/soap+xml"')
    root["Content-ID"] = "<root@hospital.example>"
    part = EmailMessage(policy=HTTP)
    part.set_content(document, "application", "pdf", cte="binary")
    part["Content-ID"] = "<document01@hospital.example>"
    message.attach(root)
    message.attach(part)
    raw = message.as_bytes()
    header, _, body = raw.partition(b"\r\n\r\n")
    content_type = next(
        line.split(b":", 1)[1].strip().decode()
        for line in header.split(b"\r\n")
        if line.lower().startswith(b"content-type:")
    )
    return body, content_type
