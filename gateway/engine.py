"""The pipeline behind every front end: locate → inspect → decide → record.

The mitmproxy addon (and later other front ends) hand in plain ``Message`` values and carry the
resulting ``Decision`` out. A ``Gateway`` is built from one validated config; a reload builds a
new one and swaps it in only when it is complete, so a bad reload keeps the last good policy.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import replace

from gateway import entry_expiry, metrics
from gateway.audit import AuditStore
from gateway.audit.event import new_incident_id
from gateway.audit.factory import fingerprint_key, location, open_store
from gateway.config import GatewayConfig, Mode
from gateway.enforce import block_response, warm_up
from gateway.envelope import inspect_envelope
from gateway.errors import AuditError, GeoDatabaseError, StartError
from gateway.geo import Locator, Resolver
from gateway.inspector import Inspector
from gateway.model import (
    Action,
    BlockResponse,
    Decision,
    Destination,
    Format,
    Inspection,
    Location,
    Message,
    Redaction,
    RedactionOutcome,
    Verdict,
)
from gateway.policy import decide, needs_inspection
from gateway.record import Recorder, observe
from gateway.redactor import Redactor, site_secret
from gateway.workers import DocumentWorkers


def _age_seconds(built: float) -> float:
    return time.time() - built


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        locator: Locator,
        audit: AuditStore,
        workers: DocumentWorkers | None = None,
    ) -> None:
        self.config = config
        self.policy_version = config.version
        self.locator = locator
        self.resolver = Resolver(config.geo.dns_cache_seconds)
        # Documents (PDF) are read by worker processes, never in the proxy's own.
        self.workers = workers or DocumentWorkers(
            config.limits.document_workers, config.limits.max_document_memory_bytes
        )
        self.inspector = Inspector(config.limits, workers=self.workers, ocr=config.ocr)
        secret, self.secret_from_environment = site_secret(config.redaction)
        self.redactor = Redactor(config.redaction, secret)
        self.audit = audit
        self.instance_id = audit.instance_id
        self.audit_key_from_environment = audit.settings.secret_from_environment
        self.recorder = Recorder(
            audit,
            self.policy_version,
            fingerprint_key(audit.settings.secret),
            [
                {"name": db.name, "build": db.build_time.date().isoformat()}
                for db in locator.databases
            ],
        )

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig,
        audit: AuditStore | None = None,
        workers: DocumentWorkers | None = None,
    ) -> Gateway:
        """``audit`` and ``workers``: the running gateway's, kept across a reload where the
        config still describes them."""
        try:
            locator = Locator.from_config(config.jurisdiction.allowed_countries, config.geo)
        except GeoDatabaseError as exc:
            raise StartError(str(exc)) from None
        if audit is None or audit.location != location(config.audit):
            try:
                audit = open_store(config.audit)
                audit.start()
            except AuditError as exc:
                raise StartError(str(exc)) from None
        warm_up()
        limits = config.limits
        if workers is None or (workers.size, workers.memory_bytes) != (
            limits.document_workers,
            limits.max_document_memory_bytes,
        ):
            workers = DocumentWorkers(limits.document_workers, limits.max_document_memory_bytes)
            workers.start()
        return cls(config, locator, audit, workers)

    def publish_metrics(self) -> None:
        metrics.POLICY.info({"version": self.policy_version, "mode": self.config.policy.mode.value})
        entry_expiry.publish(self.config.policy)
        for db in self.locator.databases:
            metrics.GEO_DATABASE_BUILD.labels(db.name).set(db.build_time.timestamp())
        for source in self.locator.sources():
            built = source.built
            gauge = metrics.GEO_SOURCE_AGE.labels(source.name)
            if built is None:
                gauge.set(float("inf"))  # undated data: as stale as it gets
            else:
                gauge.set_function(functools.partial(_age_seconds, built.timestamp()))

    # -- locate -------------------------------------------------------------------------------
    def judge(self, host: str, port: int, addresses: Iterable[str]) -> Destination:
        judged = tuple(self.locator.locate(ip) for ip in dict.fromkeys(addresses))
        for j in judged:
            metrics.child(metrics.GEO_LOOKUPS, j.location.value, j.reason).inc()
            if j.disagreement:
                metrics.child(metrics.GEO_DISAGREEMENTS, j.disagreement).inc()
        if not judged:
            metrics.GEO_LOOKUPS.labels(Location.UNKNOWN.value, "resolution-failed").inc()
        return Destination(host, port, judged)

    # -- inspect, decide, record ----------------------------------------------------------------
    def evaluate(
        self, message: Message, destination: Destination, preset: Inspection | None = None
    ) -> Decision:
        """Inspect (unless the destination makes it pointless), decide, redact where the
        verdict says so, and record.

        ``preset`` is the front end's own finding when it cannot hand over a readable payload
        (raw TCP, a body too large to buffer); it is decided like any unreadable payload,
        which fails closed abroad.
        """
        if not needs_inspection(destination, self.config):
            inspection = Inspection(Format.SKIPPED)
        elif preset is not None:
            inspection = preset
        else:
            inspection = self.inspector.inspect(message.body, message.content_encoding)
            inspection = with_envelope(inspection, message)
            metrics.child(metrics.INSPECTION_SECONDS, inspection.format.value).observe(
                inspection.seconds
            )
        verdict = decide(destination, inspection, self.config, message.client)
        redaction = None
        if verdict.action is Action.REDACT:
            verdict, redaction = self._redact(inspection, verdict)
        if inspection.document is not None:
            inspection = inspection.with_document(None)  # the parse is done with
        if (
            verdict.record
            and _forwards(verdict)
            and self.config.policy.mode is not Mode.MONITOR
            and not self.audit.accepting()
        ):
            verdict = UNRECORDABLE
        incident_id = new_incident_id() if verdict.record else ""
        decision = Decision(
            incident_id, message, destination, inspection, verdict, time.time(), redaction
        )
        counts = inspection.category_counts()
        observe(decision, counts)
        self.recorder.record(decision, counts)
        return decision

    def _redact(self, inspection: Inspection, verdict: Verdict) -> tuple[Verdict, Redaction | None]:
        """Redact and verify; a failure turns the verdict into a block of its own reason."""
        if inspection.envelope_phi:
            outcome = RedactionOutcome(error="identifiers in the URL or headers cannot be redacted")
        else:
            outcome = self.redactor.redact(inspection)
        if outcome.error:
            return Verdict(
                Action.BLOCK,
                "redaction-failed",
                f"{verdict.reason}; redaction refused: {outcome.error}",
                enforced=verdict.enforced,
                record=True,
            ), None
        return verdict, Redaction(
            outcome.counts, outcome.locations, outcome.body, outcome.content_type
        )

    def refusal(self, decision: Decision) -> BlockResponse:
        """The answer refusing a message, in the sender's protocol (``act`` says when)."""
        message = decision.message
        return block_response(
            decision.verdict,
            decision.inspection,
            decision.incident_id,
            content_type=message.content_type,
            accept=message.accept,
        )

    def close(self) -> None:
        self.audit.close()
        self.locator.close()
        self.workers.close()


# While the audit store can neither write nor hold another event, PHI that would go abroad
# with only its record as safeguard (an allow-list or redact-list transfer, a redaction) is
# refused instead: no unrecorded PHI. Foreign blocks go on (they stop PHI); domestic traffic
# and monitor mode are untouched.
UNRECORDABLE = Verdict(
    Action.BLOCK,
    "unrecordable",
    "this transfer cannot be recorded (neither the audit store nor its spool takes events); "
    "refused until recording works again",
    enforced=True,
    record=True,
)


def _forwards(verdict: Verdict) -> bool:
    return verdict.enforced and verdict.action in (Action.ALLOW, Action.REDACT)


def with_envelope(inspection: Inspection, message: Message) -> Inspection:
    """The body's inspection plus what the URL and headers hold."""
    if not (message.query or message.headers or message.trailers or "-" in message.path):
        return inspection
    findings, phi = inspect_envelope(message.path, message.query, message.headers, message.trailers)
    if not findings:
        return inspection
    return replace(
        inspection,
        findings=inspection.findings + tuple(findings),
        contains_phi=inspection.contains_phi or phi,
        envelope_phi=phi,
    )
