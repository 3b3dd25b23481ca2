"""Typed gateway configuration: YAML in, validated pydantic models out, clear errors.

Every key has a safe default, so a file that names only some keys is complete. Unknown keys are
errors (a typo such as ``allowed_countires`` must not silently fall back to a default).
Relative paths are resolved against the working directory (``make run`` runs from the repo).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError

HIPAA_JURISDICTIONS = ("US", "PR", "GU", "VI", "AS", "MP", "UM")
_HOST_RE = re.compile(
    r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$"
)


def _country_code(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


CountryCode = Annotated[str, BeforeValidator(_country_code), Field(pattern=r"^[A-Z]{2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Jurisdiction(_Strict):
    allowed_countries: tuple[CountryCode, ...] = Field(default=HIPAA_JURISDICTIONS, min_length=1)


class GeoDatabase(_Strict):
    path: Path
    # A site database (one the hospital built for its own ranges) may place private, loopback
    # and other reserved addresses; public databases never may (their answers there are noise).
    answers_reserved: bool = False


def _database_entry(value: object) -> object:
    return {"path": value} if isinstance(value, str) else value


class Override(_Strict):
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    country: CountryCode
    note: str = ""

    @field_validator("cidr", mode="before")
    @classmethod
    def _parse_cidr(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return ipaddress.ip_network(value.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"not a CIDR network: {value!r}") from exc
        return value


class UnknownTreatment(StrEnum):
    FOREIGN = "foreign"
    DOMESTIC = "domestic"


class CombineRule(StrEnum):
    """How the databases' answers combine (provider lists and overrides come first)."""

    FIRST = "first"  # the first database with an answer decides
    ANY_FOREIGN = "any-foreign"  # foreign if any database names a country not allowed


class Geo(_Strict):
    databases: tuple[Annotated[GeoDatabase, BeforeValidator(_database_entry)], ...] = (
        GeoDatabase(path=Path("geo_db/dbip-country-lite.mmdb")),
        GeoDatabase(path=Path("geo_db/geo-whois-asn-country.mmdb")),
    )
    combine: CombineRule = CombineRule.ANY_FOREIGN
    # Cloud-provider prefix lists (a ranges file from geo_db/ or `phi-gateway geo update`);
    # null: none. A listed prefix wins over the databases.
    provider_ranges: Path | None = Path("geo_db/cloud-ranges.bin")
    overrides: tuple[Override, ...] = ()
    unknown: UnknownTreatment = UnknownTreatment.FOREIGN
    # Anycast/global ranges (no true country) are "unknown" with reason anycast: treated so.
    anycast: UnknownTreatment = UnknownTreatment.FOREIGN
    # Warn at start (and in check-config) when a source's data is older than this.
    max_source_age_days: int = Field(default=45, ge=1, le=3650)
    dns_cache_seconds: int = Field(default=30, ge=0, le=3600)

    @field_validator("databases")
    @classmethod
    def _distinct_databases(cls, databases: tuple[GeoDatabase, ...]) -> tuple[GeoDatabase, ...]:
        names = [db.path.stem for db in databases]
        if len(set(names)) != len(names):
            raise ValueError("two databases share a file name: evidence could not tell them apart")
        return databases


class Mode(StrEnum):
    ENFORCE = "enforce"
    MONITOR = "monitor"


class ForeignPhiAction(StrEnum):
    BLOCK = "block"
    REDACT = "redact"


class RuleAction(StrEnum):
    ALLOW = "allow"
    REDACT = "redact"


