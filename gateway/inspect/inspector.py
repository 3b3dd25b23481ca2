"""Body → Inspection: undo encodings, sniff the format (ignoring Content-Type, which lies), and
run the matching scanner. Errors are values: a body we cannot read comes back with ``error`` set
and the policy decides what that means (fail closed for foreign destinations)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson

from gateway.config import Limits
from gateway.inspect.cda import CDA_NS, inspect_cda
from gateway.inspect.decode import DecodeError, DecodeLimits, decode_content
from gateway.inspect.fhir import FhirError, inspect_resources, is_resource
from gateway.inspect.fields import safe_label, scan_fields
from gateway.inspect.freetext import scan_text
from gateway.inspect.hl7v2 import (
    HL7_XML_NS,
    Hl7Error,
    inspect_hl7,
    inspect_hl7_xml,
    looks_like_hl7,
)
from gateway.inspect.nested import (
    BASE64_RUN,
    Budget,
    Combined,
    NestingError,
    decode_wide,
    is_archive,
    is_form,
    is_multipart,
    looks_base64,
    unpack_archive,
    unpack_base64,
    unpack_form,
    unpack_multipart,
    wide_encoding,
)
from gateway.inspect.xmltree import FHIR_NS, XmlError, fhir_xml_to_json, parse_xml, split_tag
from gateway.model import Format, Inspection

_BOM = b"\xef\xbb\xbf"
_LEADING = b" \t\r\n\x0b"
_MAX_JSON_DEPTH = 32
log = logging.getLogger(__name__)


class Inspector:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.decode_limits = DecodeLimits(
            max_output_bytes=limits.max_decompressed_bytes,
            max_ratio=limits.max_decompression_ratio,
        )

    def inspect(self, body: bytes, content_encoding: str = "") -> Inspection:
        started = time.perf_counter()
        result = self._inspect(body, content_encoding, started)
        return replace(result, seconds=time.perf_counter() - started)

    def _inspect(self, body: bytes, content_encoding: str, started: float) -> Inspection:
        if len(body) > self.limits.max_body_bytes:
            return Inspection(
                Format.BINARY, error="body exceeds max_body_bytes", limit="max_body_bytes"
            )
        if content_encoding:
            try:
                body = decode_content(body, content_encoding, self.decode_limits)
            except DecodeError as exc:
                return Inspection(Format.BINARY, error=exc.reason, limit=exc.limit)
        budget = Budget(
            self.decode_limits,
            self.limits.max_nesting_depth,
            started + self.limits.max_inspection_seconds,
            self.limits.max_archive_members,
        )
        return _Scanner(budget).scan(body, 0)


class _Scanner:
    """One payload, every layer of it, under one budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def scan(self, body: bytes, depth: int) -> Inspection:
        try:
            self.budget.enter(depth)
            return self._sniff(body, depth)
        except NestingError as exc:
            return Inspection(Format.BINARY, error=exc.reason, limit=exc.limit)
        except (Hl7Error, XmlError, FhirError) as exc:
            return Inspection(Format.BINARY, error=str(exc))
        except RecursionError:
            return Inspection(
                Format.BINARY, error="payload nested too deeply", limit="max_nesting_depth"
            )
        except Exception as exc:  # a scanner bug is an unreadable payload, never a pass
            log.error("inspector failed with %s", type(exc).__name__)
            return Inspection(Format.BINARY, error=f"inspector failed ({type(exc).__name__})")

    def _sniff(self, body: bytes, depth: int) -> Inspection:
        data = body.lstrip(_LEADING).removeprefix(_BOM).lstrip(_LEADING)
        if not data:
            return Inspection(Format.EMPTY)
        wide = wide_encoding(data)
        if wide is not None:
            return self.scan(decode_wide(data, wide), depth + 1)
        first = data[:1]
        if first in (b"M", b"F", b"B"):
            text = data.decode("latin-1")
            if looks_like_hl7(text):
                return inspect_hl7(text)
        if first in (b"{", b"["):
            return self._json(data, depth)
        if first == b"<":
            return self._xml(data, depth)
        if is_archive(data):
            return unpack_archive(data, depth, self.scan, self.budget)
        if is_multipart(data):
            return unpack_multipart(data, depth, self.scan, self.budget)
        if is_form(data):
            return unpack_form(data, depth, self.scan, self.budget)
        if looks_base64(data):
            inner = unpack_base64(data, depth, self.scan, self.budget)
            if inner is not None:
                return inner
        if _mostly_text(data[:4096]):
            return self._text(data, depth)
        return Inspection(Format.BINARY)

    def _text(self, data: bytes, depth: int) -> Inspection:
        """Plain text: healthcare documents after a preamble ("hello MSH|^~\\&|...") and base64
        runs inside it are unwrapped and inspected."""
        combined = Combined(Format.TEXT)
        text = data.decode("utf-8", "replace")
        self._wrapped(text, depth, combined)
        self._free_text(text, "text", depth, combined)
        return combined.result()

    def _xml(self, data: bytes, depth: int) -> Inspection:
        root = parse_xml(data)
        ns, local = split_tag(root.tag)
        if ns == FHIR_NS:
            return inspect_resources([fhir_xml_to_json(root)], Format.FHIR_XML)
        if ns == HL7_XML_NS:
            return inspect_hl7_xml(root)
        if ns == CDA_NS and local == "ClinicalDocument":
            return inspect_cda(root)
        # Any other XML (a SOAP call, an export): element names as field names, texts as prose.
        combined = Combined(Format.XML)
        pairs: list[tuple[str, str]] = []
        texts: list[str] = []
        for number, element in enumerate(root.iter()):
            if number > _MAX_JSON_STRINGS:
                raise NestingError("XML document has too many elements", "max_inspection_seconds")
            text = (element.text or "").strip()
            if text:
                if len(element) == 0:
                    pairs.append((split_tag(str(element.tag))[1], text))
                texts.append(text)
            pairs.extend((split_tag(k)[1], v) for k, v in element.attrib.items())
        combined.add_fields(scan_fields(pairs, "xml"))
        self._free_text("\n\n".join(texts), "xml", depth, combined)
        return combined.result()

    def _wrapped(self, text: str, depth: int, combined: Combined) -> None:
        """Documents after a preamble and base64 runs inside a text."""
        for where, start in _embedded_documents(text):
            combined.add(where, self.scan(text[start:].encode("utf-8"), depth + 1))
        for number, match in enumerate(BASE64_RUN.finditer(text)):
            if number >= self.budget.max_members:
                break
            inner = unpack_base64(match.group(0).encode(), depth, self.scan, self.budget)
            if inner is not None:
                combined.add(f"text[{match.start()}]", inner)

    def _free_text(self, text: str, location: str, depth: int, combined: Combined) -> None:
        """Identifiers in prose and tables, read in pieces so the time budget is checked."""
        start = 0
        while start < len(text):
            end = min(len(text), start + _TEXT_PIECE)
            if end < len(text):  # cut at a line end: a record is not split between pieces
                cut = text.rfind("\n", start, end)
                end = cut + 1 if cut > start else end
            self.budget.enter(depth)
            found = scan_text(text[start:end], location if start == 0 else f"{location}@{start}")
            combined.findings += found.findings
            combined.phi = combined.phi or found.contains_phi
            start = end

    def _json(self, data: bytes, depth: int) -> Inspection:
        try:
            doc: Any = _loads(data)
        except json.JSONDecodeError:
            return _scan_ndjson(data)
        except (UnicodeDecodeError, ValueError):
            return Inspection(Format.JSON, error="malformed JSON")
        if is_resource(doc):
            return inspect_resources([doc], Format.FHIR_JSON)
        resources = _find_resources(doc, 0)
        combined = Combined(Format.JSON)
        if resources:
            combined.add("fhir", inspect_resources(resources, Format.FHIR_JSON))
        strings: list[str] = []
        self._walk_json(doc, "$", depth, combined, strings)
        # The document's plain strings, one record per line pair (a blank line between them
        # keeps a name in one value from pairing with a phone number in another).
        self._free_text("\n\n".join(strings), "$.strings", depth, combined)
        return combined.result()

    def _walk_json(
        self, node: Any, path: str, depth: int, combined: Combined, strings: list[str]
    ) -> None:
        """Named values of every object, documents hidden in string values, and the plain
        strings (collected into ``strings`` for one free-text pass)."""
        if len(strings) > _MAX_JSON_STRINGS:
            raise NestingError(
                "JSON document has too many values to inspect", "max_inspection_seconds"
            )
        if isinstance(node, dict):
            if is_resource(node):
                return  # inspected as FHIR
            pairs = [(k, v) for k, v in node.items() if isinstance(v, str)]
            combined.add_fields(scan_fields(pairs, path))
            for key, value in node.items():
                self._walk_json(value, f"{path}.{safe_label(key)}", depth, combined, strings)
        elif isinstance(node, list):
            for value in node:
                self._walk_json(value, f"{path}[]", depth, combined, strings)
        elif isinstance(node, str):
            inner = self._embedded(node, depth) if len(node) >= _EMBEDDED_MIN else None
            if inner is not None:
                combined.add(path, inner)
            elif len(node) >= _FREE_TEXT_MIN:
                strings.append(node)

    def _embedded(self, value: str, depth: int) -> Inspection | None:
        """A message, document or encoded blob carried in a string."""
        stripped = value.lstrip()
        if stripped[:3] in ("MSH", "FHS", "BHS"):
            return self.scan(value.encode("utf-8"), depth + 1)
        if stripped[:1] in ("{", "[", "<"):
            inner = self.scan(value.encode("utf-8"), depth + 1)
            # A string that only starts like a document ("<p>Hi<br>", "{name} is...") is
            # prose, read by the free-text pass; a limit that fired still fails closed.
            if inner.error and not inner.limit and inner.format in _PROSE_ON_PARSE_ERROR:
                return None
            return inner
        if BASE64_RUN.fullmatch(stripped.rstrip()):
            return unpack_base64(stripped.encode(), depth, self.scan, self.budget)
        if "\n" in value or "\r" in value:  # a pasted note or file: what it wraps
            combined = Combined(Format.TEXT)
            self._wrapped(value, depth, combined)
            inner = combined.result()
            return inner if inner.findings or inner.error else None
        return None


