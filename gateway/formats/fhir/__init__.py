"""FHIR: JSON resources, NDJSON bulk exports and XML resources, read into one JSON tree and
judged by the same walker (``inspect.py``), redacted by the same redactor (``redact.py``) and
verified by the same checks (``verify.py``); refused with an OperationOutcome."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from gateway.collector import paused
from gateway.containers.budget import Combined
from gateway.formats import jsondoc
from gateway.formats.attachments import with_attachments
from gateway.formats.base import (
    BLOCK_STATUS,
    INCIDENT_HEADER,
    NOT_ONE_DOCUMENT,
    FormatHandler,
    Payload,
    Reader,
    RedactContext,
    RefusalRequest,
    XmlDocumentFormat,
    document_of,
    with_document,
)
from gateway.formats.fhir.inspect import inspect_resources
from gateway.formats.fhir.outcome import (
    JSON_CONTENT_TYPE,
    XML_CONTENT_TYPE,
    operation_outcome_json,
    operation_outcome_xml,
)
from gateway.formats.fhir.redact import FhirOptions, FhirRedactor
from gateway.formats.fhir.resources import (
    FHIR_FORMATS,
    FHIR_JSON,
    FHIR_NDJSON,
    FHIR_XML,
    find_resources,
    is_resource,
)
from gateway.formats.fhir.verify import verify_fhir
from gateway.formats.fhir.xml import FHIR_NS, fhir_json_to_xml, fhir_xml_to_json
from gateway.model import BlockResponse, Document, Format, Inspection, RedactionOutcome

__all__ = ["FHIR_JSON", "FHIR_NDJSON", "FHIR_XML", "FhirJson", "FhirNdjson", "FhirXml"]

_JSON_START = (b"{", b"[")
# A FHIR JSON resource after a preamble in a text ("see attached: {"resourceType": ...").
_JSON_SIGNATURE = re.compile(r'\{\s*"resourceType"\s*:')

_Writer = Callable[[list[Any]], tuple[bytes, str]]


class _Fhir(FormatHandler):
    """What the three FHIR encodings share: the refusal and the redaction of resources."""

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        inspection = request.inspection
        asked = "fhir" in request.content_type.lower() or "fhir" in request.accept.lower()
        if inspection.format not in FHIR_FORMATS and not asked:
            return None
        headers = ((INCIDENT_HEADER, request.incident_id),)
        if _wants_xml(request.accept, inspection.format):
            body = operation_outcome_xml(request.text, request.incident_id)
            return BlockResponse(BLOCK_STATUS, XML_CONTENT_TYPE, body, headers)
        body = operation_outcome_json(request.text, request.incident_id)
        return BlockResponse(BLOCK_STATUS, JSON_CONTENT_TYPE, body, headers)

    def can_redact(self, fmt: Format) -> bool:
        return fmt in self.formats

    @staticmethod
    def _redact(documents: list[Any], write: _Writer, context: RedactContext) -> RedactionOutcome:
        options = FhirOptions(
            pseudonymizer=context.pseudonymizer,
            dates=context.dates(patient_key(documents) if context.shift else ""),
            pseudonymize_ids=context.pseudonymize_ids,
            keep=context.keep,
        )
        result = FhirRedactor(options).redact(documents)
        try:  # serialized once: the check that it still serializes, and the body sent
            body, content_type = write(result.resources)
        except (TypeError, ValueError):
            return RedactionOutcome(error="redacted document no longer serializes")
        problem = verify_fhir(result.resources, result.originals, context.shift)
        if problem:
            return RedactionOutcome(error=problem)
        return RedactionOutcome(
            body, content_type, dict(result.counts), tuple(sorted(result.locations))
        )


def _wants_xml(accept: str, fmt: Format) -> bool:
    if fmt == FHIR_XML:
        return True
    if fmt in (FHIR_JSON, FHIR_NDJSON):
        return False
    return "xml" in accept.lower() and "json" not in accept.lower()


class FhirJson(_Fhir):
    """One FHIR resource (a Bundle, a Patient, ...) as a JSON document."""

    formats = frozenset({FHIR_JSON})
    signature = _JSON_SIGNATURE
    label = "json"
    claims_json_nodes = True

    def starts(self, text: str) -> bool:
        return text[:1] in ("{", "[")

    def sniff(self, payload: Payload) -> bool:
        return payload.first in _JSON_START and is_resource(payload.json()[0])

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        tree = payload.json()[0]
        parsed = document_of(payload, FHIR_JSON, (tree, payload.json_by_orjson))
        return _inspect([tree], FHIR_JSON, parsed, reader, payload.depth)

    def within_json(
        self, document: Any, reader: Reader, depth: int
    ) -> tuple[str, Inspection] | None:
        resources = find_resources(document)
        if not resources:
            return None
        return "fhir", _inspect(resources, FHIR_JSON, None, reader, depth)

    def owns_json_node(self, node: Any) -> bool:
        return is_resource(node)

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        tree, by_orjson = _json_parse(document.parsed)
        resource, finite = jsondoc.exact(document.data, tree, by_orjson)
        return self._redact([resource], _json_document if finite else _json_as_is, context)


class FhirNdjson(_Fhir):
    """FHIR bulk data: one resource per line (a whole-document JSON parse fails on it)."""

    formats = frozenset({FHIR_NDJSON})

    def sniff(self, payload: Payload) -> bool:
        return payload.first in _JSON_START and payload.json()[1] == NOT_ONE_DOCUMENT

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        resources: list[dict[str, Any]] = []
        lines: list[tuple[bytes, Any, bool]] = []
        others: list[tuple[int, bytes]] = []  # lines that hold no FHIR resource
        for number, line in enumerate(payload.data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc, by_orjson = jsondoc.read(line)
            except ValueError:
                return Inspection(Format.JSON, error=f"malformed JSON (line {number})")
            lines.append((line, doc, by_orjson))
            found = find_resources(doc)
            if found:
                resources.extend(found)
            else:
                others.append((number, line))
        fhir = _inspect(resources, FHIR_NDJSON, None, reader, payload.depth) if resources else None
        if not others and fhir is not None:
            return with_document(fhir, payload, lines)
        # JSON lines of no FHIR shape (an export of an application's own records): each line
        # is read as the JSON document it is. Such a file is never redacted as FHIR.
        combined = Combined(FHIR_NDJSON if fhir is not None else Format.JSON)
        if fhir is not None:
            combined.add("fhir", fhir)
        for number, line in others:
            combined.add(f"line[{number}]", reader.scan(line, payload.depth + 1))
        return combined.result()

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        read = [jsondoc.exact(line, doc, by_orjson) for line, doc, by_orjson in _lines(document)]
        finite = all(line_finite for _, line_finite in read)
        write = _ndjson_documents if finite else _ndjson_as_is
        return self._redact([doc for doc, _ in read], write, context)


class FhirXml(_Fhir, XmlDocumentFormat):
    """One FHIR resource as XML (read into the JSON tree, written back as XML)."""

    formats = frozenset({FHIR_XML})
    namespace = FHIR_NS

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        resource = fhir_xml_to_json(payload.xml())
        parsed = document_of(payload, FHIR_XML, resource)
        return _inspect([resource], FHIR_XML, parsed, reader, payload.depth)

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        resource = document.parsed
        if not is_resource(resource):
            return RedactionOutcome(error="cannot redact: not a FHIR resource")
        return self._redact([resource], _xml_document, context)


def _inspect(
    resources: list[dict[str, Any]],
    fmt: Format,
    document: Document | None,
    reader: Reader,
    depth: int,
) -> Inspection:
    """The resources' findings, and what their attachments hold (each read by its format)."""
    with paused():  # the walk: many findings, no cycles; not the attachments' reading
        inspection, attachments = inspect_resources(resources, fmt, document)
    return with_attachments(inspection, attachments, reader, depth)


