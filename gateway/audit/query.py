"""Read decisions back out of the audit trail: by period, action and country, paged (API,
reports); searched by every filter the console offers, newest first, by keyset."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from gateway.audit.backend import ROW_COLUMNS, AuditBackend
from gateway.config import Network
from gateway.errors import QueryError

DECISION_ACTIONS = ("block", "redact", "monitor", "allow")
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days, both ends included."""

    first: dt.date
    last: dt.date

    @property
    def since(self) -> str:
        return self.first.isoformat()

    @property
    def until(self) -> str:
        """Exclusive upper bound as an ISO prefix: the day after ``last``."""
        return (self.last + dt.timedelta(days=1)).isoformat()

    def days(self) -> list[dt.date]:
        count = (self.last - self.first).days + 1
        return [self.first + dt.timedelta(days=n) for n in range(count)]


def parse_period(first: str | None, last: str | None, default_days: int = 30) -> Period:
    """``YYYY-MM-DD`` dates; a missing end is today, a missing start ``default_days`` before."""
    try:
        end = dt.date.fromisoformat(last) if last else dt.datetime.now(dt.UTC).date()
        start = dt.date.fromisoformat(first) if first else end - dt.timedelta(days=default_days)
    except ValueError:
        raise QueryError("dates must be YYYY-MM-DD") from None
    if start > end:
        raise QueryError(f"from {start} is after to {end}")
    if (end - start).days > 3660:
        raise QueryError("a period of at most ten years")
    return Period(start, end)


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    period: Period
    action: str = ""
    country: str = ""

    def __post_init__(self) -> None:
        if self.action and self.action not in DECISION_ACTIONS:
            raise QueryError(f"action must be one of {', '.join(DECISION_ACTIONS)}")
        if self.country and not (self.country.isalpha() and len(self.country) <= 7):
            raise QueryError("country must be an ISO code (or 'unknown')")

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["kind = 'decision'", "time >= ?", "time < ?"]
        params: list[Any] = [self.period.since, self.period.until]
        if self.action:
            clauses.append("action = ?")
            params.append(self.action)
        if self.country:
            clauses.append("country = ?")
            params.append(self.country if self.country == "unknown" else self.country.upper())
        return " AND ".join(clauses), params


def incidents(
    backend: AuditBackend, where: IncidentFilter, limit: int = MAX_PAGE, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """One page of decisions (oldest first) and the total that match."""
    clause, params = where.where()
    conn = backend.connect()
    try:
        total = backend.fetch(
            conn,
            f"SELECT COUNT(*) AS n FROM audit_events WHERE {clause}",  # noqa: S608
            params,
        )[0]["n"]
        rows = backend.fetch(
            conn,
            f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events WHERE {clause} "  # noqa: S608
            "ORDER BY time, seq LIMIT ? OFFSET ?",
            [*params, max(0, min(limit, MAX_PAGE)), max(0, offset)],
        )
    finally:
        conn.close()
    return rows, int(total)


def all_incidents(backend: AuditBackend, where: IncidentFilter) -> list[dict[str, Any]]:
    clause, params = where.where()
    return backend.fetch_once(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events WHERE {clause} "  # noqa: S608
        "ORDER BY time, seq",
        params,
    )


def incident(backend: AuditBackend, incident_id: str) -> dict[str, Any] | None:
    rows = backend.fetch_once(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events "  # noqa: S608
        "WHERE incident_id = ? AND kind = 'decision'",
        (incident_id,),
    )
    return rows[0] if rows else None


# How many matches a search counts before it says "more than": an exact count of a large
# period would read every matching row for a number nobody needs exactly.
COUNT_CAP = 10_000
# Incidents a workflow-state filter may name at once (the SQL lists them).
MAX_STATE_IDS = 20_000
_CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_RULE = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,80}$")
_HOST = re.compile(r"^[a-z0-9*._-]{1,253}$")


