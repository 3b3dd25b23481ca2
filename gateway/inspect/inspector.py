"""Body → Inspection: undo encodings, sniff the format (ignoring Content-Type, which lies), and
run the matching scanner. Errors are values: a body we cannot read comes back with ``error`` set
and the policy decides what that means (fail closed for foreign destinations)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from gateway.config import Limits
from gateway.inspect.cda import CDA_NS, inspect_cda
from gateway.inspect.decode import DecodeError, DecodeLimits, decode_content
from gateway.inspect.fhir import FhirError, inspect_resources, is_resource
from gateway.inspect.hl7v2 import (
    HL7_XML_NS,
    Hl7Error,
    inspect_hl7,
    inspect_hl7_xml,
    looks_like_hl7,
)
from gateway.inspect.xmltree import FHIR_NS, XmlError, fhir_xml_to_json, parse_xml, split_tag
from gateway.model import Format, Inspection

_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_LEADING = b" \t\r\n\x0b"
_MAX_JSON_DEPTH = 32
log = logging.getLogger(__name__)


class Inspector:
    def __init__(self, limits: Limits) -> None:
        self.max_body_bytes = limits.max_body_bytes
        self.decode_limits = DecodeLimits(
            max_output_bytes=limits.max_decompressed_bytes,
            max_ratio=limits.max_decompression_ratio,
        )

    def inspect(self, body: bytes, content_encoding: str = "") -> Inspection:
        started = time.perf_counter()
        result = self._inspect(body, content_encoding)
        return replace(result, seconds=time.perf_counter() - started)

    def _inspect(self, body: bytes, content_encoding: str) -> Inspection:
        if len(body) > self.max_body_bytes:
            return Inspection(
                Format.BINARY, error="body exceeds max_body_bytes", limit="max_body_bytes"
            )
        if content_encoding:
            try:
                body = decode_content(body, content_encoding, self.decode_limits)
            except DecodeError as exc:
                return Inspection(Format.BINARY, error=exc.reason, limit=exc.limit)
        try:
            return sniff_and_scan(body)
        except (Hl7Error, XmlError, FhirError) as exc:
            return Inspection(Format.BINARY, error=str(exc))
        except RecursionError:
            return Inspection(
                Format.BINARY, error="payload nested too deeply", limit="max_nesting_depth"
            )
        except Exception as exc:  # a scanner bug is an unreadable payload, never a pass
            log.error("inspector failed with %s", type(exc).__name__)
            return Inspection(Format.BINARY, error=f"inspector failed ({type(exc).__name__})")


def sniff_and_scan(body: bytes) -> Inspection:
    data = body.lstrip(_LEADING).removeprefix(_BOM).lstrip(_LEADING)
    if not data:
        return Inspection(Format.EMPTY)
    if data.startswith(_WIDE_BOMS) or _looks_utf16(data[:64]):
        # UTF-16/32 text: not decoded yet, so it must not pass abroad as "binary".
        return Inspection(Format.BINARY, error="UTF-16/32 payloads are not inspected yet")
    first = data[:1]
    if first in (b"M", b"F", b"B"):
        text = data.decode("latin-1")
        if looks_like_hl7(text):
            return inspect_hl7(text)
    if first in (b"{", b"["):
        return _scan_json(data)
    if first == b"<":
        return _scan_xml(data)
    return Inspection(Format.TEXT if _mostly_text(data[:4096]) else Format.BINARY)


def _looks_utf16(head: bytes) -> bool:
    """ASCII-range text in UTF-16 without a BOM: every other byte is zero."""
    if len(head) < 8:
        return False
    return not any(head[1::2]) or not any(head[0::2])


def _mostly_text(sample: bytes) -> bool:
    printable = sum(1 for b in sample if b >= 0x20 or b in (9, 10, 13))
    return printable >= 0.95 * len(sample)


def _scan_json(data: bytes) -> Inspection:
    try:
        doc: Any = json.loads(data)
    except json.JSONDecodeError:
        return _scan_ndjson(data)
    except (UnicodeDecodeError, ValueError):
        return Inspection(Format.JSON, error="malformed JSON")
    resources = _find_resources(doc, 0)
    if is_resource(doc):
        return inspect_resources([doc], Format.FHIR_JSON)
    if resources:
        return replace(inspect_resources(resources, Format.FHIR_JSON), format=Format.JSON)
    return Inspection(Format.JSON)


def _scan_ndjson(data: bytes) -> Inspection:
    resources: list[dict[str, Any]] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            return Inspection(Format.JSON, error=f"malformed JSON (line {number})")
        resources.extend(_find_resources(doc, 0))
    if not resources:
        return Inspection(Format.JSON)
    return inspect_resources(resources, Format.FHIR_NDJSON)


def _find_resources(node: Any, depth: int) -> list[dict[str, Any]]:
    """FHIR resources anywhere in a JSON document (a resource stops the search below it)."""
    if depth > _MAX_JSON_DEPTH:
        raise RecursionError
    if is_resource(node):
        return [node]
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for value in node.values():
            if isinstance(value, dict | list):
                found += _find_resources(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                found += _find_resources(value, depth + 1)
    return found


def _scan_xml(data: bytes) -> Inspection:
    root = parse_xml(data)
    ns, local = split_tag(root.tag)
    if ns == FHIR_NS:
        return inspect_resources([fhir_xml_to_json(root)], Format.FHIR_XML)
    if ns == HL7_XML_NS:
        return inspect_hl7_xml(root)
    if ns == CDA_NS and local == "ClinicalDocument":
        return inspect_cda(root)
    return Inspection(Format.XML)
