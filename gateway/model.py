"""Plain values passed between the pipeline stages (capture → locate → inspect → decide → act →
record). Nothing here knows about mitmproxy; nothing here ever holds a payload value."""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar


class Category(enum.StrEnum):
    """HIPAA Safe Harbor identifier categories (45 CFR 164.514(b)(2)(i)(A)-(R))."""

    NAME = "name"  # A
    GEOGRAPHY = "geography"  # B
    DATE = "date"  # C
    PHONE = "phone"  # D
    FAX = "fax"  # E
    EMAIL = "email"  # F
    SSN = "ssn"  # G
    MRN = "mrn"  # H
    HEALTH_PLAN_ID = "health_plan_id"  # I
    ACCOUNT_NUMBER = "account_number"  # J
    LICENSE_NUMBER = "license_number"  # K
    VEHICLE_ID = "vehicle_id"  # L
    DEVICE_ID = "device_id"  # M
    URL = "url"  # N
    IP_ADDRESS = "ip_address"  # O
    BIOMETRIC = "biometric"  # P
    PHOTO = "photo"  # Q
    OTHER_ID = "other_id"  # R
    # Not an identifier by itself, but ties clinical content to a patient record elsewhere.
    PATIENT_REFERENCE = "patient_reference"
    # Content we cannot see into (a document, an image) attached to a patient-bearing payload.
    OPAQUE_CONTENT = "opaque_content"


# Categories that identify a person on their own. Dates and opaque content only count when they
# sit next to one of these or in a patient-bearing structure (decided by each inspector).
IDENTIFYING = frozenset(Category) - {Category.DATE, Category.OPAQUE_CONTENT}


class Format(str):
    """The name of a payload format ("hl7v2", "fhir-json", ...): a bounded metric label and
    an audit column. Each format declares its own name in its module under gateway/formats/
    (one module and one registry line make a new format); the kinds below are the ones the
    generic readers and the stages themselves report."""

    __slots__ = ()

    JSON: ClassVar[Format]  # JSON that is no healthcare format: named values and prose
    XML: ClassVar[Format]
    TEXT: ClassVar[Format]
    MULTIPART: ClassVar[Format]  # multipart/form-data: each part inspected
    FORM: ClassVar[Format]  # application/x-www-form-urlencoded
    ARCHIVE: ClassVar[Format]  # zip, tar, gzip, bzip2, xz: each member inspected
    BINARY: ClassVar[Format]
    EMPTY: ClassVar[Format]
    SKIPPED: ClassVar[Format]  # not inspected: domestic destination, nothing to decide

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Format({str.__repr__(self)})"


Format.JSON = Format("json")
Format.XML = Format("xml")
Format.TEXT = Format("text")
Format.MULTIPART = Format("multipart")
Format.FORM = Format("form")
Format.ARCHIVE = Format("archive")
Format.BINARY = Format("binary")
Format.EMPTY = Format("empty")
Format.SKIPPED = Format("skipped")


class Protocol(enum.StrEnum):
    HTTP1 = "http/1"
    HTTP2 = "http/2"
    HTTP3 = "http/3"
    TCP = "tcp"
    MLLP = "mllp"
    DICOM = "dicom"  # DIMSE over the DICOM upper layer protocol
    TLS_PASSTHROUGH = "tls-passthrough"
    UDP = "udp"
    WEBSOCKET = "websocket"


class Location(enum.StrEnum):
    DOMESTIC = "domestic"
    FOREIGN = "foreign"
    UNKNOWN = "unknown"


