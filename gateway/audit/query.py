"""Read decisions back out of the audit trail: by period, action and country, paged."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from gateway.audit.backend import ROW_COLUMNS, AuditBackend
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
