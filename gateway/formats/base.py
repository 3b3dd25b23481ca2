"""What a payload format is to the rest of the gateway: one ``FormatHandler``.

A handler knows one format (or one family read by the same parse) and nothing of policy,
audit or mitmproxy:

- ``sniff``: does this layer of a payload start like my format? Cheap: it looks at the first
  bytes, or at a parse several sniffers share (``Payload.json``, ``Payload.xml_root``: each
  made at most once per layer, whoever asks first);
- ``signature`` / ``starts``: where a document of mine begins inside a text (after a
  preamble, in a JSON string, in a decoded base64 run), so the generic readers can hand it
  back to the registry;
- ``inspect``: findings (category and location, never a value);
- ``redact``: where the format can be rewritten to Safe Harbor, rewrite and verify it from
  the ``Document`` inspection already parsed (decode once);
- ``refusal``: the answer in the sender's protocol (HL7 ACK, FHIR OperationOutcome), or None.

The registry (``gateway/formats/__init__.py``) lists the handlers in priority order; the
inspector, the redactor and ``enforce`` all iterate it.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from gateway.containers.budget import Budget, Combined
from gateway.errors import XmlError
from gateway.formats.jsondoc import read
from gateway.formats.xmldoc import HL7_XML_SIGNATURE, parse_xml, split_tag
from gateway.model import (
    BlockResponse,
    Document,
    Format,
    Inspection,
    RedactionOutcome,
    Verdict,
)
from gateway.phi.safe_harbor import DatePolicy, Pseudonymizer


class Reader(Protocol):
    """What the inspector offers a format that carries other documents inside it (the
    generic JSON, XML and text readers): every layer goes back through the registry under
    the same budget."""

    formats: Sequence[FormatHandler]  # the registry, in priority order
    budget: Budget  # the payload's: depth, time, bytes and members spent so far

    def scan(self, body: bytes, depth: int) -> Inspection:
        """One nested layer, sniffed and inspected like a payload of its own."""
        ...

    def embedded(self, value: str, depth: int) -> Inspection | None:
        """A document, message or encoded blob carried in a string, or None for prose."""
        ...

    def wrapped(self, text: str, depth: int, into: Combined) -> None:
        """Documents after a preamble and base64 runs inside a text, added to ``into``."""
        ...

    def extract(self, job: str, data: bytes) -> Any:
        """The answer of a document reader run outside the proxy (``gateway.workers``: a
        job such as "pdf"), within what is left of the time budget; raises a PayloadError
        when it fails, times out or no reader is free."""
        ...

    def extract_shared(self, job: str, data: bytes, most: int) -> list[Any]:
        """``extract`` shared among up to ``most`` idle readers, each answering for its share
        (``shard`` [k, n]: the pages k, k + n, ... of a PDF); the answers in order, one when
        no other reader is idle."""
        ...

    def recognize(self, job: str, data: bytes, args: dict[str, Any]) -> list[str | None] | None:
        """OCR of an image ("ocr-image") or of scanned PDF pages ("ocr-pdf", ``args``:
        {"pages": [1-based numbers]}): the recognised text of each frame or page, None for
        one that was not read (too little text, past a limit, OCR failed); None when OCR is
        off (``ocr.enabled``). Its time is its own (``ocr.max_seconds``)."""
        ...

    def free_text(self, text: str, location: str, depth: int, into: Combined) -> None:
        """Identifiers in prose and tables, added to ``into`` (a ``Combined``)."""
        ...


# The UTF-16/32 codec and byte-order mark a payload was sent in ("" and b"": as its bytes are).
Wide = tuple[str, bytes]
NOT_WIDE: Wide = ("", b"")

# Every refusal: 451 Unavailable For Legal Reasons, and the incident id of its audit record.
BLOCK_STATUS = 451
INCIDENT_HEADER = "X-PHI-Gateway-Incident"

# Why a whole-document JSON parse failed: it may be NDJSON (one document per line) or not
# JSON at all.
NOT_ONE_DOCUMENT = "not one document"
MALFORMED = "malformed"


class Payload:
    """One layer of a payload as the sniffers see it: leading blanks and a BOM stripped, and
    the parses that several sniffers share, each made at most once."""

    __slots__ = (
        "_json",
        "_json_error",
        "_text",
        "_xml",
        "_xml_error",
        "data",
        "depth",
        "json_by_orjson",
        "sent_as",
        "whole",
    )

    def __init__(
        self, data: bytes, depth: int, whole: bool = False, sent_as: Wide = NOT_WIDE
    ) -> None:
        self.data = data
        self.depth = depth
        # The layer is the payload itself (perhaps re-encoded from UTF-16/32), not a part of
        # it: a format then hands its parse on for redaction (``Inspection.document``).
        self.whole = whole
        # The UTF-16/32 encoding (and BOM) the payload came in; ``data`` is its UTF-8.
        self.sent_as = sent_as
        self._text: str | None = None
        self._json: Any = None
        self._json_error: str | None = None  # None: not parsed yet
        self.json_by_orjson = False
        self._xml: ET.Element | None = None
        self._xml_error: XmlError | None = None

    @property
    def first(self) -> bytes:
        return self.data[:1]

    def latin1(self) -> str:
        """The bytes as Latin-1 text (every byte a character: nothing hides behind an error)."""
        if self._text is None:
            self._text = self.data.decode("latin-1")
        return self._text

    def json(self) -> tuple[Any, str]:
        """(document, "") or (None, why not): ``NOT_ONE_DOCUMENT`` or ``MALFORMED``. A
        RecursionError (a document nested past what the parser reads) is raised."""
        if self._json_error is None:
            try:
                self._json, self.json_by_orjson = read(self.data)
                self._json_error = ""
            except json.JSONDecodeError:
                self._json_error = NOT_ONE_DOCUMENT
            except (UnicodeDecodeError, ValueError):
                self._json_error = MALFORMED
        return self._json, self._json_error

    def xml(self) -> ET.Element:
        """The root element; raises XmlError when the XML is unreadable or unsafe."""
        if self._xml is None:
            if self._xml_error is None:
                try:
                    self._xml = parse_xml(self.data)
                except XmlError as exc:
                    self._xml_error = exc
            if self._xml_error is not None:
                raise self._xml_error
        assert self._xml is not None
        return self._xml

    def xml_root(self) -> ET.Element | None:
        try:
            return self.xml()
        except XmlError:
            return None


@dataclass(frozen=True)
class RedactContext:
    """What a format's redactor needs from the redaction settings."""

    pseudonymizer: Pseudonymizer
    dates: Callable[[str], DatePolicy]  # the date policy for one patient key
    shift: bool  # dates are shifted (not cut to the year): verification allows them
    pseudonymize_ids: bool
    redact_z_segments: bool
    keep: frozenset[str]
    dicom_characteristics: bool = False  # Retain Patient Characteristics Option
    dicom_clean_descriptors: bool = False  # Clean Descriptors Option