class Action(enum.StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    REDACT = "redact"


@dataclass(frozen=True, slots=True)
class Finding:
    """One identifier found: its Safe Harbor category and where it sits — never its value."""

    category: Category
    location: str  # e.g. "PID-5", "Patient.name", "ClinicalDocument/recordTarget/.../name"


@dataclass(frozen=True, slots=True)
class Inspection:
    """What the inspect stage learned about one payload."""

    format: Format
    message_type: str = ""  # "ADT^A01", "Bundle", "Patient", ...
    findings: tuple[Finding, ...] = ()
    contains_phi: bool = False
    error: str = ""  # non-empty: the payload could not be inspected (a reason, never content)
    limit: str = ""  # the named limit that stopped inspection, if any
    # The error is an exception no reader expected (a bug), not a property of the payload.
    internal: bool = False
    # Content no reader can see into ("image", "audio", "scanned-pdf"): its text, if any, is
    # in the pixels or the sound. The policy decides what that means (unreadable_media).
    opaque: str = ""
    seconds: float = 0.0
    # PHI in the URL or headers: redacting the body cannot make such a request safe.
    envelope_phi: bool = False
    # What a refusal in the sender's own protocol echoes back, by name (an HL7 ACK: the
    # sender's control id, version and applications). Set by the format; read by its refusal.
    reply: Mapping[str, str] = field(default_factory=dict, compare=False)
    # The payload as inspection decoded and parsed it, for the redactor (decode once). In
    # memory only, for the one message: never recorded, dropped once the message is decided.
    document: Document | None = field(default=None, compare=False, repr=False)

    @property
    def inspected(self) -> bool:
        return not self.error

    # Built field by field: dataclasses.replace costs several times more, and every
    # inspected message is copied once or twice.
    def timed(self, seconds: float) -> Inspection:
        """The same inspection, with the time it took."""
        return Inspection(
            self.format,
            self.message_type,
            self.findings,
            self.contains_phi,
            self.error,
            self.limit,
            self.internal,
            self.opaque,
            seconds,
            self.envelope_phi,
            self.reply,
            self.document,
        )

    def with_document(self, document: Document | None) -> Inspection:
        """The same inspection, carrying ``document`` (None: the parse is done with)."""
        return Inspection(
            self.format,
            self.message_type,
            self.findings,
            self.contains_phi,
            self.error,
            self.limit,
            self.internal,
            self.opaque,
            self.seconds,
            self.envelope_phi,
            self.reply,
            document,
        )

    def with_opaque(self, opaque: str) -> Inspection:
        """The same inspection, saying that some of its content cannot be read."""
        return Inspection(
            self.format,
            self.message_type,
            self.findings,
            self.contains_phi,
            self.error,
            self.limit,
            self.internal,
            opaque,
            self.seconds,
            self.envelope_phi,
            self.reply,
            self.document,
        )

    def category_counts(self) -> dict[str, int]:
        tally = Counter(f.category for f in self.findings)
        return {category.value: tally[category] for category in sorted(tally)}

    def locations(self) -> list[str]:
        return sorted({f.location for f in self.findings})


@dataclass(frozen=True, slots=True)
class Document:
    """A payload as its format read it: the decoded bytes and the format's own parse (HL7 v2
    text, a JSON tree, NDJSON lines, a FHIR resource converted from XML, ...)."""

    format: Format
    data: bytes
    parsed: object
    # The UTF-16/32 codec and BOM it was sent in (``data`` is then its UTF-8), or ("", b"").
    sent_as: tuple[str, bytes] = ("", b"")


@dataclass(frozen=True, slots=True)
class GeoAnswer:
    """One source's answer for one address."""

    source: str  # "override:10.0.0.0/8", "provider:aws", "db:dbip-country-lite", "reserved"
    country: str | None
    version: str = ""  # the source's data date, e.g. "2026-06-01"
    detail: str = ""  # provider answers: "eu-west-1 3.4.12.0/22"; "anycast" for global ranges


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """Where an address is, legally, with the evidence that says so."""

    ip: str
    location: Location
    country: str | None
    evidence: tuple[GeoAnswer, ...] = ()
    # Bounded (a metric label): "override", "provider", "anycast", "database", "no-answer",
    # "reserved", "not-an-address", "resolution-failed".
    reason: str = ""
    rule: str = ""  # which rule decided, for people: "any-foreign: db:x said IE", ...
    # Sources named different countries: "" (they agree), "databases", "provider-vs-database".
    disagreement: str = ""

    @property
    def country_label(self) -> str:
        return self.country or "unknown"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a message is going: the name the client asked for and every address judged."""

    host: str
    port: int
    addresses: tuple[Jurisdiction, ...] = ()

    @property
    def verdict(self) -> Jurisdiction:
        """The worst of the addresses: foreign beats unknown beats domestic."""
        if not self.addresses:
            return Jurisdiction(
                ip="", location=Location.UNKNOWN, country=None, reason="resolution-failed"
            )
        rank = {Location.FOREIGN: 0, Location.UNKNOWN: 1, Location.DOMESTIC: 2}
        return min(self.addresses, key=lambda j: rank[j.location])


def split_client(client: str) -> tuple[str, int | None]:
    """A ``Message.client`` as (address, port): "ip:port" as the front ends write it (IPv6
    unbracketed, "::1:5000"), "[v6]:port", or a bare address (port None)."""
    text = client.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and _is_ip(head):
        return head, int(tail)
    return text, None


def host_and_port(target: str, default_port: int = 443) -> tuple[str, int]:
    """A destination as people type it (``host``, ``host:port``, a URL) as (host, port)."""
    text = target.strip().removeprefix("https://").removeprefix("http://").split("/")[0]
    host, port = split_client(text)
    return host.lower().rstrip("."), port or default_port


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Message:
    """One outbound message as the capture stage hands it over."""

    protocol: Protocol
    client: str  # "ip:port"
    destination_host: str
    destination_port: int
    method: str = ""
    path: str = ""  # without the query string: the query may hold PHI
    query: str = ""  # inspected, never recorded
    headers: tuple[tuple[str, str], ...] = ()  # inspected, never recorded
    trailers: tuple[tuple[str, str], ...] = ()  # the request's trailer section, like headers
    content_type: str = ""
    content_encoding: str = ""
    accept: str = ""
    body: bytes = b""
    raw_body_size: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the decide stage concluded. ``enforced`` is False in monitor mode."""

    action: Action
    rule: str  # stable id, e.g. "foreign-phi", "deny-list", "allow-list"
    reason: str  # human sentence, no payload content
    enforced: bool = True
    record: bool = False  # write an audit event

    @property
    def blocks(self) -> bool:
        return self.action is Action.BLOCK and self.enforced


@dataclass(frozen=True, slots=True)
class Redaction:
    """What the redact action did: categories and places changed, never the values."""

    counts: dict[str, int]
    locations: tuple[str, ...]
    body: bytes  # the redacted payload to forward (decoded: no Content-Encoding)
    content_type: str


@dataclass(frozen=True)
class RedactionOutcome:
    """What a format's redactor produced: the payload to forward, or why it cannot be."""

    body: bytes = b""
    content_type: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    locations: tuple[str, ...] = ()
    error: str = ""  # non-empty: block instead (a reason, never content)


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """A refusal in the sender's protocol: status, body and headers of the answer."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    # Sent after the body where the protocol has trailers (gRPC's status, over HTTP/2).
    trailers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything one message went through; what the act and record stages consume."""

    incident_id: str
    message: Message
    destination: Destination
    inspection: Inspection
    verdict: Verdict
    timestamp: float = 0.0
    redaction: Redaction | None = None
