"""Safe XML parsing and FHIR XML → the JSON-shaped tree the FHIR walker reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"


class XmlError(ValueError):
    """Unreadable or unsafe XML (the reason never quotes the content)."""


def parse_xml(data: bytes) -> ET.Element:
    # Entity declarations are how XML bombs and external-entity reads work; FHIR, CDA and HL7 v2
    # XML never need them, so a document that declares any is refused, not expanded.
    if b"<!ENTITY" in data or b"<!entity" in data:
        raise XmlError("XML declares entities")
    try:
        return ET.fromstring(data)  # noqa: S314 - entity declarations refused above
    except ET.ParseError as exc:
        raise XmlError(f"malformed XML at line {exc.position[0]}") from None


def split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def fhir_xml_to_tree(element: ET.Element) -> dict[str, Any]:
    """A FHIR XML resource element → {"resourceType": ..., field: value-or-dict-or-list}."""
    _, rtype = split_tag(element.tag)
    tree = _children(element)
    tree["resourceType"] = rtype
    return tree


def _children(element: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in element:
        ns, name = split_tag(child.tag)
        value: Any
        if ns == XHTML_NS:
            value = "xhtml"
        elif name in ("resource",) or (name == "contained"):
            inner = next(iter(child), None)
            value = fhir_xml_to_tree(inner) if inner is not None else {}
        elif len(child) == 0 and "value" in child.attrib:
            value = child.attrib["value"]
        else:
            value = _children(child)
            if "value" in child.attrib:
                value["value"] = child.attrib["value"]
            if not value and child.attrib:
                value = dict(child.attrib)
        if name in out:
            existing = out[name]
            if isinstance(existing, list):
                existing.append(value)
            else:
                out[name] = [existing, value]
        else:
            out[name] = value
    return out