@dataclass(frozen=True)
class RefusalRequest:
    """A refusal to build: the verdict, what inspection learned, the incident id, and how
    the client asked (a FHIR client wants an OperationOutcome in the format it spoke)."""

    verdict: Verdict
    inspection: Inspection
    incident_id: str
    text: str  # the human sentence every refusal carries
    content_type: str = ""
    accept: str = ""


class FormatHandler:
    """One payload format (or one family read by the same parse). Subclasses set the class
    attributes and override what their format has; see the module docstring."""

    # The formats this handler's inspections carry: redaction and refusals are dispatched
    # on them.
    formats: ClassVar[frozenset[Format]] = frozenset()
    # Read only when no other format and no container claimed the layer (plain text).
    fallback: ClassVar[bool] = False
    # Where a document of this format starts inside a text, and the label its findings'
    # locations get there ("hl7@120"); handlers sharing a label share one search result.
    signature: ClassVar[re.Pattern[str] | None] = None
    label: ClassVar[str] = ""
    # A string that only starts like this format ("<p>Hi", "{name} is") but does not parse
    # is prose, read by the free-text detectors; False where a start is never prose (MSH|).
    prose_when_unreadable: ClassVar[bool] = True
    # Documents of this format may sit inside JSON of no format (``within_json``).
    claims_json_nodes: ClassVar[bool] = False
    # A binary format whose bytes may look like UTF-16/32 text or start with blanks (DICOM's
    # zero or arbitrary preamble): sniffed on the layer as sent, before the wide-text stage
    # (a fallback that is binary: on the layer as sent, after every other stage).
    binary: ClassVar[bool] = False
    # Reading this format takes a document reader (a worker process) or long work: the proxy
    # inspects such payloads off its event loop (``Inspector.slow``).
    slow: ClassVar[bool] = False

    def starts(self, text: str) -> bool:
        """Does a string (leading blanks stripped) start like a document of this format?"""
        return False

    def sniff(self, payload: Payload) -> bool:
        raise NotImplementedError

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        raise NotImplementedError

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        return RedactionOutcome(
            error=f"redaction is not available for {document.format.value} payloads"
        )

    def can_redact(self, fmt: Format) -> bool:
        return False

    def within_json(
        self, document: Any, reader: Reader, depth: int
    ) -> tuple[str, Inspection] | None:
        """Documents of this format inside a JSON document of no format (FHIR resources in
        an API's own envelope): (label, their inspection), or None."""
        return None

    def owns_json_node(self, node: Any) -> bool:
        """Is this JSON object a document of this format (read by ``within_json``, so the
        generic JSON reader skips it)?"""
        return False

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        return None


def document_of(payload: Payload, fmt: Format, parsed: object) -> Document | None:
    """The parse a format hands the redactor, where the layer is the whole payload (a part
    of a container is never redacted on its own)."""
    return Document(fmt, payload.data, parsed, payload.sent_as) if payload.whole else None


def with_document(inspection: Inspection, payload: Payload, parsed: object) -> Inspection:
    """The inspection, carrying the format's parse for the redactor when the layer is the
    whole payload (a part of a container is never redacted on its own)."""
    if not payload.whole:
        return inspection
    document = Document(inspection.format, payload.data, parsed, payload.sent_as)
    return inspection.with_document(document)


class XmlDocumentFormat(FormatHandler):
    """A format that is XML with a known root: its namespace (and, where set, its local
    name). Such documents after a preamble are found by the one HL7 XML signature."""

    signature = HL7_XML_SIGNATURE
    label = "xml"
    namespace: ClassVar[str] = ""
    root_name: ClassVar[str] = ""  # empty: any root element of the namespace

    def starts(self, text: str) -> bool:
        return text[:1] == "<"

    def sniff(self, payload: Payload) -> bool:
        if payload.first != b"<":
            return False
        root = payload.xml_root()
        if root is None:
            return False
        namespace, local = split_tag(root.tag)
        return namespace == self.namespace and (not self.root_name or local == self.root_name)
