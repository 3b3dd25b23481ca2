"""HL7 v2 XML encoding: fields are elements named SEG.N (``<PID.5>``), read with the same
identifier table as ER7."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gateway.formats.hl7v2.identifiers import IDENTIFIER_FIELDS
from gateway.formats.hl7v2.inspect import MAX_FINDINGS, UNSAFE_TYPE_CHARS
from gateway.model import IDENTIFYING, Finding, Format, Inspection

HL7V2_XML = Format("hl7v2-xml")
HL7_XML_NS = "urn:hl7-org:v2xml"
_XML_FIELD = re.compile(r"^([A-Z][A-Z0-9]{2})\.(\d{1,3})$")
_MSH_TEXT_FIELDS = (9, 10, 12)


def inspect_hl7_xml(root: ET.Element) -> Inspection:
    prefix = f"{{{HL7_XML_NS}}}"
    findings: list[Finding] = []
    texts: dict[str, str] = {}
    for element in root.iter():
        match = _XML_FIELD.match(element.tag.removeprefix(prefix))
        if match is None:
            continue
        seg_id, number = match.group(1), int(match.group(2))
        if seg_id == "MSH" and number in _MSH_TEXT_FIELDS and str(number) not in texts:
            parts = [t.strip() for t in element.itertext()]
            texts[str(number)] = "^".join(p for p in parts if p)[:200]
        category = IDENTIFIER_FIELDS.get(seg_id, {}).get(number)
        # any() stops at the first text: linear even when fields nest inside fields.
        if category is not None and any(t.strip(' "\t\r\n') for t in element.itertext()):
            findings.append(Finding(category, f"{seg_id}-{number}"))
            if len(findings) >= MAX_FINDINGS:
                break
    return Inspection(
        format=HL7V2_XML,
        message_type=UNSAFE_TYPE_CHARS.sub("", "^".join(texts.get("9", "").split("^")[:2]))[:20],
        findings=tuple(findings),
        contains_phi=any(f.category in IDENTIFYING for f in findings),
        reply={
            "control_id": texts.get("10", ""),
            "version": texts.get("12", "").split("^")[0],
        },
    )