@dataclass(frozen=True, slots=True)
class Search:
    """What the console's incident list is filtered by; empty means any."""

    period: Period
    action: str = ""
    country: str = ""
    destination: str = ""  # host, or host:port
    clients: tuple[Network, ...] = ()  # a client address or a group's networks
    rule: str = ""
    category: str = ""
    # Only these incidents (a workflow-state filter), or every one but these ("new").
    only: frozenset[str] | None = None
    excluding: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        IncidentFilter(self.period, self.action, self.country)  # the shared checks
        if self.rule and not _RULE.match(self.rule):
            raise QueryError("rule: letters, digits and . _ : [ ] - only")
        if self.category and not _CATEGORY.match(self.category):
            raise QueryError("category: a category name such as name or ssn")
        host = self.destination.rpartition(":")[0] if ":" in self.destination else self.destination
        if self.destination and not _HOST.match(host.lower()):
            raise QueryError("destination: a host name or address, with :port if you like")
        for ids in (self.only or frozenset(), self.excluding):
            if len(ids) > MAX_STATE_IDS:
                raise QueryError("too many incidents in that workflow state: narrow the period")

    def where(self) -> tuple[str, list[Any]]:
        clause, params = IncidentFilter(self.period, self.action, self.country).where()
        clauses = [clause]
        if self.destination:
            host, sep, port = self.destination.lower().rpartition(":")
            if sep and port.isdigit() and "]" not in port:
                clauses.append("host = ? AND port = ?")
                params += [host.strip("[]"), int(port)]
            else:
                clauses.append("host = ?")
                params.append(self.destination.lower().strip("[]"))
        if self.clients:
            patterns = [p for network in self.clients for p in client_patterns(network)]
            clauses.append("(" + " OR ".join("client LIKE ?" for _ in patterns) + ")")
            params += patterns
        if self.rule:
            clauses.append("rule = ?")
            params.append(self.rule)
        if self.category:
            # categories is a JSON object of names: a quoted name followed by its count
            # ("_" is a LIKE wildcard: escaped, so account_number matches itself only)
            clauses.append("categories LIKE ? ESCAPE '!'")
            params.append('%"' + self.category.replace("_", "!_") + '":%')
        if self.only is not None:
            if not self.only:
                clauses.append("1 = 0")
            else:
                clauses.append(f"incident_id IN ({', '.join('?' for _ in self.only)})")
                params += sorted(self.only)
        if self.excluding:
            clauses.append(f"incident_id NOT IN ({', '.join('?' for _ in self.excluding)})")
            params += sorted(self.excluding)
        return " AND ".join(clauses), params


def client_patterns(network: Network) -> list[str]:
    """LIKE patterns matching exactly the ``client`` column values ("ip:port") inside an IPv4
    network (also written IPv4-mapped, by a dual-stack listener), or of one IPv6 address: a
    shorter IPv6 prefix has no exact text pattern (addresses are written compressed)."""
    if network.version == 6:
        if network.prefixlen != 128:
            raise QueryError("client: IPv6 networks cannot be searched, only single addresses")
        return [f"{network.network_address}:%", f"[{network.network_address}]:%"]
    patterns = _ipv4_patterns(network)
    return patterns + ["::ffff:" + p for p in patterns if p != "%"]


def _ipv4_patterns(network: Network) -> list[str]:
    octets = str(network.network_address).split(".")
    whole, rest = divmod(network.prefixlen, 8)
    if whole == 4:
        return [f"{network.network_address}:%"]
    if rest == 0:
        return [".".join(octets[:whole]) + ".%:%"] if whole else ["%"]
    first = int(octets[whole])
    head = ".".join(octets[:whole])
    values = range(first, first + 2 ** (8 - rest))
    joined = (f"{head}.{value}" if head else str(value) for value in values)
    # "10.2" must not match "10.20...": the next octet's dot (or the port's colon) follows
    suffix = ".%:%" if whole < 3 else ":%"
    return [f"{value}{suffix}" for value in joined]


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    after: str  # the cursor of the next (older) page; empty on the last
    matched: int  # how many match, at most COUNT_CAP
    capped: bool  # there are more than ``matched``
    # The time budget ran out: reading the page (``cut``) or counting (``uncounted``)
    # stopped before it ended, so the search is too broad for the trail's indexes.
    cut: bool = False
    uncounted: bool = False


