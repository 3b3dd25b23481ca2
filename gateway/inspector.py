"""The inspect stage: body → Inspection. Undo the Content-Encoding, then read every layer of
the payload — sniffing its format regardless of Content-Type, which lies — against the
format registry (``gateway.formats.FORMATS``), with the containers stage (archives,
multipart, forms, base64, UTF-16/32) in between; all under one budget.

Errors are values: a body we cannot read comes back with ``error`` set and the policy
decides what that means (fail closed for foreign destinations). An exception no format
expected is such an error too, counted by type only and flagged ``internal``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gateway import metrics
from gateway.config import Limits, Ocr
from gateway.containers import (
    Budget,
    Combined,
    carries_encoded_document,
    starts_container,
    unwrap,
)
from gateway.containers.encoded import BASE64_RUN, unpack_base64
from gateway.containers.encoding import DecodeLimits, decode_content
from gateway.containers.wide import byte_order_mark, decode_wide, wide_encoding
from gateway.errors import ContainerError, PayloadError
from gateway.formats import FORMATS
from gateway.formats.base import NOT_WIDE, FormatHandler, Payload, Wide
from gateway.model import Format, Inspection
from gateway.phi.freetext import scan_text
from gateway.workers import DocumentWorkers, run_in_process

_BOM = b"\xef\xbb\xbf"
_SLOW_HEAD = 2048
_LEADING = b" \t\r\n\x0b"
_TEXT_PIECE = 256 * 1024
# What the inspector calls an exception no format expected (a bug): the reason starts so.
INTERNAL_FAILURE = "inspector failed"
UNKNOWN_BINARY = "binary of unknown format"
log = logging.getLogger(__name__)
_OCR_FAILURES_LOGGED: set[str] = set()


class Inspector:
    """``workers``: the pool that reads documents (PDF) outside this process. Without one
    (tools, tests) they are read in process: never in the proxy, where a reader's crash would
    be the gateway's."""

    def __init__(
        self,
        limits: Limits,
        formats: Sequence[FormatHandler] = FORMATS,
        workers: DocumentWorkers | None = None,
        ocr: Ocr | None = None,
    ) -> None:
        self.limits = limits
        self.ocr = ocr or Ocr()
        self.formats = formats
        self.workers = workers
        self.registry = Registry(formats)
        self.document_args = {
            "max_pages": limits.max_pdf_pages,
            "max_bytes": limits.max_decompressed_bytes,
        }
        self.decode_limits = DecodeLimits(
            max_output_bytes=limits.max_decompressed_bytes,
            max_ratio=limits.max_decompression_ratio,
        )

    def inspect(self, body: bytes, content_encoding: str = "") -> Inspection:
        started = time.perf_counter()
        result = self._inspect(body, content_encoding, started)
        return result.timed(time.perf_counter() - started)

    def _inspect(self, body: bytes, content_encoding: str, started: float) -> Inspection:
        if len(body) > self.limits.max_body_bytes:
            return Inspection(
                Format.BINARY, error="body exceeds max_body_bytes", limit="max_body_bytes"
            )
        if content_encoding:
            try:
                body = decode_content(body, content_encoding, self.decode_limits)
            except PayloadError as exc:
                return Inspection(Format.BINARY, error=exc.reason, limit=exc.limit)
        budget = Budget(
            self.decode_limits,
            self.limits.max_nesting_depth,
            started + self.limits.max_inspection_seconds,
            self.limits.max_archive_members,
            max_dicom_elements=self.limits.max_dicom_elements,
            max_dicom_depth=self.limits.max_dicom_depth,
            max_protobuf_fields=self.limits.max_protobuf_fields,
            max_protobuf_depth=self.limits.max_protobuf_depth,
        )
        scanner = Scanner(budget, self.registry, self._extract, self._recognize)
        return scanner.scan(body, 0, whole=True)

    def slow(self, body: bytes) -> bool:
        """Would inspecting this body take a document reader or unpacking? Then the proxy
        inspects it off its event loop. Decided on the first bytes (a format marked slow
        sniffs them, or they start a container, which may hold such a document) or on base64
        of such a document anywhere in the body."""
        head = body[:_SLOW_HEAD].lstrip(_LEADING)
        if not head:
            return False
        payload = Payload(head, 0)
        return (
            any(h.sniff(payload) for h in self.registry.slow)
            or starts_container(head)
            or carries_encoded_document(body)
        )

    def _recognize(self, job: str, data: bytes, args: dict[str, Any]) -> list[str | None] | None:
        """OCR (``job``: "ocr-image" or "ocr-pdf"): the text of each frame or page, None for
        one not read; None when OCR is off. A failure leaves every page unread (as if OCR
        were off: never a worse decision), counted and logged without the document."""
        ocr = self.ocr
        if not ocr.enabled:
            return None
        job_args = {
            **args,
            "languages": ocr.languages,
            "max_pages": ocr.max_pages,
            "max_pixels": ocr.max_pixels,
            "dpi": ocr.dpi,
            "seconds": ocr.max_seconds,
        }
        expected = len(args.get("pages", ())) or 1
        try:
            if self.workers is None:
                answer = run_in_process(job, data, job_args)
            else:  # a little longer than tesseract's own timeout, so it reports first
                answer = self.workers.run(job, data, job_args, ocr.max_seconds + 2)
        except PayloadError as exc:
            if exc.reason not in _OCR_FAILURES_LOGGED:  # once per reason: counted always
                _OCR_FAILURES_LOGGED.add(exc.reason)
                log.warning("OCR failed: %s (further failures are only counted)", exc.reason)
            metrics.OCR_PAGES.labels("failed").inc(expected)
            return [None] * expected
        texts = [t for t in answer.get("texts", ()) if isinstance(t, str)]
        expected = max(expected, int(answer.get("frames", 0) or 0), len(texts))
        read: list[str | None] = []
        for text in texts:
            enough = len("".join(text.split())) >= ocr.min_text_characters
            metrics.OCR_PAGES.labels("read" if enough else "little-text").inc()
            read.append(text if enough else None)
        if expected > len(read):
            metrics.OCR_PAGES.labels("unread").inc(expected - len(read))
        return read + [None] * (expected - len(read))

    def _extract(self, job: str, data: bytes, deadline: float, most: int = 1) -> list[Any]:
        seconds = deadline - time.perf_counter()
        if seconds <= 0:
            raise ContainerError(
                "inspection took longer than max_inspection_seconds", "max_inspection_seconds"
            )
        if self.workers is None:
            return [run_in_process(job, data, self.document_args)]
        return self.workers.run_split(job, data, self.document_args, seconds, most)


