"""FHIR JSON → FHIR XML, the inverse of ``gateway.inspect.xmltree.fhir_xml_to_json``.

Used to write a redacted XML resource back in the format it came in. Element order follows
the JSON member order (which the reader took from the XML), except for members the redactor
may add: a resource's ``id``/``meta`` go first and ``meta``'s children are put in schema
order, so the output stays schema-valid.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from gateway.inspect.xmltree import FHIR_NS, XmlError, parse_xml

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