def cursor(row: dict[str, Any]) -> str:
    return f"{row['time']}~{row['seq']}"


def _parse_cursor(text: str) -> tuple[str, int]:
    moment, sep, seq = text.rpartition("~")
    if not sep or not seq.isdigit() or not moment[:4].isdigit() or len(moment) > 40:
        raise QueryError("not a page of this list: start again from the first page")
    return moment, int(seq)


def _bounded(
    backend: AuditBackend, statement: str, params: list[Any], seconds: float
) -> list[dict[str, Any]] | None:
    """``fetch`` on a connection of its own, interrupted after ``seconds`` (None then)."""
    if seconds <= 0:
        return None
    conn = backend.connect()
    timer = threading.Timer(seconds, backend.interrupt, (conn,))
    timer.start()
    try:
        return backend.fetch(conn, statement, params)
    except backend.errors:
        return None
    finally:
        timer.cancel()
        with contextlib.suppress(*backend.errors):
            conn.close()


def search(
    backend: AuditBackend,
    where: Search,
    after: str = "",
    limit: int = 50,
    budget_seconds: float = 3600.0,
) -> Page:
    """One page of matching decisions, newest first, after ``after`` (a cursor of the last
    row of the page before): keyset pagination, so the thousandth page reads no more rows
    than the first. Reading the page and counting share ``budget_seconds``: a search that
    no index narrows stops there instead of holding a thread and a connection."""
    deadline = time.monotonic() + budget_seconds
    clause, params = where.where()
    size = max(1, min(limit, MAX_PAGE))
    page_clause, page_params = clause, list(params)
    if after:
        moment, seq = _parse_cursor(after)
        page_clause += " AND time <= ? AND (time < ? OR seq < ?)"
        page_params += [moment, moment, seq]
    rows = _bounded(
        backend,
        f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events WHERE {page_clause} "  # noqa: S608
        "ORDER BY time DESC, seq DESC LIMIT ?",
        [*page_params, size + 1],
        budget_seconds,
    )
    if rows is None:
        return Page([], "", 0, False, cut=True, uncounted=True)
    counted = _bounded(
        backend,
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM audit_events "  # noqa: S608
        f"WHERE {clause} LIMIT ?) AS matching",
        [*params, COUNT_CAP + 1],
        deadline - time.monotonic(),
    )
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = cursor(rows[-1]) if more else ""
    if counted is None:
        return Page(rows, next_cursor, len(rows), more, uncounted=True)
    total = int(counted[0]["n"])
    return Page(rows, next_cursor, min(total, COUNT_CAP), total > COUNT_CAP)


def by_fingerprint(
    backend: AuditBackend, fingerprint: str, limit: int = 100
) -> list[dict[str, Any]]:
    """The decisions about a payload with this keyed fingerprint, newest first."""
    if not fingerprint:
        return []  # events without a payload carry none
    return backend.fetch_once(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events "  # noqa: S608
        "WHERE payload_fingerprint = ? AND kind = 'decision' ORDER BY time DESC, seq DESC LIMIT ?",
        (fingerprint, limit),
    )


def recent_of_kind(backend: AuditBackend, kind: str, limit: int) -> list[dict[str, Any]]:
    """The newest events of one kind (reloads for the console's policy page)."""
    return backend.fetch_once(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events "  # noqa: S608
        "WHERE kind = ? ORDER BY time DESC, seq DESC LIMIT ?",
        (kind, limit),
    )