def _json_parse(parsed: object) -> tuple[Any, bool]:
    if not (isinstance(parsed, tuple) and len(parsed) == 2 and isinstance(parsed[1], bool)):
        raise TypeError("FHIR JSON document without its parse")
    return parsed[0], parsed[1]


def _lines(document: Document) -> list[tuple[bytes, Any, bool]]:
    parsed = document.parsed
    if not isinstance(parsed, list):
        raise TypeError("FHIR NDJSON document without its parse")
    return parsed


def _json_document(resources: list[Any]) -> tuple[bytes, str]:
    return jsondoc.dumps(resources[0]), JSON_CONTENT_TYPE


def _json_as_is(resources: list[Any]) -> tuple[bytes, str]:
    return jsondoc.dumps_as_is(resources[0]), JSON_CONTENT_TYPE


def _ndjson_documents(resources: list[Any]) -> tuple[bytes, str]:
    return b"\n".join(jsondoc.dumps(r) for r in resources) + b"\n", "application/fhir+ndjson"


def _ndjson_as_is(resources: list[Any]) -> tuple[bytes, str]:
    return b"\n".join(jsondoc.dumps_as_is(r) for r in resources) + b"\n", "application/fhir+ndjson"


def _xml_document(resources: list[Any]) -> tuple[bytes, str]:
    return fhir_json_to_xml(resources[0]), XML_CONTENT_TYPE


def patient_key(documents: list[Any]) -> str:
    """A per-patient key (for date shifting): the first Patient's id, else its identifiers."""
    stack = list(documents)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("resourceType") == "Patient":
                return str(node.get("id") or json.dumps(node.get("identifier"), sort_keys=True))
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(node)
    return ""