class DestinationRule(_Strict):
    """A destination by host name (``*.`` wildcards allowed) or by CIDR, with the reason."""

    host: str | None = None
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    reason: str = Field(min_length=1)
    # allow_destinations only: "redact" forwards PHI there only after Safe Harbor redaction.
    action: RuleAction = RuleAction.ALLOW

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip().lower().rstrip(".")
        if not _HOST_RE.match(host):
            raise ValueError(f"not a host name or *.wildcard: {value!r}")
        return host

    @field_validator("cidr", mode="before")
    @classmethod
    def _parse_cidr(cls, value: object) -> object:
        return Override._parse_cidr(value)

    @model_validator(mode="after")
    def _host_or_cidr(self) -> Self:
        if (self.host is None) == (self.cidr is None):
            raise ValueError("give exactly one of 'host' or 'cidr'")
        return self

    def matches(self, host: str, port: int, addresses: tuple[str, ...]) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return _host_matches(self.host, host)
        assert self.cidr is not None
        # Every address we may connect to must be inside the range.
        return bool(addresses) and all(_in_network(a, self.cidr) for a in addresses)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ClientAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _expiry(value: object) -> object:
    """``expires``: a date (the entry stops applying at 00:00 UTC that day: not in force on
    the date named) or a date-time with its time zone."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", value):
        value = dt.date.fromisoformat(value.strip())
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"not a date (YYYY-MM-DD) or a date-time with a time zone: {value!r}"
            ) from None
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        raise ValueError("give the time zone of the time (Z or +HH:MM), or a date only")
    return value


class PolicyRule(DestinationRule):
    """An ``allow_destinations`` / ``deny_destinations`` entry: a destination rule that may
    expire (an exception granted until a date), names who granted it and why (``ticket``,
    ``owner``), and may apply to some clients only (CIDRs or ``policy.client_groups``)."""

    expires: Annotated[dt.datetime, BeforeValidator(_expiry)] | None = None
    ticket: str = ""  # the change or BAA reference
    owner: str = ""  # who answers for the exception
    clients: tuple[str, ...] = ()  # CIDRs, addresses or client group names; empty: everyone
    _expires_at: float | None = PrivateAttr(default=None)
    _client_networks: tuple[Network, ...] = PrivateAttr(default=())

    @field_validator("clients")
    @classmethod
    def _check_clients(cls, clients: tuple[str, ...]) -> tuple[str, ...]:
        checked = []
        for entry in clients:
            name = entry.strip()
            if not _GROUP_NAME_RE.match(name.lower()):
                try:
                    name = str(ipaddress.ip_network(name, strict=False))
                except ValueError:
                    raise ValueError(
                        f"not a CIDR, an address or a client group name: {entry!r}"
                    ) from None
            checked.append(name)
        return tuple(checked)

    def model_post_init(self, context: Any, /) -> None:
        self._expires_at = self.expires.timestamp() if self.expires is not None else None

    def resolve_clients(self, groups: dict[str, tuple[Network, ...]]) -> None:
        """Fix the networks ``clients`` names (the policy checked every group name exists)."""
        networks: list[Network] = []
        for entry in self.clients:
            if entry in groups:
                networks += groups[entry]
            else:
                networks.append(ipaddress.ip_network(entry, strict=False))
        self._client_networks = tuple(networks)

    @property
    def expires_at(self) -> float | None:
        return self._expires_at

    def expired(self, now: float) -> bool:
        return self._expires_at is not None and now >= self._expires_at

    def mismatch(
        self,
        host: str,
        port: int,
        addresses: tuple[str, ...],
        client: ClientAddress | None,
        now: float,
    ) -> str | None:
        """Why this entry does not decide a message (``destination``, ``expired``, or
        ``client``), or None when it does."""
        if not self.matches(host, port, addresses):
            return "destination"
        if self._expires_at is not None and now >= self._expires_at:
            return "expired"
        if self.clients and (client is None or not any(client in n for n in self._client_networks)):
            return "client"
        return None

    @property
    def target(self) -> str:
        """The destination it names, as written (for messages, metrics and the trail)."""
        where = self.host if self.host is not None else str(self.cidr)
        return f"{where}:{self.port}" if self.port is not None else where


def _host_matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return fnmatch.fnmatchcase(host, pattern) and host.endswith(pattern[1:])
    return host == pattern


def _in_network(address: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


class MllpAckCode(StrEnum):
    """MSA-1 of the ACK that refuses an MLLP message: AR (original mode, the default: the
    sender must not resend) or, for enhanced-mode senders, AE or CR."""

    AR = "AR"
    AE = "AE"
    CR = "CR"


class MediaTreatment(StrEnum):
    BLOCK = "block"
    ALLOW = "allow"


class Policy(_Strict):
    mode: Mode = Mode.ENFORCE
    foreign_phi_action: ForeignPhiAction = ForeignPhiAction.BLOCK
    # Media whose content cannot be read (images, audio, scanned PDF pages: their text is in
    # the pixels or the sound): block abroad (fail closed), or decide on what else they
    # carry (text metadata) as if the pixels held nothing.
    unreadable_media: MediaTreatment = MediaTreatment.BLOCK
    mllp_ack_code: MllpAckCode = MllpAckCode.AR
    allow_destinations: tuple[PolicyRule, ...] = ()
    deny_destinations: tuple[PolicyRule, ...] = ()
    # Named sets of client networks that rules' ``clients`` may name (radiology: 10.20.0.0/16).
    client_groups: dict[str, tuple[Network, ...]] = Field(default_factory=dict)
    # Entries that expire within this many days are warned about (check-config, the start
    # banner, phi_gateway_policy_rules_expiring and its alert).
    expiry_warning_days: int = Field(default=14, ge=0, le=365)
    _scoped: bool = PrivateAttr(default=False)

    @field_validator("client_groups", mode="before")
    @classmethod
    def _parse_groups(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        groups: dict[str, tuple[Network, ...]] = {}
        for name, listed in value.items():
            if not isinstance(name, str) or not _GROUP_NAME_RE.match(name):
                raise ValueError(
                    f"client group name {name!r}: lower-case letters, digits, - and _, "
                    "starting with a letter"
                )
            networks = [listed] if isinstance(listed, str) else listed
            if not isinstance(networks, list | tuple) or not networks:
                raise ValueError(f"client group {name!r}: give a list of CIDRs")
            try:
                groups[name] = tuple(
                    ipaddress.ip_network(str(n).strip(), strict=False) for n in networks
                )
            except ValueError as exc:
                raise ValueError(f"client group {name!r}: not a CIDR network ({exc})") from None
        return groups

    @model_validator(mode="after")
    def _resolve_clients(self) -> Self:
        for key, rules in (
            ("allow_destinations", self.allow_destinations),
            ("deny_destinations", self.deny_destinations),
        ):
            for index, rule in enumerate(rules):
                for n, entry in enumerate(rule.clients):
                    if _GROUP_NAME_RE.match(entry) and entry not in self.client_groups:
                        known = ", ".join(sorted(self.client_groups)) or "none"
                        raise ValueError(
                            f"{key}[{index}].clients[{n}]: no client group {entry!r} in "
                            f"policy.client_groups (defined: {known})"
                        )
                rule.resolve_clients(self.client_groups)
        self._scoped = any(rule.clients for _, rule in self.rules())
        return self

    @property
    def scoped(self) -> bool:
        """Some entry applies to some clients only (the client's address must be read)."""
        return self._scoped

    def rules(self) -> tuple[tuple[str, PolicyRule], ...]:
        """Every entry with its key (``deny_destinations[0]``), deny-list first: the order
        of decision."""
        return tuple(
            (f"{key}[{index}]", rule)
            for key, rules in (
                ("deny_destinations", self.deny_destinations),
                ("allow_destinations", self.allow_destinations),
            )
            for index, rule in enumerate(rules)
        )


class DicomRedaction(_Strict):
    # Keep the patient's sex, age (over 89: 090Y), size, weight, ethnic group, smoking and
    # pregnancy status (Retain Patient Characteristics Option).
    retain_patient_characteristics: bool = False
    # Keep descriptions and comments the free-text detectors find nothing in, instead of
    # removing them (Clean Descriptors Option).
    clean_descriptors: bool = False


class RedactionSettings(_Strict):
    """How the redact action de-identifies (see docs/redaction.md)."""

    # Environment variable holding the site secret that keys pseudonyms (HMAC-SHA256). Unset:
    # a random key per process, so pseudonyms change at every restart.
    secret_env: str = Field(default="PHI_GATEWAY_SECRET", min_length=1)
    # Record identifiers (MRN, visit number, resource ids): keyed pseudonyms, or removal.
    identifiers: Literal["pseudonym", "remove"] = "pseudonym"
    # Dates: year only (Safe Harbor), or shifted per patient by up to max_shift_days.
    dates: Literal["year", "shift"] = "year"
    max_shift_days: int = Field(default=365, ge=1, le=3650)
    # Locations a contract allows to keep ("PID-11", "Patient.address"): no longer Safe Harbor.
    keep: tuple[str, ...] = ()
    # Z-segments (site-defined, unknown content): cleared, or kept.
    z_segments: Literal["redact", "keep"] = "redact"
    # DICOM: the Basic Application Level Confidentiality Profile, with these options (dates
    # follow ``dates``: shift is the Retain Longitudinal Temporal Information with Modified
    # Dates option). docs/dicom.md.
    dicom: DicomRedaction = Field(default_factory=DicomRedaction)


class Limits(_Strict):
    # A request body bound abroad is buffered whole to be inspected: one larger than this is
    # refused (413) as soon as its declared length or its arriving bytes pass it.
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # All bodies buffered for inspection at once hold at most this much (a body that would
    # pass it is refused, 413): the gateway's memory does not grow with concurrent uploads.
    max_buffered_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    max_decompressed_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_decompression_ratio: int = Field(default=200, ge=2)
    # Payloads inside payloads (an HL7 file in a zip in a multipart upload in base64) are
    # unwrapped this many layers deep; deeper is refused abroad.
    max_nesting_depth: int = Field(default=6, ge=1, le=32)
    # Wall-clock budget for inspecting one payload; over it, refused abroad.
    max_inspection_seconds: float = Field(default=5.0, gt=0, le=300)
    # Members of one archive or parts of one multipart body.
    max_archive_members: int = Field(default=1000, ge=1, le=100000)
    # One MLLP frame (one HL7 message) held until its end arrives; larger frames fail closed.
    max_mllp_frame_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # PDF documents with more pages are not read (refused abroad).
    max_pdf_pages: int = Field(default=1000, ge=1, le=100000)
    # One DICOM dataset's header: data elements read (pixels are skipped, never counted),
    # and sequences nested in sequences; past either, refused abroad.
    max_dicom_elements: int = Field(default=200_000, ge=100, le=10_000_000)
    max_dicom_depth: int = Field(default=12, ge=2, le=64)
    # One protobuf payload (gRPC messages, a bare protobuf body) read without a schema:
    # fields read, and messages nested in messages; past either, refused abroad.
    max_protobuf_fields: int = Field(default=200_000, ge=100, le=10_000_000)
    max_protobuf_depth: int = Field(default=32, ge=2, le=100)
    # Documents (PDF) are read by this many worker processes, each limited to this much
    # memory: a document that crashes, hangs or blows up its reader costs one worker.
    document_workers: int = Field(default=2, ge=1, le=64)
    max_document_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=64 * 1024 * 1024)

    @model_validator(mode="after")
    def _one_body_fits(self) -> Self:
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(
                "max_buffered_body_bytes must be at least max_body_bytes (one body must fit)"
            )
        return self


