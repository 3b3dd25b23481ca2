"""HL7 CDA / C-CDA documents: the recordTarget/patientRole names the patient."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.formats.base import Payload, Reader, XmlDocumentFormat
from gateway.model import IDENTIFYING, Category, Finding, Format, Inspection

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
    if root.find(f".//{_N}nonXMLBody") is not None:
        findings.append(Finding(C.OPAQUE_CONTENT, "ClinicalDocument/component/nonXMLBody"))
    # An attached document (nonXMLBody) is opaque content: PHI abroad, as a FHIR Binary is.
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
        return inspect_cda(payload.xml())
