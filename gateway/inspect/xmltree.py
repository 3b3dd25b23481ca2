"""Safe XML parsing, and FHIR XML → FHIR JSON (the shape the FHIR walker and redactor read).

The conversion follows the FHIR XML rules (hl7.org/fhir/xml.html) closely enough to round-trip:
a ``value`` attribute makes a primitive; its ``id`` and ``extension`` go to ``_name`` as in
JSON; an element holding an upper-case child is a resource container; the narrative ``div``
stays XHTML text; repeated elements become lists. Primitive values stay strings (the XML has
no types), so readers must accept "90" where JSON would say 90.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_FHIR_PREFIX = "{" + FHIR_NS + "}"


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


def fhir_xml_to_json(element: ET.Element) -> dict[str, Any]:
    """A FHIR XML resource element → the resource as FHIR JSON."""
    _, rtype = split_tag(element.tag)
    resource: dict[str, Any] = {"resourceType": rtype}
    resource.update(_members(element))
    return resource


def _members(element: ET.Element) -> dict[str, Any]:
    values: dict[str, list[Any]] = {}
    extras: dict[str, list[dict[str, Any] | None]] = {}
    for child in element:
        ns, name = split_tag(child.tag)
        if ns == XHTML_NS:
            values.setdefault(name, []).append(_xhtml(child))
            continue
        value, extra = _element(child)
        values.setdefault(name, []).append(value)
        extras.setdefault(name, []).append(extra)
    out: dict[str, Any] = {}
    for name, items in values.items():
        out[name] = items[0] if len(items) == 1 else items
        found = extras.get(name, [])
        if any(e is not None for e in found):
            out["_" + name] = found[0] if len(found) == 1 else found
    return out


def _element(child: ET.Element) -> tuple[Any, dict[str, Any] | None]:
    """(JSON value, the ``_name`` companion of a primitive or None)."""
    attrib = child.attrib
    if "value" in attrib:  # a primitive, perhaps with an id and extensions
        extra: dict[str, Any] = {}
        if "id" in attrib:
            extra["id"] = attrib["id"]
        extra.update(_members(child))
        return attrib["value"], extra or None
    inner = next(iter(child), None)
    if inner is not None and _is_resource_element(inner):
        return fhir_xml_to_json(inner), None  # contained, Bundle.entry.resource, outcome...
    node: dict[str, Any] = {}
    for key in ("id", "url"):
        if key in attrib:
            node[key] = attrib[key]
    node.update(_members(child))
    return node, None


def _xhtml(element: ET.Element) -> str:
    tail, element.tail = element.tail, None  # tostring would include the text after </div>
    try:  # <div xmlns="...xhtml">, as FHIR JSON writes it
        return ET.tostring(element, encoding="unicode", default_namespace=XHTML_NS)
    except ValueError:  # attributes or elements outside the XHTML namespace: keep prefixes
        return ET.tostring(element, encoding="unicode")
    finally:
        element.tail = tail


def _is_resource_element(element: ET.Element) -> bool:
    """FHIR element names start lower-case, resource names upper-case."""
    if not element.tag.startswith(_FHIR_PREFIX):
        return False
    local = element.tag[len(_FHIR_PREFIX) :]
    return bool(local) and local[0].isupper()
