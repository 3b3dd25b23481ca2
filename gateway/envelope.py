"""The parts of a request around the body: URL path, query string, headers and cookies.

A FHIR search (``GET /Patient?family=Doe&birthdate=1960-01-02``) sends PHI abroad with no body
at all, and a careless script puts an MRN in a path or a custom header. Query parameters,
form-like cookies and custom headers are read as named values (``gateway.phi.fields``);
FHIR search syntax is undone first (``family:exact``, ``birthdate=ge1960-01-02``,
``identifier=system|value``, chained ``subject.name``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote

from gateway.model import Category, Finding
from gateway.phi.fields import is_phi, scan_fields
from gateway.phi.freetext import scan_query, scan_text

# Headers whose values are protocol machinery, never data someone chose to put there.
_MACHINERY = frozenset(
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
        "origin",
        "referer",
        "cache-control",
        "pragma",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "range",
        "date",
        "authorization",
        "proxy-authorization",
        "proxy-connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "traceparent",
        "tracestate",
    }
)
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


def inspect_target(path: str, query: str) -> list[Finding]:
    """Findings in the request target (path segments and query parameters)."""
    found = [
        Finding(Category.SSN, "url.path")
        for segment in unquote(path).split("/")
        if _SSN_SEGMENT.match(segment)
    ]
    if query:
        found += scan_fields(fhir_search_pairs(query), "url.query", _SEARCH_NAMES)
    return found


def inspect_envelope(
    path: str, query: str, headers: Iterable[tuple[str, str]]
) -> tuple[list[Finding], bool]:
    """(findings, contains PHI) for everything around the body."""
    headers = list(headers)
    target = inspect_target(path, query)
    found = target + inspect_headers(headers)
    person_search = bool(target) and _PERSON_ENDPOINT.search(path) is not None
    # Prose in the query or in custom header values ("note=Patient: Jane Doe, DOB ...").
    prose = [scan_query(query, "url.query")] if query else []
    values = [v for n, v in headers if n.lower() not in _MACHINERY and n.lower() != "cookie"]
    if values:
        prose.append(scan_text("\n\n".join(values), "header"))
    named_phi = person_search or is_phi(found)  # the named-value threshold, before prose
    for scan in prose:
        found += scan.findings
    return found, named_phi or any(s.contains_phi for s in prose)


def inspect_headers(headers: Iterable[tuple[str, str]]) -> list[Finding]:
    """Findings in custom headers and cookies."""
    pairs: list[tuple[str, str]] = []
    cookies: list[tuple[str, str]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in _MACHINERY:
            continue
        if lowered == "cookie":
            for crumb in value.split(";"):
                key, _, val = crumb.strip().partition("=")
                cookies.append((key, unquote(val)))
            continue
        pairs.append((_header_field_name(lowered), value))
    return scan_fields(pairs, "header") + scan_fields(cookies, "header.cookie")


def _header_field_name(name: str) -> str:
    """x-patient-dob → patient-dob: the conventional prefix says nothing about the value."""
    return name[2:] if name.startswith("x-") else name
