"""One audit event: what was decided about one message and why — categories, counts, paths and
the destination evidence, never a payload value."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import asdict, dataclass

from gateway.model import Decision


def new_incident_id(now: dt.datetime | None = None) -> str:
    """Time-ordered and human-readable: INC-20261126T224911Z-3f9a1c0b."""
    now = now or dt.datetime.now(dt.UTC)
    return f"INC-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    incident_id: str
    time: str  # ISO 8601 UTC
    instance_id: str
    policy_version: str
    client: str
    host: str
    ip: str
    port: int
    country: str
    location: str
    geo_evidence: str  # JSON: [{"source":..., "country":...}, ...] for every address judged
    protocol: str
    format: str
    message_type: str
    categories: str  # JSON: {"name": 2, "ssn": 1}
    locations: str  # JSON: ["PID-19", "PID-5"]
    action: str  # block | redact | monitor | allow
    rule: str
    reason: str
    error: str
    redaction: str = ""  # JSON: {"categories": {...}, "locations": [...]} of what was redacted

    @classmethod
    def from_decision(
        cls,
        decision: Decision,
        instance_id: str,
        policy_version: str,
        counts: dict[str, int] | None = None,
    ) -> AuditEvent:
        verdict = decision.verdict
        destination = decision.destination
        where = destination.verdict
        inspection = decision.inspection
        action = verdict.action.value if verdict.enforced else "monitor"
        evidence = [
            {
                "ip": j.ip,
                "location": j.location.value,
                "country": j.country,
                "reason": j.reason,
                "rule": j.rule,
                "disagreement": j.disagreement,
                "sources": [
                    {"source": a.source, "country": a.country, "version": a.version}
                    | ({"detail": a.detail} if a.detail else {})
                    for a in j.evidence
                ],
            }
            for j in destination.addresses
        ]
        timestamp = dt.datetime.fromtimestamp(decision.timestamp, dt.UTC)
        return cls(
            incident_id=decision.incident_id,
            time=timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            instance_id=instance_id,
            policy_version=policy_version,
            client=decision.message.client,
            host=destination.host,
            ip=where.ip,
            port=destination.port,
            country=where.country_label,
            location=where.location.value,
            geo_evidence=json.dumps(evidence, separators=(",", ":")),
            protocol=decision.message.protocol.value,
            format=inspection.format.value,
            message_type=inspection.message_type,
            categories=json.dumps(
                inspection.category_counts() if counts is None else counts, separators=(",", ":")
            ),
            locations=json.dumps(inspection.locations(), separators=(",", ":")),
            action=action,
            rule=verdict.rule,
            reason=verdict.reason,
            error=inspection.error,
            redaction=_redaction_summary(decision),
        )

    def as_row(self) -> dict[str, object]:
        return asdict(self)


def _redaction_summary(decision: Decision) -> str:
    if decision.redaction is None:
        return ""
    summary = {
        "categories": decision.redaction.counts,
        "locations": list(decision.redaction.locations),
    }
    return json.dumps(summary, separators=(",", ":"), sort_keys=True)