class Registry:
    """The registry as the scanner reads it, sorted out once: the formats asked before the
    containers and after them, those that say where a document starts, and one search per
    distinct signature (the XML formats share theirs)."""

    def __init__(self, formats: Sequence[FormatHandler]) -> None:
        self.formats = formats
        self.documents = tuple(h for h in formats if not h.fallback and not h.binary)
        self.fallbacks = tuple(h for h in formats if h.fallback)
        self.starts = tuple(h for h in formats if type(h).starts is not FormatHandler.starts)
        self.slow = tuple(h for h in formats if h.slow)
        self.binary = tuple(h for h in formats if h.binary and not h.fallback)
        signatures: dict[tuple[str, re.Pattern[str]], None] = {}
        for handler in formats:
            if handler.signature is not None:
                signatures[(handler.label, handler.signature)] = None
        self.signatures = tuple(signatures)


class Scanner:
    """One payload, every layer of it, under one budget: the ``Reader`` the formats that
    carry other documents (generic JSON, XML, text) call back into."""

    def __init__(
        self,
        budget: Budget,
        registry: Registry,
        extract: Callable[[str, bytes, float, int], list[Any]],
        recognize: Callable[[str, bytes, dict[str, Any]], list[str | None] | None],
    ) -> None:
        self.budget = budget
        self._extractor = extract
        self._recognizer = recognize
        self.formats = registry.formats
        self._documents = registry.documents
        self._fallbacks = registry.fallbacks
        self._starts = registry.starts
        self._signatures = registry.signatures
        self._binary = registry.binary

    def scan(
        self, body: bytes, depth: int, whole: bool = False, sent_as: Wide = NOT_WIDE
    ) -> Inspection:
        try:
            self.budget.enter(depth)
            return self._sniff(body, depth, whole, sent_as)
        except PayloadError as exc:
            return Inspection(Format.BINARY, error=exc.reason, limit=exc.limit)
        except RecursionError:
            return Inspection(
                Format.BINARY, error="payload nested too deeply", limit="max_nesting_depth"
            )
        except Exception as exc:  # a scanner bug is an unreadable payload, never a pass
            log.error("inspector failed with %s", type(exc).__name__)
            error = f"{INTERNAL_FAILURE} ({type(exc).__name__})"
            return Inspection(Format.BINARY, error=error, internal=True)

    def _sniff(self, body: bytes, depth: int, whole: bool, sent_as: Wide) -> Inspection:
        if self._binary and not sent_as[0]:
            exact = Payload(body, depth, whole)
            for handler in self._binary:
                if handler.sniff(exact):
                    return handler.inspect(exact, self)
        data = body.lstrip(_LEADING).removeprefix(_BOM).lstrip(_LEADING)
        if not data:
            return Inspection(Format.EMPTY)
        wide = wide_encoding(data)
        if wide is not None:  # the same payload, re-encoded: still the whole of it
            sent = (wide, byte_order_mark(data, wide))
            return self.scan(decode_wide(data, wide), depth + 1, whole, sent)
        payload = Payload(data, depth, whole, sent_as)
        for handler in self._documents:
            if handler.sniff(payload):
                return handler.inspect(payload, self)
        container = unwrap(data, depth, self.scan, self.budget)
        if container is not None:
            return container
        for handler in self._fallbacks:
            # A binary fallback reads the bytes as sent: protobuf's first byte is often "\n".
            layer = Payload(body, depth, whole, sent_as) if handler.binary else payload
            if handler.sniff(layer):
                return handler.inspect(layer, self)
        # Bytes no reader knows may hold anything: content nobody can see into, decided by
        # policy.unreadable_media abroad like an image.
        return Inspection(Format.BINARY, opaque=UNKNOWN_BINARY)

    # -- the Reader the generic formats call back into --------------------------------------
    def extract(self, job: str, data: bytes) -> Any:
        return self._extractor(job, data, self.budget.deadline, 1)[0]

    def extract_shared(self, job: str, data: bytes, most: int) -> list[Any]:
        return self._extractor(job, data, self.budget.deadline, most)

    def recognize(self, job: str, data: bytes, args: dict[str, Any]) -> list[str | None] | None:
        # OCR has its own time (ocr.max_seconds): the rest of inspection keeps its budget.
        started = time.perf_counter()
        try:
            return self._recognizer(job, data, args)
        finally:
            self.budget.deadline += time.perf_counter() - started

    def wrapped(self, text: str, depth: int, into: Combined) -> None:
        """Documents after a preamble and base64 runs inside a text."""
        for where, start in self._embedded_documents(text):
            into.add(where, self.scan(text[start:].encode("utf-8"), depth + 1))
        for number, match in enumerate(BASE64_RUN.finditer(text)):
            if number >= self.budget.max_members:
                break
            inner = unpack_base64(match.group(0).encode(), depth, self.scan, self.budget)
            if inner is not None:
                into.add(f"text[{match.start()}]", inner)

    def _embedded_documents(self, text: str) -> Iterator[tuple[str, int]]:
        """(label@offset, offset) of the first document of each label that does not start
        the text."""
        first: dict[str, int] = {}
        for label, signature in self._signatures:
            match = signature.search(text)
            if match is not None and (label not in first or match.start() < first[label]):
                first[label] = match.start()
        for label, start in first.items():
            if start > 0:
                yield f"{label}@{start}", start

    def free_text(self, text: str, location: str, depth: int, into: Combined) -> None:
        """Identifiers in prose and tables, read in pieces so the time budget is checked."""
        start = 0
        while start < len(text):
            end = min(len(text), start + _TEXT_PIECE)
            if end < len(text):  # cut at a line end: a record is not split between pieces
                cut = text.rfind("\n", start, end)
                end = cut + 1 if cut > start else end
            self.budget.enter(depth)
            found = scan_text(text[start:end], location if start == 0 else f"{location}@{start}")
            into.findings += found.findings
            into.phi = into.phi or found.contains_phi
            start = end

    def embedded(self, value: str, depth: int) -> Inspection | None:
        """A message, document or encoded blob carried in a string."""
        stripped = value.lstrip()
        for handler in self._starts:
            if handler.starts(stripped):
                inner = self.scan(value.encode("utf-8"), depth + 1)
                # A string that only starts like a document ("<p>Hi<br>", "{name} is...") is
                # prose, read by the free-text pass; a limit that fired still fails closed.
                if (
                    handler.prose_when_unreadable
                    and inner.error
                    and not inner.limit
                    and inner.format in _PROSE_ON_PARSE_ERROR
                ):
                    return None
                return inner
        if BASE64_RUN.fullmatch(stripped.rstrip()):
            return unpack_base64(stripped.encode(), depth, self.scan, self.budget)
        if "\n" in value or "\r" in value:  # a pasted note or file: what it wraps
            combined = Combined(Format.TEXT)
            self.wrapped(value, depth, combined)
            inner = combined.result()
            return inner if inner.findings or inner.error else None
        return None


_PROSE_ON_PARSE_ERROR = frozenset({Format.JSON, Format.XML, Format.BINARY})