# Signatures of a healthcare document that does not start the payload.
_HL7_SIGNATURE = re.compile(r"(?:MSH|FHS|BHS)([^\w\s])[^\w\s]{3,4}\1")
_FHIR_JSON_SIGNATURE = re.compile(r'\{\s*"resourceType"\s*:')
_XML_SIGNATURE = re.compile(r"<(?:\w+:)?\w+[^>]*(?:hl7\.org/fhir|urn:hl7-org:v[23])")


def _embedded_documents(text: str) -> Iterator[tuple[str, int]]:
    """(label, offset) of the first HL7 message, FHIR JSON and HL7/FHIR/CDA XML in a text."""
    for label, pattern in (
        ("hl7", _HL7_SIGNATURE),
        ("json", _FHIR_JSON_SIGNATURE),
        ("xml", _XML_SIGNATURE),
    ):
        match = pattern.search(text)
        if match is not None and match.start() > 0:
            yield f"{label}@{match.start()}", match.start()


_MAX_JSON_STRINGS = 100_000
_EMBEDDED_MIN = 20
_PROSE_ON_PARSE_ERROR = frozenset({Format.JSON, Format.XML, Format.BINARY})
_FREE_TEXT_MIN = 8  # shorter strings cannot hold a labelled identifier
_TEXT_PIECE = 256 * 1024


def _mostly_text(sample: bytes) -> bool:
    printable = sum(1 for b in sample if b >= 0x20 or b in (9, 10, 13))
    return printable >= 0.95 * len(sample)


def _loads(data: bytes) -> Any:
    """orjson where it reads the document (a 500 KB Bundle: ~5.5 ms against ~9.5 ms here),
    json where it refuses one: NaN, Infinity, UTF-16/32, a BOM, lone surrogates, 1,024+
    levels. Where both read a document they read the same strings, keys and structure;
    orjson reads an integer past 64 bits as a float, and inspection reads no number (the
    redactor, which writes numbers back, guards that case: redact.redactor._loads)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _scan_ndjson(data: bytes) -> Inspection:
    resources: list[dict[str, Any]] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = _loads(line)
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
