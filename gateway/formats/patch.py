"""PATCH bodies read as the resource fragments they write: JSON Patch (RFC 6902, a list of
``{"op", "path", "value"}``) and FHIRPath Patch (a FHIR ``Parameters`` of ``operation``
parameters, each with a type, a path such as ``Patient.birthDate`` and a ``value[x]``).
Each value is named by the element it writes (the last step of its path, or the keys of the
object it writes) and read as a named value; every string is read as prose too. A patch
writes a record about one person, so a name it writes is that person's: PHI on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.containers.budget import Combined
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.model import Category, Format, Inspection
from gateway.phi.fields import is_phi, scan_fields

JSON_PATCH = Format("json-patch")
FHIRPATH_PATCH = Format("fhirpath-patch")
_MAX_PAIRS = 10_000
# FHIR element names by the field names the detectors know.
_ALIASES = {"text": "fullname", "line": "address", "prefix": "", "suffix": ""}


def _is_json_patch(document: Any) -> bool:
    return (
        isinstance(document, list)
        and bool(document)
        and all(isinstance(op, dict) and "op" in op and "path" in op for op in document)
    )


def _operations(document: Any) -> list[dict[str, Any]] | None:
    """The operation parameters of a FHIRPath Patch, or None when it is not one."""
    if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
        return None
    parameters = document.get("parameter")
    if not isinstance(parameters, list):
        return None
    operations = [p for p in parameters if isinstance(p, dict) and p.get("name") == "operation"]
    return operations or None


def _pairs(name: str, value: Any, depth: int = 0) -> Iterator[tuple[str, str]]:
    if depth > 16:
        return
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _pairs(str(key), inner, depth + 1)
    elif isinstance(value, list):
        for inner in value:
            yield from _pairs(name, inner, depth + 1)
    elif isinstance(value, str | int | float):
        yield name, str(value)


def _json_patch_pairs(document: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for op in document:
        if "value" not in op:
            continue
        steps = [s.replace("~1", "/").replace("~0", "~") for s in str(op["path"]).split("/")]
        named = [s for s in steps if s and not s.isdigit() and s != "-"]
        yield from _pairs(named[-1] if named else "value", op["value"])


def _fhirpath_pairs(operations: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for operation in operations:
        parts = {str(p.get("name")): p for p in operation.get("part", []) if isinstance(p, dict)}
        path = _value_of(parts.get("path")) or ""
        element = _value_of(parts.get("name")) or str(path).rsplit(".", 1)[-1]
        value = parts.get("value")
        if isinstance(value, dict):
            for key, inner in value.items():
                if key.startswith("value"):
                    yield from _pairs(str(element), inner)
                elif key == "part":  # a complex value written part by part
                    for sub in inner if isinstance(inner, list) else []:
                        if isinstance(sub, dict):
                            for k, v in sub.items():
                                if k.startswith("value"):
                                    yield from _pairs(str(sub.get("name", element)), v)


def _value_of(part: Any) -> Any:
    if not isinstance(part, dict):
        return None
    return next((v for k, v in part.items() if k.startswith("value")), None)


class Patch(FormatHandler):
    formats = frozenset({JSON_PATCH, FHIRPATH_PATCH})

    def sniff(self, payload: Payload) -> bool:
        if payload.first not in (b"[", b"{"):
            return False
        head = payload.data[:2048]
        if b'"op"' not in head and b'"operation"' not in head:
            return False
        document, error = payload.json()
        return not error and (_is_json_patch(document) or _operations(document) is not None)

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        document, _ = payload.json()
        if _is_json_patch(document):
            fmt, pairs = JSON_PATCH, list(_json_patch_pairs(document))
        else:
            fmt, pairs = FHIRPATH_PATCH, list(_fhirpath_pairs(_operations(document) or []))
        pairs = [(_ALIASES.get(k, k), v) for k, v in pairs[:_MAX_PAIRS]]
        findings = scan_fields([(k, v) for k, v in pairs if k], "patch", None)
        combined = Combined(fmt)
        prose = "\n\n".join(v for _, v in pairs if len(v) >= 8)
        if prose:
            reader.free_text(prose, "patch", payload.depth, combined)
        combined.add_fields(findings)
        result = combined.result()
        named = any(f.category is Category.NAME for f in findings)
        return Inspection(
            fmt,
            "patch",
            result.findings,
            result.contains_phi or named or is_phi(findings),
            result.error,
            result.limit,
        )
