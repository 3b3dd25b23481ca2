"""The DICOM JSON model (PS3.18 annex F: ``application/dicom+json``): STOW-RS metadata,
QIDO-RS results, DICOMweb APIs. A dataset is an object keyed by eight hex digits
(``{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "..."}]}}``); a document is one dataset
or a list of them. Each is turned into the elements the binary walk yields and judged by the
same rules (inspect.py), so a name is a name whether it came in a file or in JSON.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from gateway.containers.budget import Combined
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.formats.dicom.inspect import judge
from gateway.formats.dicom.walk import Element, Header
from gateway.model import Finding, Format, Inspection

DICOM_JSON_FORMAT = Format("dicom-json")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


def _dataset_like(node: Any) -> bool:
    """An object whose first keys are all tags holding attribute objects."""
    if not isinstance(node, dict) or not node:
        return False
    for key, value in itertools.islice(node.items(), 8):
        if len(key) != 8 or not isinstance(value, dict) or not _TAG.match(key):
            return False
    return True


def _datasets(document: Any) -> list[dict[str, Any]] | None:
    """One dataset, or a list of them (empty objects allowed among them)."""
    if _dataset_like(document):
        return [document]
    if (
        isinstance(document, list)
        and all(isinstance(d, dict) for d in document)
        and any(_dataset_like(d) for d in document)
        and all(_dataset_like(d) or not d for d in document)
    ):
        return document
    return None


def _text(value: Any) -> str:
    if isinstance(value, dict):  # a PN: Alphabetic, Ideographic, Phonetic
        return "=".join(str(v) for v in value.values() if isinstance(v, str))
    return "" if value is None else str(value)


class _Flatten:
    def __init__(self, most: int) -> None:
        self.out: list[Element] = []
        self.most = most

    def dataset(self, node: dict[str, Any], parents: tuple[tuple[int, int], ...]) -> None:
        for key, attribute in node.items():
            if not _TAG.match(key) or not isinstance(attribute, dict):
                raise ValueError("not a DICOM JSON attribute")
            if len(self.out) >= self.most:
                raise ValueError("too many DICOM JSON attributes")
            tag, vr = int(key, 16), str(attribute.get("vr", "UN"))[:2]
            values = attribute.get("Value")
            if values is not None and not isinstance(values, list):
                raise ValueError("a DICOM JSON Value that is no array")
            if vr == "SQ":
                self.out.append(Element(tag, "SQ", 1 if values else 0, b"", parents))
                for number, item in enumerate(values or []):
                    if isinstance(item, dict):
                        self.dataset(item, (*parents, (tag, number)))
                continue
            if isinstance(values, list):
                text = "\\".join(_text(v) for v in values)
            elif "InlineBinary" in attribute or "BulkDataURI" in attribute:
                text = "binary"  # a value the JSON only points to or carries encoded
            else:
                text = ""
            value = text.encode("utf-8")
            self.out.append(Element(tag, vr, len(value), value, parents))


class DicomJson(FormatHandler):
    formats = frozenset({DICOM_JSON_FORMAT})
    claims_json_nodes = True

    def sniff(self, payload: Payload) -> bool:
        if payload.first not in (b"{", b"["):
            return False
        head = payload.data[:4096]
        if not re.search(rb'"[0-9A-Fa-f]{8}"\s*:', head):
            return False
        document, error = payload.json()
        return not error and _datasets(document) is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        document, _ = payload.json()
        return _inspect(_datasets(document) or [], reader, payload.depth)

    def within_json(
        self, document: Any, reader: Reader, depth: int
    ) -> tuple[str, Inspection] | None:
        """Datasets inside an API's own JSON ({"results": [{...}, ...]})."""
        found = _find(document)
        return ("dicom", _inspect(found, reader, depth)) if found else None

    def owns_json_node(self, node: Any) -> bool:
        return _dataset_like(node)


def _find(document: Any) -> list[dict[str, Any]]:
    """Every dataset in the document, in document order (no deeper than 32 levels)."""
    found: list[dict[str, Any]] = []
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > 32:
            continue
        if _dataset_like(node):
            found.append(node)
        elif isinstance(node, dict):
            stack.extend((value, depth + 1) for value in reversed(node.values()))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in reversed(node))
    return found


def _inspect(datasets: list[dict[str, Any]], reader: Reader, depth: int) -> Inspection:
    combined = Combined(DICOM_JSON_FORMAT)
    findings: list[Finding] = []
    try:
        for number, node in enumerate(datasets):
            if not node:
                continue
            flat = _Flatten(reader.budget.max_dicom_elements)
            flat.dataset(node, ())
            judged = judge(Header({}, flat.out, "", False, b"", 0), encoding="utf-8")
            where = f"[{number}]." if len(datasets) > 1 else ""
            for location, text in judged.texts:
                reader.free_text(text, f"{where}{location}", depth, combined)
            findings += [Finding(f.category, f"{where}{f.location}") for f in judged.findings]
    except (ValueError, RecursionError):
        return Inspection(DICOM_JSON_FORMAT, error="malformed DICOM JSON")
    combined.findings += findings
    result = combined.result()
    return Inspection(
        DICOM_JSON_FORMAT,
        "dataset" if len(datasets) == 1 else "datasets",
        result.findings,
        bool(findings) or result.contains_phi,
        result.error,
        result.limit,
    )
