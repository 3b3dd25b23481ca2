"""HL7 CDA / C-CDA documents: the recordTarget/patientRole names the patient."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.formats.attachments import with_attachments
from gateway.formats.base import Payload, Reader, XmlDocumentFormat
from gateway.model import IDENTIFYING, Category, Finding, Format, Inspection
from gateway.phi.fields import safe_label

CDA = Format("cda")
CDA_NS = "urn:hl7-org:v3"
_N = f"{{{CDA_NS}}}"
C = Category
_ROLE_FIELDS: dict[str, Category] = {"id": C.MRN, "addr": C.GEOGRAPHY, "telecom": C.PHONE}
_PATIENT_FIELDS: dict[str, Category] = {
    "name": C.NAME,
    "birthTime": C.DATE,
    "guardian": C.NAME,
    "birthplace": C.GEOGRAPHY,
}


def _present(element: ET.Element) -> bool:
    """An element that carries something (text, a value, or children), not just nullFlavor."""
    if element.get("nullFlavor") and len(element) == 0:
        return False
    return bool(
        (element.text or "").strip() or len(element) or set(element.attrib) - {"nullFlavor", "use"}
    )


def inspect_cda(root: ET.Element) -> Inspection:
    findings: list[Finding] = []
    base = "ClinicalDocument/recordTarget/patientRole"
    for role in root.iter(f"{_N}patientRole"):
        for child in role:
            local = child.tag.removeprefix(_N)
            if local in _ROLE_FIELDS and _present(child):
                category = _ROLE_FIELDS[local]
                if local == "telecom" and child.get("value", "").startswith("mailto:"):
                    category = C.EMAIL
                findings.append(Finding(category, f"{base}/{local}"))
            elif local == "patient":
                for field in child:
                    name = field.tag.removeprefix(_N)
                    if name in _PATIENT_FIELDS and _present(field):
                        findings.append(Finding(_PATIENT_FIELDS[name], f"{base}/patient/{name}"))
    contains_phi = any(
        f.category in IDENTIFYING or f.category is C.OPAQUE_CONTENT for f in findings
    )
    return Inspection(
        format=CDA,
        message_type="ClinicalDocument",
        findings=tuple(findings),
        contains_phi=contains_phi,
    )


class Cda(XmlDocumentFormat):
    """A CDA or C-CDA ClinicalDocument (consolidated CDA is the same XML)."""

    formats = frozenset({CDA})
    namespace = CDA_NS
    root_name = "ClinicalDocument"

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        root = payload.xml()
        return with_attachments(inspect_cda(root), attachments(root), reader, payload.depth)


def attachments(root: ET.Element) -> list[tuple[str, str | bytes]]:
    """Encapsulated data (ED) inline: a ``nonXMLBody`` document, an ``observationMedia``
    image; base64 where ``representation="B64"``, else text. A ``reference`` to a document
    elsewhere carries nothing here."""
    found: list[tuple[str, str | bytes]] = []
    bodies: set[int] = set()
    for body in root.iter(f"{_N}nonXMLBody"):
        for text in body.iter(f"{_N}text"):
            bodies.add(id(text))
            found.append(_encapsulated(text, "ClinicalDocument/component/nonXMLBody/text"))
    for element in root.iter():
        if element.get("representation", "").upper() == "B64" and id(element) not in bodies:
            local = element.tag.removeprefix(_N)
            found.append(_encapsulated(element, f"ClinicalDocument//{safe_label(local)}"))
    return [(where, data) for where, data in found if data]


def _encapsulated(element: ET.Element, where: str) -> tuple[str, str | bytes]:
    content = "".join(element.itertext()) if len(element) == 0 else (element.text or "")
    if element.get("representation", "TXT").upper() == "B64":
        return where, content.strip()
    return where, content.encode("utf-8") if content.strip() else b""
