"""The redact action: decode, redact by format, verify, re-encode. A message that cannot be
redacted, or whose redacted form fails verification, comes back with ``error`` set: the
engine then blocks it (never forward a half-redacted message)."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config import Limits, RedactionSettings
from gateway.inspect.decode import DecodeError, DecodeLimits, decode_content
from gateway.inspect.xmltree import XmlError, fhir_xml_to_json, parse_xml
from gateway.model import Format
from gateway.redact.fhir import FhirOptions, FhirRedactionError, FhirRedactor
from gateway.redact.fhir_xml import fhir_json_to_xml
from gateway.redact.hl7v2 import Hl7Options, Hl7RedactionError, Hl7Redactor
from gateway.redact.safe_harbor import DatePolicy, Pseudonymizer
from gateway.redact.verify import verify_fhir, verify_hl7

log = logging.getLogger(__name__)
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RedactionOutcome:
    body: bytes = b""
    content_type: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    locations: tuple[str, ...] = ()
    error: str = ""  # non-empty: block instead (a reason, never content)


def site_secret(settings: RedactionSettings) -> tuple[bytes, bool]:
    """The pseudonym key from the environment, or a random one for this process only."""
    value = os.environ.get(settings.secret_env, "")
    if value:
        return value.encode(), True
    return secrets.token_bytes(32), False


class Redactor:
    def __init__(self, settings: RedactionSettings, limits: Limits, secret: bytes) -> None:
        self.settings = settings
        self.pseudonymizer = Pseudonymizer(secret)
        self.decode_limits = DecodeLimits(
            limits.max_decompressed_bytes, limits.max_decompression_ratio
        )
        self.shift = settings.dates == "shift"

    def _dates(self, patient_key: str) -> DatePolicy:
        if not self.shift:
            return DatePolicy()
        days = self.pseudonymizer.shift_days(patient_key, self.settings.max_shift_days)
        return DatePolicy(mode="shift", shift_days=days)

    def redact(self, body: bytes, content_encoding: str, fmt: Format) -> RedactionOutcome:
        # The cyclic garbage collector is paused while a message is redacted: a decoded
        # document is a tree (no cycles to find), yet its tens of thousands of fresh
        # containers would trigger dozens of collections, each walking them again (~8 % of a
        # 2.7 MB Bundle here, more in a proxy with a larger heap). Reference counting still
        # frees acyclic garbage at once. Only the caller that paused the collector resumes
        # it, so concurrent redactions cannot leave it off.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._redact(body, content_encoding, fmt)
        finally:
            if paused:
                gc.enable()

    def _redact(self, body: bytes, content_encoding: str, fmt: Format) -> RedactionOutcome:
        try:
            data = (
                decode_content(body, content_encoding, self.decode_limits)
                if content_encoding
                else body
            )
            data = data.lstrip(b" \t\r\n\x0b").removeprefix(_BOM)
            if fmt is Format.HL7V2:
                return self._hl7(data)
            if fmt is Format.FHIR_JSON:
                document, finite = _loads(data)
                return self._fhir([document], _json_document if finite else _json_document_as_is)
            if fmt is Format.FHIR_NDJSON:
                lines = [_loads(line) for line in data.splitlines() if line.strip()]
                finite = all(line_finite for _, line_finite in lines)
                write = _ndjson_documents if finite else _ndjson_documents_as_is
                return self._fhir([document for document, _ in lines], write)
            if fmt is Format.FHIR_XML:
                return self._fhir([fhir_xml_to_json(parse_xml(data))], _xml_document)
        except (
            DecodeError,
            Hl7RedactionError,
            FhirRedactionError,
            XmlError,
            ValueError,
            RecursionError,
        ) as exc:
            return RedactionOutcome(error=f"cannot redact: {type(exc).__name__}")
        except Exception as exc:
            # Only the type: an exception's text can quote the payload.
            log.error("redaction failed unexpectedly (%s); message blocked", type(exc).__name__)
            return RedactionOutcome(error=f"cannot redact: unexpected {type(exc).__name__}")
        return RedactionOutcome(error=f"redaction is not available for {fmt.value} payloads")

    def _hl7(self, data: bytes) -> RedactionOutcome:
        # UTF-8 when it is (so case-insensitive matching works for accented names), else
        # latin-1 (byte-preserving); the output is written back in the same encoding.
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = data.decode("latin-1"), "latin-1"
        options = Hl7Options(
            pseudonymizer=self.pseudonymizer,
            dates=self._dates(_hl7_patient_key(text) if self.shift else ""),
            pseudonymize_ids=self.settings.identifiers == "pseudonym",
            redact_z_segments=self.settings.z_segments == "redact",
            keep=frozenset(self.settings.keep),
        )
        result = Hl7Redactor(options).redact(text)
        problem = verify_hl7(result.text, result.searched, self.shift)
        if problem:
            return RedactionOutcome(error=problem)
        return RedactionOutcome(
            result.text.encode(encoding),
            "x-application/hl7-v2+er7",
            dict(result.counts),
            tuple(sorted(result.locations)),
        )

    def _fhir(self, documents: list[Any], write: _FhirWriter) -> RedactionOutcome:
        options = FhirOptions(
            pseudonymizer=self.pseudonymizer,
            dates=self._dates(_fhir_patient_key(documents) if self.shift else ""),
            pseudonymize_ids=self.settings.identifiers == "pseudonym",
            keep=frozenset(self.settings.keep),
        )
        result = FhirRedactor(options).redact(documents)
        try:  # serialized once: the check that it still serializes, and the body sent
            body, content_type = write(result.resources)
        except (TypeError, ValueError):
            return RedactionOutcome(error="redacted document no longer serializes")
        problem = verify_fhir(result.resources, result.originals, self.shift)
        if problem:
            return RedactionOutcome(error=problem)
        return RedactionOutcome(
            body, content_type, dict(Counter(result.counts)), tuple(sorted(result.locations))
        )


_FhirWriter = Callable[[list[Any]], tuple[bytes, str]]


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400
        raise _NotFinite
    return number


def _not_finite(text: str) -> float:  # NaN, Infinity, -Infinity
    raise _NotFinite


# Made once: json.loads(data, parse_float=...) builds a new decoder on every call (~10 µs).
_FINITE = json.JSONDecoder(parse_float=_finite, parse_constant=_not_finite)


def _loads(data: bytes) -> tuple[Any, bool]:
    """The document, and whether it holds only finite numbers. orjson would write NaN and
    Infinity as null: such a document is written by json, as it always was."""
    # orjson reads the same values for half the cost (2.7 MB: ~50 M instructions less). It
    # refuses NaN, Infinity, 1e400, lone surrogates and non-UTF-8 text, and those go to json
    # below as before; but it reads an integer beyond 64 bits as a float: json reads those.
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        if not _long_number(data):
            return document, True
    text = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
    try:
        return _FINITE.decode(text), True
    except _NotFinite:
        return json.loads(text), False


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19  # 2**63 has 19 digits, and orjson reads -2**63 - 1 as a float


def _long_number(data: bytes) -> bool:
    """Might ``data``, valid JSON, hold a number of 19 digits or more? A digit run that long
    inside a string (a Synthea narrative's seed) is told apart by counting the quotes before
    it: an odd count of unescaped ones. Valid JSON has backslashes only in strings, each
    starting an escape; past an escaped backslash the count is not tried."""
    digits = data.translate(_DIGITS_AS_ZERO)  # ~9 instructions a byte: a regex costs ~20x
    at = digits.find(_LONG_DIGITS)
    start = quotes = 0
    while at >= 0:
        if data.find(b"\\\\", start, at) >= 0:
            return True
        quotes += data.count(b'"', start, at) - data.count(b'\\"', start, at)
        if quotes % 2 == 0:
            return True  # outside every string: a number
        start = at  # a digit: no escape or quote straddles it
        at = digits.find(_LONG_DIGITS, at + len(_LONG_DIGITS))
    return False


def _dumps(document: Any) -> bytes:
    """Compact JSON from orjson (~10x faster than json.dumps; the same JSON once parsed).
    What orjson refuses — integers beyond 64 bits, nesting deeper than 255 — json writes,
    exactly as before; a lone surrogate fails in both (the message is then blocked)."""
    try:
        return orjson.dumps(document)
    except TypeError:  # orjson.JSONEncodeError
        return _dumps_as_is(document)


def _dumps_as_is(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def _json_document(resources: list[Any]) -> tuple[bytes, str]:
    return _dumps(resources[0]), "application/fhir+json"


def _json_document_as_is(resources: list[Any]) -> tuple[bytes, str]:
    return _dumps_as_is(resources[0]), "application/fhir+json"


def _ndjson_documents(resources: list[Any]) -> tuple[bytes, str]:
    return b"\n".join(_dumps(r) for r in resources) + b"\n", "application/fhir+ndjson"


def _ndjson_documents_as_is(resources: list[Any]) -> tuple[bytes, str]:
    return b"\n".join(_dumps_as_is(r) for r in resources) + b"\n", "application/fhir+ndjson"


def _xml_document(resources: list[Any]) -> tuple[bytes, str]:
    return fhir_json_to_xml(resources[0]), "application/fhir+xml"


def _hl7_patient_key(text: str) -> str:
    """A per-patient key for date shifting: the first PID-3, else the whole PID segment."""
    for segment in text.replace("\n", "\r").split("\r"):
        if segment.startswith("PID") and len(segment) > 4:
            fields = segment.split(segment[3])
            return fields[3] if len(fields) > 3 and fields[3] else segment
    return ""


def _fhir_patient_key(documents: list[Any]) -> str:
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
