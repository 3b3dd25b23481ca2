"""FHIR XML ↔ FHIR JSON: XML is read into the JSON shape the FHIR walker and redactor read,
and a redacted resource is written back as XML.

Reading follows the FHIR XML rules (hl7.org/fhir/xml.html) closely enough to round-trip: a
``value`` attribute makes a primitive; its ``id`` and ``extension`` go to ``_name`` as in
JSON; an element holding an upper-case child is a resource container; the narrative ``div``
stays XHTML text; repeated elements become lists. Primitive values stay strings (the XML has
no types), so readers must accept "90" where JSON would say 90.

Writing keeps the JSON member order (which the reader took from the XML), except for members
the redactor may add: a resource's ``id``/``meta`` go first and ``meta``'s children are put in
schema order, so the output stays schema-valid.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from gateway.errors import XmlError
from gateway.formats.xmldoc import parse_xml, split_tag

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_FHIR_PREFIX = "{" + FHIR_NS + "}"

_RESOURCE_HEAD = ("id", "meta", "implicitRules", "language", "text", "contained")
_META_ORDER = ("versionId", "lastUpdated", "source", "profile", "security", "tag")
_URL_ATTRIBUTE = frozenset({"extension", "modifierExtension"})


def fhir_json_to_xml(resource: dict[str, Any]) -> bytes:
    root = _resource(resource)
    # Elements are written unqualified under one default-namespace declaration (ElementTree's
    # default_namespace option refuses the unqualified value/id/url attributes FHIR uses).
    root.set("xmlns", FHIR_NS)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


def _resource(resource: dict[str, Any]) -> ET.Element:
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype[:1].isupper():
        raise XmlError("resource without a resourceType")
    element = ET.Element(rtype)
    head = [k for k in _RESOURCE_HEAD if k in resource or "_" + k in resource]
    _members(element, resource, head + [k for k in resource if k not in head])
    return element


def _members(parent: ET.Element, node: dict[str, Any], order: list[str]) -> None:
    for key in order:
        if key == "resourceType":
            continue
        if key.startswith("_"):
            if key[1:] not in node:  # a primitive with extensions but no value
                _primitives(parent, key[1:], None, node[key])
            continue
        value = node[key]
        if key == "div" and isinstance(value, str):
            parent.append(_xhtml(value))
        elif _is_primitive(value) or (
            isinstance(value, list) and all(_is_primitive(v) for v in value)
        ):
            _primitives(parent, key, value, node.get("_" + key))
        else:
            for item in value if isinstance(value, list) else [value]:
                parent.append(_complex(key, item))


def _is_primitive(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _primitives(parent: ET.Element, key: str, value: Any, extras: Any) -> None:
    values = value if isinstance(value, list) else [value]
    extra_list = extras if isinstance(extras, list) else [extras] * len(values)
    for index, item in enumerate(values):
        element = ET.SubElement(parent, key)
        extra = extra_list[index] if index < len(extra_list) else None
        if isinstance(extra, dict) and "id" in extra:
            element.set("id", str(extra["id"]))
        if item is not None:
            element.set("value", _text(item))
        if isinstance(extra, dict):
            _members(element, extra, [k for k in extra if k != "id"])


def _complex(key: str, item: Any) -> ET.Element:
    element = ET.Element(key)
    if not isinstance(item, dict):
        raise XmlError(f"{key} is neither a primitive nor an element")
    if "resourceType" in item:
        element.append(_resource(item))
        return element
    order = list(item)
    for attribute in ("id", "url"):
        if attribute in item and (attribute == "id" or key in _URL_ATTRIBUTE):
            element.set(attribute, _text(item[attribute]))
            order.remove(attribute)
    if key == "meta":
        order = [k for k in _META_ORDER if k in item] + [k for k in order if k not in _META_ORDER]
    _members(element, item, order)
    return element


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _xhtml(div: str) -> ET.Element:
    return parse_xml(div.encode())


# -- reading ----------------------------------------------------------------------------------
def fhir_xml_to_json(element: ET.Element) -> dict[str, Any]:
    """A FHIR XML resource element → the resource as FHIR JSON."""
    _, rtype = split_tag(element.tag)
    resource: dict[str, Any] = {"resourceType": rtype}
    resource.update(_read_members(element))
    return resource


def _read_members(element: ET.Element) -> dict[str, Any]:
    values: dict[str, list[Any]] = {}
    extras: dict[str, list[dict[str, Any] | None]] = {}
    for child in element:
        ns, name = split_tag(child.tag)
        if ns == XHTML_NS:
            values.setdefault(name, []).append(_read_xhtml(child))
            continue
        value, extra = _read_element(child)
        values.setdefault(name, []).append(value)
        extras.setdefault(name, []).append(extra)
    out: dict[str, Any] = {}
    for name, items in values.items():
        out[name] = items[0] if len(items) == 1 else items
        found = extras.get(name, [])
        if any(e is not None for e in found):
            out["_" + name] = found[0] if len(found) == 1 else found
    return out


def _read_element(child: ET.Element) -> tuple[Any, dict[str, Any] | None]:
    """(JSON value, the ``_name`` companion of a primitive or None)."""
    attrib = child.attrib
    if "value" in attrib:  # a primitive, perhaps with an id and extensions
        extra: dict[str, Any] = {}
        if "id" in attrib:
            extra["id"] = attrib["id"]
        extra.update(_read_members(child))
        return attrib["value"], extra or None
    inner = next(iter(child), None)
    if inner is not None and _is_resource_read_element(inner):
        return fhir_xml_to_json(inner), None  # contained, Bundle.entry.resource, outcome...
    node: dict[str, Any] = {}
    for key in ("id", "url"):
        if key in attrib:
            node[key] = attrib[key]
    node.update(_read_members(child))
    return node, None


def _read_xhtml(element: ET.Element) -> str:
    tail, element.tail = element.tail, None  # tostring would include the text after </div>
    try:  # <div xmlns="...xhtml">, as FHIR JSON writes it
        return ET.tostring(element, encoding="unicode", default_namespace=XHTML_NS)
    except ValueError:  # attributes or elements outside the XHTML namespace: keep prefixes
        return ET.tostring(element, encoding="unicode")
    finally:
        element.tail = tail


def _is_resource_read_element(element: ET.Element) -> bool:
    """FHIR element names start lower-case, resource names upper-case."""
    if not element.tag.startswith(_FHIR_PREFIX):
        return False
    local = element.tag[len(_FHIR_PREFIX) :]
    return bool(local) and local[0].isupper()