class Connections(_Strict):
    """Bounds on client connections (docs/operations.md, "Bounded connections"): how long
    each phase of a connection may take, and how many connections clients may hold. mitmproxy
    alone closes a connection only after ``tcp_timeout`` of silence, which a byte now and
    then defeats. Streams (MLLP, raw TCP, WebSocket, TLS passthrough) keep that rule; only
    the reply rule below applies to MLLP."""

    # A new connection must complete its first request's headers within this many seconds
    # of opening (silent or trickling alike); on a kept-alive connection, within this many
    # seconds of the request's first byte.
    header_seconds: float = Field(default=20.0, gt=0, le=3600)
    # A kept-alive connection that sends nothing for this long after a response is closed.
    idle_seconds: float = Field(default=60.0, gt=0, le=86400)
    # A request body must arrive within this many seconds of its headers, plus one second
    # for every min_body_bytes_per_second bytes received: an upload that keeps moving at
    # that rate is never cut; one trickling a byte now and then is.
    body_seconds: float = Field(default=30.0, gt=0, le=3600)
    min_body_bytes_per_second: int = Field(default=1024, ge=1, le=1024 * 1024 * 1024)
    # An upstream that has the whole request but has not begun its answer after this many
    # seconds: the client gets a 504 from the gateway (HTTP) or its connection is closed
    # (MLLP, once the sender waits and nothing came back).
    upstream_seconds: float = Field(default=120.0, gt=0, le=86400)
    # Concurrent connections from one client address (never more than half the global cap),
    # and from all clients together; one more is closed at once (counted by reason).
    # max_total null: derived from the process's open-file limit (RLIMIT_NOFILE): (limit -
    # descriptors open at start - reserved) / 2, two descriptors per proxied connection; a
    # larger max_total is lowered to it.
    max_per_client: int = Field(default=256, ge=1, le=1_000_000)
    max_total: int | None = Field(default=None, ge=1, le=10_000_000)
    # Descriptors kept free for the admin port (/healthz, /metrics), the audit store, DNS
    # and reports: also the margin below the limit at which new connections are refused
    # whatever their count (when half of it is in use).
    reserved_descriptors: int = Field(default=64, ge=16, le=100_000)


