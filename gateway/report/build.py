"""Build a block report: the decisions of a period summarised by every dimension an auditor
asks about, a day-by-day timeline, the incident list, the chain verification, and the policy
and geo database versions that were in force. No payload values: the trail holds none."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.backend import AuditBackend
from gateway.audit.query import DECISION_ACTIONS, IncidentFilter, Period, all_incidents
from gateway.audit.verify import Verification, verify
from gateway.audit.workflow import NEW, dispositions, hours_to_close
from gateway.model import split_client

# (key, title) of each summary table, in the order reports show them.
DIMENSIONS = (
    ("country", "Destination country"),
    ("destination", "Destination"),
    ("client", "Client"),
    ("rule", "Rule"),
    ("message_type", "Message type"),
    ("category", "PHI category"),
)
DEFAULT_MAX_LISTED = 1000
_SEVERITY = {action: rank for rank, action in enumerate(DECISION_ACTIONS)}
INCIDENT_COLUMNS = (
    "incident_id",
    "time",
    "action",
    "rule",
    "client",
    "host",
    "ip",
    "port",
    "country",
    "protocol",
    "format",
    "message_type",
    "categories",
    "reason",
    "policy_version",
    "instance_id",
    "payload_fingerprint",
    # The incident workflow (gateway/audit/workflow.py): state, and hours from the decision
    # to the change that closed it (empty while open).
    "disposition",
    "hours_to_close",
)


@dataclass(slots=True)
class Tally:
    """Counts by action for one value of one dimension."""

    value: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECISION_ACTIONS, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(slots=True)
class BlockReport:
    period: Period
    generated: str
    source: str
    totals: dict[str, int]
    summaries: dict[str, list[Tally]]
    timeline: list[Tally]  # one per day, value = ISO date
    incidents: list[dict[str, Any]]
    verification: Verification
    policy_versions: list[dict[str, Any]]
    geo_databases: list[dict[str, Any]]
    # HTML and PDF list at most this many incidents (report.max_listed_incidents).
    max_listed: int = DEFAULT_MAX_LISTED

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    def listed(self) -> list[dict[str, Any]]:
        """The incidents a report for people lists: every one when they fit, otherwise the
        ``max_listed`` most severe (blocked, redacted, monitor-only, allowed), newest first
        within each. Either way in that order, so the list reads the same."""
        chosen = sorted(self.incidents, key=lambda r: (str(r["time"]), int(r["seq"])), reverse=True)
        chosen.sort(key=lambda r: _SEVERITY.get(str(r["action"]), len(_SEVERITY)))
        return chosen[: self.max_listed]

    @property
    def unlisted(self) -> int:
        """Incidents a report for people leaves out (CSV and JSON carry them all)."""
        return max(0, len(self.incidents) - self.max_listed)

    def listing_note(self) -> str:
        """One line above the incident list of HTML and PDF."""
        count = len(self.incidents)
        if not self.unlisted:
            return f"All {count:,} incidents of the period, most severe first, newest first."
        return (
            f"The {self.max_listed:,} most severe incidents, newest first, of {count:,}: "
            f"{self.unlisted:,} more are not listed here. The CSV and JSON reports of the same "
            "period list every incident; the totals, summaries, timeline and verification above "
            "cover all of them."
        )

    def as_dict(self, incidents: bool = True) -> dict[str, Any]:
        out = {
            "period": {"from": self.period.since, "to": self.period.last.isoformat()},
            "generated": self.generated,
            "source": self.source,
            "totals": self.totals,
            "summaries": {
                key: [{"value": t.value, **t.counts, "total": t.total} for t in tallies]
                for key, tallies in self.summaries.items()
            },
            "timeline": [{"day": t.value, **t.counts} for t in self.timeline],
            "verification": self.verification.as_dict(),
            "policy_versions": self.policy_versions,
            "geo_databases": self.geo_databases,
        }
        if incidents:
            out["incidents"] = [_incident(row) for row in self.incidents]
        return out


def _incident(row: dict[str, Any]) -> dict[str, Any]:
    out = {c: row[c] for c in INCIDENT_COLUMNS}
    out["categories"] = _json(row["categories"], {})
    return out


def _json(text: object, default: Any) -> Any:
    try:
        return json.loads(str(text)) if text else default
    except ValueError:
        return default


def categories_text(text: object) -> str:
    """``{"name": 2, "ssn": 1}`` as ``name (2), ssn (1)``."""
    counts = _json(text, {})
    return ", ".join(f"{name} ({count})" for name, count in sorted(counts.items()))


def _keys(row: dict[str, Any]) -> dict[str, list[str]]:
    message_type = " ".join(filter(None, [row["format"], row["message_type"]])) or "(none)"
    return {
        "country": [row["country"] or "unknown"],
        "destination": [f"{row['host']}:{row['port']}"],
        "client": [split_client(str(row["client"]))[0]],
        "rule": [row["rule"]],
        "message_type": [message_type],
        "category": sorted(_json(row["categories"], {})) or ["(none)"],
    }


def _sorted(tallies: dict[str, Tally]) -> list[Tally]:
    return sorted(tallies.values(), key=lambda t: (-t.total, t.value))


def build_report(
    backend: AuditBackend,
    period: Period,
    checkpoint_key: bytes | None,
    max_listed: int = DEFAULT_MAX_LISTED,
    checkpoint_logs: Sequence[Path] = (),
) -> BlockReport:
    rows = all_incidents(backend, IncidentFilter(period))
    states = dispositions(backend, period.since, period.until)
    for row in rows:
        state = states.get(str(row["incident_id"]))
        row["disposition"] = state.state if state else NEW
        hours = hours_to_close(str(row["time"]), state) if state else None
        row["hours_to_close"] = "" if hours is None else hours
    totals = dict.fromkeys(DECISION_ACTIONS, 0)
    summaries: dict[str, dict[str, Tally]] = {key: {} for key, _ in DIMENSIONS}
    days = {d.isoformat(): Tally(d.isoformat()) for d in period.days()}
    policies: dict[str, dict[str, Any]] = {}
    geo: Counter[tuple[str, str]] = Counter()
    for row in rows:
        action = str(row["action"])
        if action not in totals:
            continue
        totals[action] += 1
        for key, values in _keys(row).items():
            for value in values:
                summaries[key].setdefault(value, Tally(value)).counts[action] += 1
        day = days.get(str(row["time"])[:10])
        if day is not None:
            day.counts[action] += 1
        version = policies.setdefault(
            str(row["policy_version"]),
            {"version": row["policy_version"], "first": row["time"], "events": 0},
        )
        version["last"] = row["time"]
        version["events"] += 1
        for db in _json(row["geo_databases"], []):
            geo[(str(db.get("name", "")), str(db.get("build", "")))] += 1
    verification = verify(backend, checkpoint_key, period.since, period.until, checkpoint_logs)
    return BlockReport(
        period=period,
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        source=backend.location,
        totals=totals,
        summaries={key: _sorted(tallies) for key, tallies in summaries.items()},
        timeline=list(days.values()),
        incidents=rows,
        verification=verification,
        policy_versions=list(policies.values()),
        geo_databases=[
            {"name": name, "build": build, "events": count}
            for (name, build), count in sorted(geo.items())
        ],
        max_listed=max_listed,
    )


def dimension_titles() -> dict[str, str]:
    return dict(DIMENSIONS)
