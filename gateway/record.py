"""Record stage: every decision is observed in the metrics, and the ones the verdict asks for
are written to the audit trail (with one log line: the incident id, action, rule, format,
country and categories — never a value)."""

from __future__ import annotations

import json
import logging

from gateway import metrics
from gateway.audit import AuditEvent, AuditStore
from gateway.audit.chain import fingerprint
from gateway.model import Decision, Protocol

log = logging.getLogger("gateway.engine")

# Why a payload was not inspected, as phi_gateway_flows_not_inspected_total counts it. The
# channels whose payload is never readable are counted by channel rather than by cause.
_CHANNEL_REASONS = {
    Protocol.TCP: "raw-tcp",
    Protocol.TLS_PASSTHROUGH: "tls-passthrough",
    Protocol.UDP: "udp",
}


def action_label(decision: Decision) -> str:
    verdict = decision.verdict
    return verdict.action.value if verdict.enforced else "monitor"


def not_inspected_reason(decision: Decision) -> str:
    """'' when the payload was inspected, else the bounded reason it was not."""
    inspection = decision.inspection
    if not inspection.error:
        return "media" if inspection.opaque else ""
    channel = _CHANNEL_REASONS.get(decision.message.protocol, "")
    if channel:
        return channel
    if inspection.limit:
        return "limit"
    if inspection.internal:
        return "internal-error"
    return "unreadable"


def observe(decision: Decision, counts: dict[str, int] | None = None) -> None:
    """The decision in the metrics: by action, rule, format, protocol and country; what could
    not be inspected, and why; the identifier categories found (``counts``: the inspection's
    category_counts(), when the caller has them)."""
    inspection = decision.inspection
    metrics.child(
        metrics.DECISIONS,
        action_label(decision),
        decision.verdict.rule,
        inspection.format.value,
        decision.message.protocol.value,
        decision.destination.verdict.country_label,
    ).inc()
    reason = not_inspected_reason(decision)
    if reason:
        metrics.NOT_INSPECTED.labels(reason).inc()
        if inspection.limit:
            metrics.LIMIT_EXCEEDED.labels(inspection.limit).inc()
    if counts is None:
        counts = inspection.category_counts()
    for category, count in counts.items():
        metrics.child(metrics.FINDINGS, category).inc(count)
    redaction = decision.redaction
    if redaction is not None:
        metrics.child(metrics.REDACTIONS, "redacted", inspection.format.value).inc()
        for category, count in redaction.counts.items():
            metrics.child(metrics.REDACTED_IDENTIFIERS, category).inc(count)
    elif decision.verdict.rule == "redaction-failed":
        metrics.child(metrics.REDACTIONS, "failed", inspection.format.value).inc()


class Recorder:
    """Writes the audit event of every decision whose verdict asks for one."""

    def __init__(
        self,
        audit: AuditStore,
        policy_version: str,
        fingerprint_key: bytes,
        geo_databases: list[dict[str, str]],
    ) -> None:
        self.audit = audit
        self.instance_id = audit.instance_id
        self.policy_version = policy_version
        self._fingerprint_key = fingerprint_key
        self._geo_databases = json.dumps(geo_databases, separators=(",", ":"))

    def record(self, decision: Decision, counts: dict[str, int] | None = None) -> None:
        if not decision.verdict.record:
            return
        inspection = decision.inspection
        if counts is None:
            counts = inspection.category_counts()
        body_fingerprint = fingerprint(self._fingerprint_key, decision.message.body)
        self.audit.append_made(
            lambda run_seq: AuditEvent.from_decision(
                decision,
                self.instance_id,
                self.policy_version,
                counts,
                payload_fingerprint=body_fingerprint,
                geo_databases=self._geo_databases,
                run_seq=run_seq,
            )
        )
        action = action_label(decision)
        metrics.child(metrics.AUDIT_EVENTS, action).inc()
        # A line per incident only with --verbose: under load the trail (and the SIEM
        # stream) carry them; a log line each would cost more than the inspection.
        log.info(
            "%s %s: rule=%s format=%s country=%s categories=%s",
            decision.incident_id,
            action,
            decision.verdict.rule,
            inspection.format.value,
            decision.destination.verdict.country_label,
            ",".join(counts) or "-",
        )
