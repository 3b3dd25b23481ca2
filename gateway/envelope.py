"""The parts of a request around the body: URL path, query string, headers and cookies.

A FHIR search (``GET /Patient?family=Doe&birthdate=1960-01-02``) sends PHI abroad with no body
at all, and a careless script puts an MRN in a path or a custom header. Query parameters,
form-like cookies and custom headers are read as named values (``gateway.phi.fields``);
FHIR search syntax is undone first (``family:exact``, ``birthdate=ge1960-01-02``,
``identifier=system|value``, chained ``subject.name``).

Every header is read except the protocol machinery of ``MACHINERY`` (values known to carry
no payload). URLs in headers (``Referer``, ``Link``, ``Content-Location``, any value that is
an http(s) URL) are read like the request target: path segments, query, fragment. JWTs in
any header, cookie or query parameter (an OpenID Connect id_token names its user) are decoded
and their claims read as named values; opaque tokens are not PHI.

Request trailers (a header section sent after the body: HTTP/2, chunked HTTP/1.1) are read
like headers, with locations ``trailer:...`` where headers have ``header:...``, and no
allow-list: HTTP forbids the machinery fields in trailers (RFC 9110 section 6.5.1), so a
machinery name there is a label on data, not machinery.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from gateway.model import Category, Finding
from gateway.phi.fields import is_phi, safe_label, scan_fields
from gateway.phi.freetext import (
    is_name,
    looks_like_file_name,
    scan_file_name,
    scan_query,
    scan_text,
)
from gateway.phi.patterns import DATE_VALUE

# Headers whose values are protocol machinery, never data someone chose to put there (tested
# one by one: tests/unit/test_envelope.py). Authorization headers are machinery too, but a JWT
# in them is decoded like one anywhere else.
MACHINERY = frozenset(
    {
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-charset",
        "connection",
        "keep-alive",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "cache-control",
        "pragma",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "range",
        "date",
        "authorization",
        "proxy-authorization",
        "proxy-connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-fetch-site",
        "sec-fetch-mode",
        "sec-fetch-dest",
        "sec-fetch-user",
        "sec-ch-ua",
        "sec-ch-ua-mobile",
        "sec-ch-ua-platform",
        "upgrade-insecure-requests",
        "dnt",
        "priority",
        "traceparent",
        "tracestate",
    }
)
# Where a header field was: the header section, or the trailer section after the body.
HEADER = "header"
TRAILER = "trailer"
# Trailers skip nothing (see the module's docstring); a name belongs here only once it is known
# as a request trailer that carries no payload, and a test shows it.
TRAILER_MACHINERY: frozenset[str] = frozenset()
# Headers whose value is a URL (or, for Link, URLs in angle brackets); Origin has no path.
_URL_HEADERS = frozenset({"referer", "origin", "link", "content-location", "location"})
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.(eyJ[A-Za-z0-9_-]{2,})\.[A-Za-z0-9_-]*")
_MAX_JWT = 16 * 1024
# Title-case words of searches that are not about a person ("Results Since 2026-01-01").
_NOT_NAMES = frozenset(
    [
        "all",
        "any",
        "after",
        "before",
        "between",
        "since",
        "from",
        "until",
        "to",
        "on",
        "at",
        "by",
        "due",
        "last",
        "next",
        "new",
        "open",
        "closed",
        "paid",
        "unpaid",
        "results",
        "reports",
        "report",
        "orders",
        "order",
        "claims",
        "claim",
        "invoice",
        "invoices",
        "date",
        "dates",
        "created",
        "updated",
        "modified",
        "scheduled",
        "pending",
        "final",
        "draft",
    ]
)
_LOOKUP_SPLIT = re.compile(r"[\s+,;]+")
_TIME = re.compile(r"[T ]\d")
_LOOKUP_WORD = re.compile(r"^(?:[A-Z][a-z'\u2019-]+|[A-Z][A-Z'\u2019-]+)$")
_FILENAME = re.compile(r"(?i)filename\*?=(?:[\w-]+'[\w-]*')?\"?([^\";]+)")
# OpenID Connect standard claims (OIDC Core 5.1) by the field names of gateway.phi.fields.
_CLAIM_NAMES = {
    "name": "fullname",
    "given_name": "given",
    "family_name": "family",
    "nickname": "given",
    "preferred_username": "fullname",
    "phone_number": "phone",
    "street_address": "address",
    "postal_code": "zip",
}
_DATE_PREFIX = re.compile(r"^(?:eq|ne|lt|gt|ge|le|sa|eb|ap)(?=\d)")
_SSN_SEGMENT = re.compile(r"^\d{3}-\d{2}-\d{4}$")
# A search on these endpoints is about a person: any identifying parameter makes it PHI.
_PERSON_ENDPOINT = re.compile(r"(?:^|/)(?:Patient|RelatedPerson|Person)(?:/_search)?/?$")
MAX_QUERY_PARAMETERS = 500
# FHIR search parameters that name what the generic field names do not.
_SEARCH_NAMES = {"identifier": "mrn", "name": "fullname", "phonetic": "fullname"}


def fhir_search_pairs(query: str) -> list[tuple[str, str]]:
    """Query parameters with FHIR search syntax undone; values percent-decoded."""
    pairs: list[tuple[str, str]] = []
    for raw_name, value in parse_qsl(query, keep_blank_values=False)[:MAX_QUERY_PARAMETERS]:
        name = raw_name.split(":", 1)[0].rsplit(".", 1)[-1]  # modifiers, chains
        for alternative in value.split(","):  # FHIR OR-lists
            part = _DATE_PREFIX.sub("", alternative)
            if name == "identifier" and "|" in part:
                part = part.rsplit("|", 1)[1]
            pairs.append((name, part))
    return pairs


def inspect_target(path: str, query: str, where: str = "url") -> list[Finding]:
    """Findings in the request target (path segments and query parameters)."""
    found = [
        Finding(Category.SSN, f"{where}.path")
        for segment in unquote(path).split("/")
        if _SSN_SEGMENT.match(segment)
    ]
    if query:
        found += scan_fields(fhir_search_pairs(query), f"{where}.query", _SEARCH_NAMES)
        values = [v for _, v in parse_qsl(query)[:MAX_QUERY_PARAMETERS]]
        found += jwt_findings(values, f"{where}.query")
        found += lookup_findings(values, f"{where}.query")
    return found


def lookup_findings(values: Iterable[str], where: str) -> list[Finding]:
    """Short lookups (``?q=Jane Doe 1970-01-02``, a search box sent as a header): a value that
    is a capitalised full name and a full date, and nothing else, looks a patient up."""
    found: list[Finding] = []
    for value in values:
        if len(value) > 120:
            continue
        tokens = [t for t in _LOOKUP_SPLIT.split(value.strip()) if t]
        if not 3 <= len(tokens) <= 6:
            continue
        dates = sum(1 for t in tokens if DATE_VALUE.match(t))
        words = sum(1 for t in tokens if _LOOKUP_WORD.match(t) and t.lower() not in _NOT_NAMES)
        if dates == 1 and words >= 2 and dates + words == len(tokens):
            found += [
                Finding(Category.NAME, f"{where}.lookup"),
                Finding(Category.DATE, f"{where}.lookup"),
            ]
    return found


def record_findings(values: Iterable[str], where: str) -> list[Finding]:
    """The values of one record whose fields have no names (a protobuf message read without
    its schema): a capitalised full name (two to four name words) and a date among them are
    a patient, as in a lookup. A date with a time is an event's, not a birth date."""
    name = date = False
    for raw in values:
        value = raw.strip()
        if len(value) > 64:
            continue
        if not date and DATE_VALUE.match(value) and not _TIME.search(value):
            date = True
        elif not name:
            words = [t for t in _LOOKUP_SPLIT.split(value) if t]
            name = (
                2 <= len(words) <= 4
                and all(_LOOKUP_WORD.match(w) and w.lower() not in _NOT_NAMES for w in words)
                and is_name(value)
            )
    if not (name and date):
        return []
    return [Finding(Category.NAME, f"{where}.record"), Finding(Category.DATE, f"{where}.record")]


