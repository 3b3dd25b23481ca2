"""One audit event: what was decided about one message and why — categories, counts, paths and
the destination evidence, never a payload value."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, fields

import orjson

from gateway.model import Decision, Jurisdiction


def new_incident_id(now: dt.datetime | None = None, prefix: str = "INC") -> str:
    """Time-ordered and human-readable: INC-20261126T224911Z-3f9a1c0b (API-… and EXP-… for
    the trail's own events)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{prefix}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


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
    # HMAC-SHA256 of the payload as sent, keyed by the site secret: an auditor holding the
    # message can match it (`phi-gateway audit fingerprint FILE`); the trail holds no PHI.
    payload_fingerprint: str = ""
    # JSON: [{"name": ..., "build": ISO date}] of the geo databases that judged the destination.
    geo_databases: str = ""
    # decision (one message judged) | access (an admin API request) | expiry (retention ran)
    # | workflow (an analyst changed an incident's state: gateway/audit/workflow.py)
    kind: str = "decision"
    # JSON with the kind's own facts (access: method, path, status, token; expiry: range).
    detail: str = ""
    # "<run>/<n>": this process run's n-th decided event, numbered when it was decided, so
    # `audit verify` can tell an event that was never written (a gap, or a number past the
    # last one written that a checkpoint's tally names).
    run_seq: str = ""
    # The incident a workflow event changes (empty for every other kind): indexed, so an
    # incident's history is one lookup.
    subject: str = ""

    @classmethod
    def from_decision(
        cls,
        decision: Decision,
        instance_id: str,
        policy_version: str,
        counts: dict[str, int] | None = None,
        *,
        payload_fingerprint: str = "",
        geo_databases: str = "",
        run_seq: str = "",
    ) -> AuditEvent:
        verdict = decision.verdict
        destination = decision.destination
        where = destination.verdict
        inspection = decision.inspection
        action = verdict.action.value if verdict.enforced else "monitor"
        evidence = _evidence(destination.addresses)
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
            geo_evidence=evidence,
            protocol=decision.message.protocol.value,
            format=inspection.format.value,
            message_type=inspection.message_type,
            categories=_json(inspection.category_counts() if counts is None else counts),
            locations=_json(inspection.locations()),
            action=action,
            rule=verdict.rule,
            reason=verdict.reason,
            error=inspection.error,
            redaction=_redaction_summary(decision),
            payload_fingerprint=payload_fingerprint,
            geo_databases=geo_databases,
            run_seq=run_seq,
        )

    def as_row(self) -> dict[str, object]:
        # Every field is a str or an int: no deep copy needed (dataclasses.asdict makes one).
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(AuditEvent))


# The evidence JSON of the address tuples judged lately: the locator hands out the same
# Jurisdiction objects for an address until its cache entry expires, so the same few tuples
# come back request after request. Keyed by value (equal tuples, equal JSON); bounded.
_EVIDENCE: dict[tuple[Jurisdiction, ...], str] = {}
_EVIDENCE_KEPT = 1024


def _evidence(addresses: tuple[Jurisdiction, ...]) -> str:
    """Every address judged, with every source's answer, as JSON."""
    known = _EVIDENCE.get(addresses)
    if known is not None:
        return known
    text = _json(
        [
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
            for j in addresses
        ]
    )
    if len(_EVIDENCE) >= _EVIDENCE_KEPT:
        _EVIDENCE.clear()
    _EVIDENCE[addresses] = text
    return text


def _json(value: object) -> str:
    """Compact JSON in UTF-8, keys in the order given."""
    return orjson.dumps(value).decode()


def event_timestamp(iso: str) -> float:
    """Seconds since the epoch of an event's ISO time ("Z": UTC; 0 when there is none or it
    cannot be read)."""
    if not iso:
        return 0.0
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _compact(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def trail_event(
    *, prefix: str, instance_id: str, policy_version: str, **fields: str | int
) -> AuditEvent:
    """An event about the trail or the gateway itself: no destination, no payload."""
    blank: dict[str, str | int] = {
        "client": "",
        "host": "",
        "ip": "",
        "port": 0,
        "country": "",
        "location": "",
        "geo_evidence": "[]",
        "protocol": "",
        "format": "",
        "message_type": "",
        "categories": "{}",
        "locations": "[]",
        "error": "",
    }
    return AuditEvent(
        incident_id=new_incident_id(prefix=prefix),
        time=_now_iso(),
        instance_id=instance_id,
        policy_version=policy_version,
        **(blank | fields),  # type: ignore[arg-type]
    )


def access_event(
    *,
    instance_id: str,
    policy_version: str,
    client: str,
    method: str,
    path: str,
    status: int,
    token: str,
    role: str,
) -> AuditEvent:
    """An admin API request: who (token name and role, client address) asked for what."""
    return trail_event(
        prefix="API",
        instance_id=instance_id,
        policy_version=policy_version,
        client=client,
        protocol="http/1",
        action="api-access",
        rule=role,
        reason=f"{method} {path} -> {status}",
        kind="access",
        detail=_compact(
            {"method": method, "path": path, "status": status, "token": token, "role": role}
        ),
    )


def reload_event(
    *,
    instance_id: str,
    policy_version: str,
    previous_version: str,
    by: str,
    role: str,
    ok: bool,
    message: str,
) -> AuditEvent:
    """A policy reload: who asked (a token name, or SIGHUP), and whether it took."""
    outcome = "applied" if ok else "refused"
    return trail_event(
        prefix="RLD",
        instance_id=instance_id,
        policy_version=policy_version,
        action="policy-reload",
        rule=role,
        reason=f"reload by {by} {outcome}: {previous_version} -> {policy_version}",
        kind="reload",
        detail=_compact(
            {
                "by": by,
                "role": role,
                "ok": ok,
                "message": message[:300],
                "previous_version": previous_version,
            }
        ),
    )


def expiry_event(
    *,
    instance_id: str,
    policy_version: str,
    through_seq: int,
    through_hash: str,
    count: int,
    before: str,
) -> AuditEvent:
    """Retention removed the chain's oldest events: the chain records where it now starts."""
    return trail_event(
        prefix="EXP",
        instance_id=instance_id,
        policy_version=policy_version,
        action="retention-expiry",
        rule="retention",
        reason=f"{count} event(s) older than {before} expired (chain seq {through_seq} and before)",
        kind="expiry",
        detail=_compact(
            {
                "through_seq": through_seq,
                "through_hash": through_hash,
                "count": count,
                "before": before,
            }
        ),
    )


def _redaction_summary(decision: Decision) -> str:
    if decision.redaction is None:
        return ""
    summary = {
        "categories": decision.redaction.counts,
        "locations": list(decision.redaction.locations),
    }
    return _compact(summary)
