"""Safe XML parsing, for every XML format (FHIR XML, HL7 v2 XML, CDA, the generic reader)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gateway.errors import XmlError

# Any HL7-namespaced XML document (FHIR, HL7 v2 XML, CDA) after a preamble in a text: the XML
# formats share this signature, and so one search and its earliest match.
HL7_XML_SIGNATURE = re.compile(r"<(?:\w+:)?\w+[^>]*(?:hl7\.org/fhir|urn:hl7-org:v[23])")


def parse_xml(data: bytes) -> ET.Element:
    # Entity declarations are how XML bombs and external-entity reads work; FHIR, CDA and HL7 v2
    # XML never need them, so a document that declares any is refused, not expanded.
    if b"<!ENTITY" in data or b"<!entity" in data:
        raise XmlError("XML declares entities")
    try:
        return ET.fromstring(data)  # noqa: S314 - entity declarations refused above
    except ET.ParseError as exc:
        raise XmlError(f"malformed XML at line {exc.position[0]}") from None
    except LookupError:  # <?xml encoding="..."?> names an encoding Python does not know
        raise XmlError("XML declares an unknown encoding") from None


def split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag
