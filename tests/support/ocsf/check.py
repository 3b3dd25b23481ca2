"""Check an event against the pinned OCSF 1.8.0 class definitions (``extract.py``): every
attribute defined by the class or object, of its type (regex, range, enum), every required
one present (profile attributes only when the event names the profile), constraints met."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("data_security_finding.json")
_PYTHON = {
    "string_t": (str,),
    "integer_t": (int,),
    "long_t": (int,),
    "float_t": (int, float),
    "boolean_t": (bool,),
}


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


def problems(event: dict[str, Any]) -> list[str]:
    found: list[str] = []
    cls = schema()["classes"].get(str(event.get("class_uid")))
    if cls is None:
        return [f"class_uid {event.get('class_uid')!r} is not a pinned class"]
    profiles = set(event.get("metadata", {}).get("profiles") or [])
    _check_object(event, cls, "", profiles, found)
    return found


def _check_object(
    value: dict[str, Any], spec: dict[str, Any], path: str, profiles: set[str], found: list[str]
) -> None:
    attributes = spec["attributes"]
    for name, item in value.items():
        where = f"{path}{name}"
        if name not in attributes:
            found.append(f"{where}: not an attribute of {spec.get('name', 'this object')}")
            continue
        attribute = attributes[name]
        if attribute.get("is_array"):
            if not isinstance(item, list):
                found.append(f"{where}: must be an array")
                continue
            for n, element in enumerate(item):
                _check_value(element, attribute, f"{where}[{n}]", profiles, found)
        else:
            _check_value(item, attribute, where, profiles, found)
    for name, attribute in attributes.items():
        needed = attribute.get("requirement") == "required"
        profile = attribute.get("profile")
        if needed and (profile is None or profile in profiles) and name not in value:
            found.append(f"{path}{name}: required")
    constraints = spec.get("constraints") or {}
    for name in ("at_least_one", "just_one"):
        group = constraints.get(name)
        if group:
            present = sum(1 for key in group if key in value)
            if present == 0 or (name == "just_one" and present > 1):
                found.append(f"{path.rstrip('.') or '(event)'}: {name} of {group}")


def _check_value(
    item: Any, attribute: dict[str, Any], where: str, profiles: set[str], found: list[str]
) -> None:
    kind = attribute["type"]
    root = schema()
    if kind in ("object", "json_t"):  # free-form by definition
        if kind == "object" and not isinstance(item, dict):
            found.append(f"{where}: must be an object")
        return
    if kind in root["objects"]:
        if not isinstance(item, dict):
            found.append(f"{where}: must be an object ({kind})")
            return
        obj = dict(root["objects"][kind], name=kind)
        _check_object(item, obj, f"{where}.", profiles, found)
        return
    base = kind
    spec = root["types"].get(kind, {})
    if kind not in _PYTHON:
        base = spec.get("type", "string_t")
    expected = _PYTHON.get(base, (str,))
    if isinstance(item, bool) and bool not in expected:
        found.append(f"{where}: must be {base}, not a boolean")
        return
    if not isinstance(item, expected):
        found.append(f"{where}: must be {base} ({kind})")
        return
    regex = spec.get("regex")
    if regex and isinstance(item, str) and not re.search(regex, item):
        found.append(f"{where}: does not match {kind}")
    bounds = spec.get("range")
    if bounds and isinstance(item, int) and not bounds[0] <= item <= bounds[1]:
        found.append(f"{where}: outside {bounds}")
    enum = attribute.get("enum")
    if enum and str(item) not in enum:
        found.append(f"{where}: {item!r} not in its enum")