class Ocr(_Strict):
    """Optical character recognition of images and scanned PDF pages (tesseract-ocr, run by
    the document workers). Off by default: without it such content is unreadable media."""

    enabled: bool = False
    languages: str = Field(default="eng", pattern=r"^[A-Za-z_]+(?:\+[A-Za-z_]+)*$")
    # Per payload: frames or pages recognised, and the seconds OCR may take beside
    # limits.max_inspection_seconds (what is left unread stays unreadable media).
    max_pages: int = Field(default=10, ge=1, le=1000)
    max_seconds: float = Field(default=30.0, gt=0, le=600)
    dpi: int = Field(default=200, ge=72, le=600)
    max_pixels: int = Field(default=40_000_000, ge=1_000_000, le=400_000_000)
    # A page or image with less recognised text than this is not read (a photo, a blank).
    min_text_characters: int = Field(default=50, ge=1, le=10_000)


class Audit(_Strict):
    """The tamper-evident audit trail (see docs/audit.md)."""

    # sqlite: one embedded file (one gateway). postgresql: one database for several gateways,
    # each writing its own chain.
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    database: Path = Path("var/audit.db")
    # libpq connection string for backend: postgresql, without a password (libpq reads it from
    # PGPASSWORD or ~/.pgpass), e.g. "host=db.example port=5432 dbname=audit user=gateway".
    postgresql_dsn: str = ""
    # Names this gateway's chain; stable across restarts. Empty: the machine's host name.
    instance_id: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,64}$")
    # Environment variable holding the site secret that keys checkpoints and payload
    # fingerprints (HMAC-SHA256). Unset: a random key per process, which nobody can verify later.
    secret_env: str = Field(default="PHI_GATEWAY_SECRET", min_length=1)
    # A keyed checkpoint seals the chain's head this often (and at start and shutdown).
    checkpoint_interval_seconds: int = Field(default=300, ge=1, le=86400)
    # Every checkpoint is also appended (fsync'd) to this file outside the database, so deleting
    # the last events *and* the checkpoint rows is still caught by `audit verify`. null: next to
    # the database (<database>.checkpoints; postgresql: audit-<instance_id>.checkpoints in the
    # database's directory, one file per instance).
    checkpoint_log: Path | None = None
    # Events older than this are removed; the removal is itself recorded in the chain.
    # Default six years: HIPAA's documentation retention (45 CFR 164.316(b)(2)).
    retention_days: int = Field(default=2192, ge=1, le=36500)
    # While the database fails (down, restarted, full, stalled), decided events are appended
    # (fsync'd) to this file on the gateway's own disk and written from it, in order, when the
    # database is back, also after a restart. null: next to the database (<database>.spool;
    # postgresql: audit-<instance_id>.spool in the database's directory).
    spool: Path | None = None
    # Past this size the spool takes no more events: they are held in memory and PHI that would
    # be forwarded abroad is refused until recording works again.
    spool_max_bytes: int = Field(default=1024**3, ge=1024 * 1024)
    # false (stricter): refuse forwarding PHI abroad (allow-listed, redacted) while the events
    # can only be spooled, not written to the database.
    forward_phi_while_spooling: bool = True
    # A database call that takes longer is cut and counted as a failure (the events spool).
    write_timeout_seconds: float = Field(default=10.0, ge=1, le=600)
    # Events held in memory, in order, while neither the database nor the spool takes them;
    # past this, further events are lost and counted (phi_gateway_audit_lost_events_total).
    max_held_events: int = Field(default=100_000, ge=100, le=10_000_000)

    @field_validator("postgresql_dsn")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if re.search(r"(^|\s)password\s*=|://[^/@\s]*:[^/@\s]*@", value):
            raise ValueError(
                "do not put the password in the config: libpq reads it from PGPASSWORD or ~/.pgpass"
            )
        return value

    @model_validator(mode="after")
    def _backend_needs_dsn(self) -> Self:
        if self.backend == "postgresql" and not self.postgresql_dsn.strip():
            raise ValueError("backend postgresql needs postgresql_dsn")
        return self


