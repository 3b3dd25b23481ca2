"""Every Prometheus metric the gateway exports, declared once (see docs/metrics.md).

Labels have bounded values only: actions, rules, formats, protocols, ISO country codes,
Safe Harbor categories, limit names. Never host names, never anything from a payload.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

PREFIX = "phi_gateway"

DECISIONS = Counter(
    f"{PREFIX}_decisions_total",
    "Messages decided, by action taken (allow, block, monitor), rule, payload format, "
    "protocol and destination country.",
    ["action", "rule", "format", "protocol", "country"],
)
FINDINGS = Counter(
    f"{PREFIX}_phi_findings_total",
    "Identifiers found in payloads bound for foreign or unknown destinations, "
    "by Safe Harbor category.",
    ["category"],
)
INSPECTION_SECONDS = Histogram(
    f"{PREFIX}_inspection_seconds",
    "Time spent inspecting one payload (decode, sniff, scan), by format.",
    ["format"],
    buckets=(
        0.00005,
        0.0001,
        0.00025,
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
    ),
)
GEO_LOOKUPS = Counter(
    f"{PREFIX}_geo_lookups_total",
    "Destination addresses located, by result (domestic, foreign, unknown) and reason "
    "(override, provider, anycast, database, reserved, no-answer, resolution-failed).",
    ["result", "reason"],
)
# Why a payload was not inspected: every reason the gateway counts, and no other.
NOT_INSPECTED_REASONS = (
    "unreadable",  # the payload could not be read (malformed, unknown encoding, ...)
    "limit",  # a named limit stopped inspection (also counted by limit name)
    "internal-error",  # an exception no reader expected (a bug), in inspection or in a hook
    "raw-tcp",  # a raw TCP stream that is not MLLP
    "tls-passthrough",  # a TLS connection relayed encrypted
    "udp",  # a UDP datagram
    "resolution-failed",  # the destination host did not resolve
    "media",  # content no reader can see into: an image, audio, a scanned PDF page
)
NOT_INSPECTED = Counter(
    f"{PREFIX}_flows_not_inspected_total",
    "Messages whose payload could not be inspected, by reason ("
    + ", ".join(NOT_INSPECTED_REASONS)
    + ").",
    ["reason"],
)
# Why a request was refused because the gateway cannot forward it (not for what it holds).
UNFORWARDABLE_REASONS = (
    "http1-trailers",  # an HTTP/1.1 request with a trailer section: answered 501
    "trailers-to-http1-server",  # request trailers bound for an HTTP/1.1 server: answered 502
)
UNFORWARDABLE = Counter(
    f"{PREFIX}_requests_unforwardable_total",
    "HTTP requests refused because the gateway cannot forward them, by reason ("
    + ", ".join(UNFORWARDABLE_REASONS)
    + ").",
    ["reason"],
)
# Why a TLS connection was relayed encrypted (never decrypted): every reason, and no other.
TLS_RELAYED_REASONS = (
    "domestic",  # every address domestic, no list names it (proxy.relay_domestic_tls)
    "listed",  # named by proxy.tls_passthrough and allowed there (domestic or allow-listed)
)
TLS_RELAYED = Counter(
    f"{PREFIX}_tls_relayed_total",
    "TLS connections relayed encrypted, judged at their ClientHello and pinned to the address "
    "judged, by reason (" + ", ".join(TLS_RELAYED_REASONS) + ").",
    ["reason"],
)
HOOK_ERRORS = Counter(
    f"{PREFIX}_hook_errors_total",
    "Exceptions caught in a proxy hook of the addon (each failed closed toward foreign and "
    "unknown destinations), by hook name.",
    ["hook"],
)
LIMIT_EXCEEDED = Counter(
    f"{PREFIX}_limit_exceeded_total",
    "Inspection limits that fired, by limit name.",
    ["limit"],
)
GEO_DISAGREEMENTS = Counter(
    f"{PREFIX}_geo_source_disagreements_total",
    "Destination addresses whose geo sources named different countries, by kind "
    "(databases: two databases; provider-vs-database: a provider list and a database).",
    ["kind"],
)
GEO_SOURCE_AGE = Gauge(
    f"{PREFIX}_geo_source_age_seconds",
    "Age of each geo source's data (database build date, provider list date), in seconds.",
    ["source"],
)
GEO_DATABASE_BUILD = Gauge(
    f"{PREFIX}_geo_database_build_timestamp_seconds",
    "Build time (Unix seconds) of each loaded geo database.",
    ["database"],
)
CONFIG_RELOADS = Counter(
    f"{PREFIX}_config_reloads_total",
    "Policy reloads by result (success, failure: the last good policy stays in force).",
    ["result"],
)
AUDIT_WRITE_ERRORS = Counter(
    f"{PREFIX}_audit_write_errors_total",
    "Audit events whose write to the audit database failed, counted per attempt (they are "
    "held and written again when the database answers).",
)
AUDIT_STORE_UP = Gauge(
    f"{PREFIX}_audit_store_up",
    "1 when the audit database takes events, 0 while writes fail (events are held).",
)
AUDIT_HELD_EVENTS = Gauge(
    f"{PREFIX}_audit_held_events",
    "Decided events held in memory because neither the audit database nor the spool took "
    "them, waiting to be written.",
)
AUDIT_LOST_EVENTS = Counter(
    f"{PREFIX}_audit_lost_events_total",
    "Decided events lost because more than audit.max_held_events were held while neither the "
    "audit database nor the spool took them.",
)
AUDIT_QUEUED_EVENTS = Gauge(
    f"{PREFIX}_audit_queued_events",
    "Decided events queued for the audit writer, not yet taken (read at scrape time: grows "
    "while the writer waits on a stalled database, until the call is cut).",
)
AUDIT_SPOOL_EVENTS = Gauge(
    f"{PREFIX}_audit_spool_events",
    "Decided events in the durable audit spool, waiting for the audit database.",
)
AUDIT_SPOOL_BYTES = Gauge(
    f"{PREFIX}_audit_spool_bytes",
    "Size of the durable audit spool file (bounded by audit.spool_max_bytes).",
)
AUDIT_SPOOL_MAX_BYTES = Gauge(
    f"{PREFIX}_audit_spool_max_bytes",
    "audit.spool_max_bytes: the spool's size limit.",
)
AUDIT_SPOOL_OLDEST = Gauge(
    f"{PREFIX}_audit_spool_oldest_event_timestamp_seconds",
    "When (Unix seconds) the oldest event in the audit spool was decided; 0 when it is empty.",
)
AUDIT_SPOOL_ERRORS = Counter(
    f"{PREFIX}_audit_spool_errors_total",
    "Attempts to spool audit events that failed (the spool is full or its disk fails).",
)
AUDIT_JOURNAL_ERRORS = Counter(
    f"{PREFIX}_audit_journal_errors_total",
    "Audit journal writes that failed: those events are still written to the trail, but "
    "would be lost if the process were killed before that.",
)
AUDIT_CHECKPOINT_ERRORS = Counter(
    f"{PREFIX}_audit_checkpoint_errors_total",
    "Keyed checkpoints of the audit hash chain that could not be written.",
)
AUDIT_CHAIN_HEAD = Gauge(
    f"{PREFIX}_audit_chain_head_seq",
    "Sequence number of the last event in this instance's audit hash chain (an outside "
    "witness: it never goes down, so a chain found shorter later was truncated).",
)
AUDIT_LAST_CHECKPOINT = Gauge(
    f"{PREFIX}_audit_last_checkpoint_timestamp_seconds",
    "When (Unix seconds) the last keyed checkpoint of the audit chain was written.",
)
AUDIT_EXPIRED_EVENTS = Counter(
    f"{PREFIX}_audit_expired_events_total",
    "Audit events removed by retention (each expiry is itself recorded in the chain).",
)
ADMIN_API_REQUESTS = Counter(
    f"{PREFIX}_admin_api_requests_total",
    "Admin API requests by route and HTTP status code (each one is also an audit event).",
    ["route", "code"],
)
CONSOLE_SIGNINS = Counter(
    f"{PREFIX}_console_signins_total",
    "Console sign-in attempts by result: ok, failed (not a valid token), refused (a stale "
    "form or another site), throttled (too many failures from the address).",
    ["result"],
)
CONSOLE_SEARCHES_CUT = Counter(
    f"{PREFIX}_console_searches_cut_total",
    "Console incident searches stopped by admin.console.search_budget_ms, by what was cut: "
    "page (no rows shown) or count (rows shown, matches not counted).",
    ["part"],
)
AUDIT_EVENTS = Counter(
    f"{PREFIX}_audit_events_total",
    "Audit events queued for the audit database, by action.",
    ["action"],
)
REDACTIONS = Counter(
    f"{PREFIX}_redactions_total",
    "Redact actions by result (redacted, failed: blocked instead) and payload format.",
    ["result", "format"],
)
REDACTED_IDENTIFIERS = Counter(
    f"{PREFIX}_redacted_identifiers_total",
    "Fields or elements changed by redaction, by Safe Harbor category.",
    ["category"],
)
POLICY_ENTRY_EXPIRY = Gauge(
    f"{PREFIX}_policy_entry_expiry_timestamp_seconds",
    "When each allow/deny-list entry with an expiry stops applying (Unix time), by entry "
    "(allow_destinations[0], ...).",
    ["entry"],
)
POLICY_ENTRIES_EXPIRING = Gauge(
    f"{PREFIX}_policy_entries_expiring",
    "Allow/deny-list entries that expire within policy.expiry_warning_days (state soon), or "
    "have expired and no longer apply (state expired).",
    ["state"],
)
POLICY = Info(
    f"{PREFIX}_policy",
    "The policy in force: its version (hash of the effective config) and mode.",
)
DOCUMENT_WORKERS = Counter(
    f"{PREFIX}_document_reads_total",
    "Documents handed to a reader process (PDF), by result: read, refused (the reader could "
    "not read it), timeout and crashed (the worker was killed and replaced), busy (no worker "
    "was free in time). Every result but read fails closed abroad.",
    ["result"],
)
OCR_PAGES = Counter(
    f"{PREFIX}_ocr_pages_total",
    "Images and scanned PDF pages given to OCR (ocr.enabled), by result: read, little-text "
    "(less than ocr.min_text_characters recognised: a photo, a blank), unread (past "
    "ocr.max_pages or ocr.max_pixels) and failed (tesseract missing, failing or past "
    "ocr.max_seconds). All but read stay unreadable media (policy.unreadable_media).",
    ["result"],
)
CLIENT_CONNECTIONS = Gauge(
    f"{PREFIX}_client_connections",
    "Client connections open (admitted by the caps of connections.*).",
)
CLIENT_CONNECTIONS_LIMIT = Gauge(
    f"{PREFIX}_client_connections_limit",
    "The global cap on client connections in force: connections.max_total, or the cap "
    "derived from RLIMIT_NOFILE, whichever is lower (0: no cap).",
)
CONNECTIONS_REFUSED = Counter(
    f"{PREFIX}_connections_refused_total",
    "Client connections closed as they arrived, by reason: per-client "
    "(connections.max_per_client from one address), global (the global cap), descriptors "
    "(open descriptors reached connections.reserved_descriptors).",
    ["reason"],
)
CONNECTION_TIMEOUTS = Counter(
    f"{PREFIX}_connection_timeouts_total",
    "Client connections or requests cut by a deadline of connections.*, by phase: idle, "
    "headers, body (connection closed), upstream (HTTP: answered 504; MLLP: closed).",
    ["phase"],
)
PROXY_PROTOCOL = Counter(
    f"{PREFIX}_proxy_protocol_connections_total",
    "Connections from a balancer (proxy.proxy_protocol_from), by result: proxied (the PROXY "
    "v2 header named the client), local (the balancer's own connection), refused (no valid "
    "header in time: closed).",
    ["result"],
)
WORKER_RESTARTS = Counter(
    f"{PREFIX}_worker_restarts_total",
    "Processes of run --workers restarted by the supervisor after they died: worker (a proxy "
    "worker), haproxy (the balancer in front of them).",
    ["process"],
)
WORKERS_READY = Gauge(
    f"{PREFIX}_worker_ready",
    "1 when this proxy worker of run --workers answers /readyz (HAProxy sends it "
    "connections), else 0.",
    ["worker"],
)
WORKER_SCRAPE_OK = Gauge(
    f"{PREFIX}_worker_scrape_ok",
    "1 when this worker's metrics were part of the last /metrics answer, 0 when it did not "
    "answer in time.",
    ["worker"],
)
SIEM_DELIVERED = Counter(
    f"{PREFIX}_siem_delivered_total",
    "Audit events delivered to a SIEM output (confirmed; an event sent again after an outage "
    "is counted again), by output name.",
    ["output"],
)
SIEM_FAILURES = Counter(
    f"{PREFIX}_siem_failures_total",
    "Deliveries to a SIEM output that failed (connect, send, answer, or a connection that "
    "closed before its batch was confirmed): the batch is sent again.",
    ["output"],
)
SIEM_LAG_EVENTS = Gauge(
    f"{PREFIX}_siem_lag_events",
    "Audit events in the trail that a SIEM output has not delivered yet.",
    ["output"],
)
SIEM_LAG_SECONDS = Gauge(
    f"{PREFIX}_siem_lag_seconds",
    "Age of the oldest audit event a SIEM output has not delivered yet (0: none waiting).",
    ["output"],
)
SIEM_UP = Gauge(
    f"{PREFIX}_siem_output_up",
    "1 when the last delivery attempt to a SIEM output worked (or there was nothing to send).",
    ["output"],
)
UP = Gauge(f"{PREFIX}_ready", "1 when the proxy is listening with a valid policy loaded.")


@functools.lru_cache(maxsize=4096)
def child[M: MetricWrapperBase](metric: M, *labels: str) -> M:
    """``metric.labels(*labels)``, remembered: the hot path asks for the same few children."""
    return metric.labels(*labels)