def inspect_url(url: str, where: str) -> list[Finding]:
    """A URL in a header, read like the request target; a fragment with parameters (a
    single-page app's route, ``#/chart?mrn=...``) like a query."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    found = inspect_target(parts.path, parts.query, where)
    fragment = parts.fragment
    if "=" in fragment:
        route, _, params = fragment.partition("?")
        found += inspect_target(route, params or route, f"{where}.fragment")
    return found


def jwt_claims(value: str) -> Iterator[tuple[str, str]]:
    """The claims of every JWT in a value, flattened to (name, value) pairs."""
    for match in _JWT.finditer(value[: _MAX_JWT * 4]):
        payload = match.group(1)[:_MAX_JWT]
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            claims = json.loads(raw)
        except (binascii.Error, ValueError, RecursionError):
            continue
        yield from _flatten(claims, 0)


def _flatten(node: Any, depth: int) -> Iterator[tuple[str, str]]:
    if not isinstance(node, dict) or depth > 4:
        return
    for key, value in list(node.items())[:200]:
        if isinstance(value, dict):
            yield from _flatten(value, depth + 1)
        elif isinstance(value, str | int | float):
            yield str(key), str(value)


def jwt_findings(values: Iterable[str], where: str) -> list[Finding]:
    pairs = [pair for value in values if "eyJ" in value for pair in jwt_claims(value)]
    return scan_fields(pairs, f"{where}.jwt", _CLAIM_NAMES) if pairs else []


def inspect_envelope(
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    trailers: Iterable[tuple[str, str]] = (),
) -> tuple[list[Finding], bool]:
    """(findings, contains PHI) for everything around the body."""
    headers = list(headers)
    trailers = list(trailers)
    target = inspect_target(path, query)
    found = target + inspect_headers(headers)
    if trailers:
        found += inspect_headers(trailers, TRAILER, TRAILER_MACHINERY)
    person_search = bool(target) and _PERSON_ENDPOINT.search(path) is not None
    # Prose in the query or in custom header values ("note=Patient: Jane Doe, DOB ..."), and
    # the names of files: the last path segment, a Content-Disposition's filename.
    prose = [scan_query(query, "url.query")] if query else []
    segment = unquote(path).rsplit("/", 1)[-1]
    if looks_like_file_name(segment):
        prose.append(scan_file_name(segment, "url.path.filename"))
    for section, fields, machinery in (
        (HEADER, headers, MACHINERY),
        (TRAILER, trailers, TRAILER_MACHINERY),
    ):
        for name, value in fields:
            if name.lower() == "content-disposition":
                for match in _FILENAME.finditer(value):
                    prose.append(scan_file_name(unquote(match.group(1)), f"{section}:filename"))
        values = [v for n, v in fields if _prose_header(n.lower(), machinery)]
        if values:
            prose.append(scan_text("\n\n".join(values), section))
    named_phi = person_search or is_phi(found)  # the named-value threshold, before prose
    for scan in prose:
        found += scan.findings
    return found, named_phi or any(s.contains_phi for s in prose)


def _prose_header(lowered: str, machinery: frozenset[str]) -> bool:
    return lowered not in machinery and lowered not in _URL_HEADERS and lowered != "cookie"


def inspect_headers(
    headers: Iterable[tuple[str, str]],
    section: str = HEADER,
    machinery: frozenset[str] = MACHINERY,
) -> list[Finding]:
    """Findings in custom headers, URL-valued headers, JWTs anywhere, and cookies; ``section``
    names where they were (headers or trailers) and ``machinery`` what it skips there."""
    pairs: list[tuple[str, str]] = []
    cookies: list[tuple[str, str]] = []
    found: list[Finding] = []
    for name, value in headers:
        lowered = name.lower()
        label = safe_label(lowered)
        if "eyJ" in value:
            found += jwt_findings([value], f"{section}:{label}")
        if lowered in _URL_HEADERS or (lowered not in machinery and _URL.match(value.strip())):
            for url in _URL.findall(value):
                found += inspect_url(url, f"{section}:{label}")
            if lowered in _URL_HEADERS:
                continue
        if lowered in machinery:
            continue
        if lowered == "cookie":
            for crumb in value.split(";"):
                key, _, val = crumb.strip().partition("=")
                cookies.append((key, unquote(val)))
            continue
        pairs.append((_header_field_name(lowered), value))
        found += lookup_findings([value], f"{section}:{label}")
    found += scan_fields(pairs, section) + scan_fields(cookies, f"{section}.cookie")
    return found


def _header_field_name(name: str) -> str:
    """x-patient-dob → patient-dob: the conventional prefix says nothing about the value."""
    return name[2:] if name.startswith("x-") else name