class Report(_Strict):
    """Block reports (``phi-gateway report`` and the admin API; see docs/audit.md)."""

    # HTML and PDF are read by people: they list at most this many incidents (the most severe,
    # newest first) and say how many more there are. Summaries, the timeline and the chain
    # verification always cover the whole period; CSV and JSON always list every incident.
    max_listed_incidents: int = Field(default=1000, ge=1, le=1_000_000)
    # The admin API builds each report in a child process (never in the proxy's interpreter),
    # killed after this many seconds (answer 504).
    api_timeout_seconds: int = Field(default=600, ge=10, le=86400)
    # Reports the admin API builds at once; one more is answered 503 (retry later).
    api_max_concurrent: int = Field(default=2, ge=1, le=16)


def _host_port(value: object) -> object:
    if not isinstance(value, str):
        return value
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


HostPort = Annotated[str, BeforeValidator(_host_port)]


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


_INSPECTABLE_MODES = ("regular", "transparent", "socks5", "reverse")
_INSPECTABLE_REVERSE_SCHEMES = ("http", "https", "tcp", "tls")


def _check_mode(mode: str) -> str:
    """Only modes whose traffic the gateway sees and judges (TCP: HTTP, TLS, raw streams).

    UDP-based modes (dns, wireguard, reverse:udp/dns/quic/http3, local, tun) carry traffic no hook
    inspects; upstream mode connects through another proxy, so the address judged is not the
    address the data goes to.
    """
    name, _, rest = mode.strip().partition(":")
    name = name.split("@", 1)[0]
    if name not in _INSPECTABLE_MODES:
        raise ValueError(
            f"mode {mode!r} is not supported: the gateway only inspects "
            "regular, transparent, socks5 and reverse:http(s)/tcp/tls modes"
        )
    if name == "reverse":
        scheme = rest.split("://", 1)[0].lower()
        if scheme not in _INSPECTABLE_REVERSE_SCHEMES:
            raise ValueError(
                f"mode {mode!r} is not supported: reverse mode needs an "
                "http, https, tcp or tls target"
            )
    return mode


class Proxy(_Strict):
    listen: HostPort = "127.0.0.1:8080"
    # mitmproxy mode strings: regular, reverse:https://host, transparent, socks5, ...
    modes: tuple[Annotated[str, AfterValidator(_check_mode)], ...] = ("regular",)
    # Where mitmproxy keeps its CA; clients must trust <confdir>/mitmproxy-ca-cert.pem.
    confdir: Path = Path("var/mitmproxy")
    # mitmproxy's block_global refuses clients with public addresses (an open relay guard).
    allow_public_clients: bool = False
    # Destination ports whose streams are MLLP: never parsed as HTTP, framed from the first
    # byte (MLLP is also recognised on any port by its 0x0B start byte).
    mllp_ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = (2575,)
    # Destination ports whose streams are DICOM upper layer (DIMSE): raw TCP from the first
    # byte, followed association by association (also recognised on any port by the
    # A-ASSOCIATE-RQ that opens one).
    dicom_ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = (104, 11112)
    # TLS connections to these destinations are relayed encrypted (not decrypted), judged by
    # the address they connect to when the ClientHello arrives: domestic passes, abroad is
    # refused (the payload cannot be read).
    tls_passthrough: tuple[DestinationRule, ...] = ()
    # Domestic TLS that no list names is relayed encrypted, not decrypted (issue 19): judged
    # at the ClientHello by every address the name resolves to, pinned to the one judged.
    # false: every TLS connection is decrypted (domestic requests still go uninspected).
    relay_domestic_tls: bool = True
    # Destinations whose domestic TLS is still decrypted (host or CIDR rules with a reason),
    # e.g. a site that wants its domestic HTTP decisions counted per request.
    inspect_domestic: tuple[DestinationRule, ...] = ()
    # Balancers (HAProxy with send-proxy-v2): a connection from one of these addresses must
    # start with a PROXY protocol v2 header, and the client it names is the client
    # (gateway/proxy_protocol.py). Connections from elsewhere are served as they come.
    # ``run --workers N`` adds the loopback balancer it starts itself.
    proxy_protocol_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @field_validator("proxy_protocol_from", mode="before")
    @classmethod
    def _parse_balancers(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(Override._parse_cidr(v) for v in value)
        return value

    @field_validator("modes")
    @classmethod
    def _some_mode(cls, modes: tuple[str, ...]) -> tuple[str, ...]:
        if not modes:
            raise ValueError("give at least one mode")
        return modes

    # Extra CA bundle for verifying upstream servers (internal PKI); system store otherwise.
    upstream_ca_bundle: Path | None = None


class ApiToken(_Strict):
    """One bearer token of the admin API, stored only as its SHA-256
    (``phi-gateway admin token`` makes one)."""

    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    role: Literal["auditor", "analyst", "admin"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Console(_Strict):
    """The web console under /console/ on ``admin.listen`` (docs/console.md)."""

    enabled: bool = True
    # A session (the cookie the sign-in form sets) ends this long after sign-in.
    session_minutes: int = Field(default=30, ge=1, le=24 * 60)
    # Sessions kept at once; one more makes the oldest give way.
    max_sessions: int = Field(default=1000, ge=1, le=100_000)
    # One incident-list page (reading it and counting the matches) stops after this long:
    # a search no index narrows says so instead of scanning the whole trail.
    search_budget_ms: int = Field(default=250, ge=10, le=60_000)
    # The fingerprint lookup's largest file (streamed, never stored).
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, le=16 * 1024**3)


class Admin(_Strict):
    listen: HostPort = "127.0.0.1:9464"
    # Serve /metrics, /healthz and /readyz on this address instead (the API stays on listen).
    metrics_listen: HostPort | None = None
    # Ask for a bearer token (any role) on /metrics too.
    metrics_require_token: bool = False
    # Who may use /api/v1/: auditor (incidents, reports), analyst (also the incident
    # workflow), admin (also policy reload).
    tokens: tuple[ApiToken, ...] = ()
    console: Console = Console()

    @field_validator("tokens")
    @classmethod
    def _unique(cls, tokens: tuple[ApiToken, ...]) -> tuple[ApiToken, ...]:
        names = [t.name for t in tokens]
        hashes = [t.sha256 for t in tokens]
        if len(set(names)) != len(names):
            raise ValueError("token names must be unique")
        if len(set(hashes)) != len(hashes):
            raise ValueError("two tokens have the same hash")
        return tokens


_OUTPUT_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _SiemOutput(_Strict):
    # Names the output's cursor file and its metrics' label; default "<type>-<position>".
    name: str = Field(default="", pattern=r"^$|" + _OUTPUT_NAME[1:])
    # Events sent in one write (one syslog write, one HTTP request, one file append).
    batch_events: int = Field(default=200, ge=1, le=10_000)
    # A failed delivery is retried after half a second, doubling up to this.
    retry_max_seconds: float = Field(default=30.0, ge=1, le=3600)
    # Connect, send and answer, each.
    timeout_seconds: float = Field(default=10.0, ge=0.1, le=300)
    # What a new output starts with: the whole trail ("beginning"), or only what is decided
    # from now on ("end"). A cursor already kept always wins.
    start_at: Literal["beginning", "end"] = "beginning"


class SyslogOutput(_SiemOutput):
    """RFC 5424 syslog: TCP with octet-counting framing (RFC 5425/6587), over TLS when
    ``tls``; UDP for labs (no delivery is confirmed)."""

    type: Literal["syslog"]
    address: HostPort
    transport: Literal["tcp", "udp"] = "tcp"
    tls: bool = False
    format: Literal["cef", "ocsf", "json"] = "cef"
    # Verify the receiver against this CA bundle (system store otherwise), by this name
    # (the address's host otherwise); a client certificate when the receiver asks for one.
    ca_file: Path | None = None
    server_name: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    facility: int = Field(default=13, ge=0, le=23)  # 13: log audit
    app_name: str = Field(default="phi-gateway", pattern=r"^[!-~]{1,48}$")
    # A TCP write is not an answer: a batch counts as delivered once the connection is
    # still open this long after it was written (else it is sent again: the SIEM drops
    # the duplicate by event id).
    confirm_seconds: float = Field(default=1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.tls and self.transport == "udp":
            raise ValueError("tls needs transport tcp")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self


class HttpOutput(_SiemOutput):
    """JSON over HTTP(S): Splunk HEC (``splunk-hec``), or any webhook (``json``, ``ocsf``:
    a JSON array per request). Delivered when the receiver answers 2xx."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    format: Literal["splunk-hec", "json", "ocsf"] = "splunk-hec"
    # Environment variable holding the token (HEC: "Authorization: Splunk <token>"; others:
    # "Bearer <token>"). Never in the config file.
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    ca_file: Path | None = None


class FileOutput(_SiemOutput):
    """JSON lines (or CEF lines) appended and fsync'd, for a log shipper that tails the file
    (reopened when rotated away)."""

    type: Literal["file"]
    path: Path
    format: Literal["ocsf", "json", "cef"] = "ocsf"


SiemOutput = Annotated[SyslogOutput | HttpOutput | FileOutput, Field(discriminator="type")]


class Siem(_Strict):
    """Every audit event streamed to the security team's SIEM (see docs/siem.md)."""

    outputs: tuple[SiemOutput, ...] = ()
    # Where each output keeps its durable cursor (<name>.cursor). null: beside the audit
    # database (<database>.siem/; postgresql: siem/ in the database's directory).
    cursor_dir: Path | None = None
    # How often the trail is read for new events when the last read found none.
    poll_seconds: float = Field(default=0.5, ge=0.05, le=60)

    @field_validator("outputs")
    @classmethod
    def _named(cls, outputs: tuple[SiemOutput, ...]) -> tuple[SiemOutput, ...]:
        named = tuple(
            o if o.name else o.model_copy(update={"name": f"{o.type}-{n}"})
            for n, o in enumerate(outputs, 1)
        )
        names = [o.name for o in named]
        if len(set(names)) != len(names):
            raise ValueError("output names must be unique")
        return named


class GatewayConfig(_Strict):
    jurisdiction: Jurisdiction = Jurisdiction()
    geo: Geo = Geo()
    policy: Policy = Policy()
    limits: Limits = Limits()
    connections: Connections = Connections()
    ocr: Ocr = Ocr()
    redaction: RedactionSettings = RedactionSettings()
    audit: Audit = Audit()
    report: Report = Report()
    proxy: Proxy = Proxy()
    admin: Admin = Admin()
    siem: Siem = Siem()

    @property
    def version(self) -> str:
        """Policy version: a short hash of the effective configuration."""
        canonical = self.model_dump_json().encode()
        return hashlib.sha256(canonical).hexdigest()[:12]


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item.startswith(("function-", "union[", "tagged-union[")):
            continue  # pydantic's internal validator names
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


_INNER_KEY_RE = re.compile(r"^([a-z_]+\[\d+\](?:\.[a-z_]+|\[\d+\])*): ")


def parse_config(data: Any, source: str = "<config>") -> GatewayConfig:
    """Validate already-parsed YAML/JSON data."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", "expected a mapping of sections")])
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key (check the spelling against configs/gateway.yaml)"
            where = _format_location(tuple(err["loc"]))
            # A section's own validator names the key inside it: "allow_destinations[0]...: ".
            if inner := _INNER_KEY_RE.match(message):
                where, message = f"{where}.{inner[1]}", message[inner.end() :]
            problems.append((where, message))
        raise ConfigError(source, problems) from None


def load_config(path: Path | str) -> GatewayConfig:
    """Read and validate a YAML config file, raising ConfigError with every problem found."""
    return parse_config_text(read_config_text(path), str(path))


def read_config_text(path: Path | str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from None


def parse_config_text(text: str, source: str) -> GatewayConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [(where, f"YAML syntax: {problem}")]) from None
    return parse_config(data, source)


# What identifies the audit trail: a reload may not move it (a cut path would open a second
# trail nobody verifies); a restart may.
_AUDIT_STORE_KEYS = (
    "backend",
    "database",
    "postgresql_dsn",
    "instance_id",
    "checkpoint_log",
    "spool",
    "spool_max_bytes",
    "forward_phi_while_spooling",
    "write_timeout_seconds",
    "max_held_events",
)


def reload_problems(
    running_text: str, text: str, running: GatewayConfig, candidate: GatewayConfig
) -> list[tuple[str, str]]:
    """Why a new config file must not replace the running one on a reload, although it is
    valid: signs that it is still being written, or changes a reload must not make
    silently (docs/operations.md, "Changing the config"). Empty when it may."""
    problems: list[tuple[str, str]] = []
    if text and not text.endswith("\n"):
        problems.append(
            (
                "(file)",
                "does not end with a line break: a file still being written? (write a "
                "temporary file and rename it over the config)",
            )
        )
    before, after = _sections(running_text), _sections(text)
    for section in sorted(before - after):
        problems.append(
            (
                section,
                "section missing, although the running config has it: write "
                f"`{section}: {{}}` to return it to its defaults",
            )
        )
    for key in _AUDIT_STORE_KEYS:
        if getattr(running.audit, key) != getattr(candidate.audit, key):
            problems.append(
                (f"audit.{key}", "the audit store cannot change on a reload: restart the gateway")
            )
    return problems


def _sections(text: str) -> set[str]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return set()
    return {str(key) for key in data} if isinstance(data, dict) else set()


def changed_keys(running: GatewayConfig, candidate: GatewayConfig) -> list[str]:
    """The dotted keys whose values differ (names only: values may be secrets)."""
    changed: list[str] = []
    _diff(running.model_dump(mode="json"), candidate.model_dump(mode="json"), "", changed)
    return changed


def _diff(old: Any, new: Any, path: str, into: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key), into)
    elif old != new:
        into.append(path)
