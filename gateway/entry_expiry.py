"""Allow/deny-list entries that expire: the warnings ahead of time, the metrics, and the
expiry's record in the trail.

An entry stops applying at its ``expires`` moment in every process by itself
(``PolicyRule.mismatch`` reads the clock). What this module adds is telling people: notices
for check-config and the start banner, the gauges behind the PhiPolicyEntryExpiring alert,
and ``ExpiryWatch``, which records each expiry as an audit event (kind ``entry-expiry``) at
the moment it happens, or at the next start when the gateway was down then. It runs where the
admin API does (one gateway, or the supervisor of ``--workers``), so an expiry is recorded
once; the event's ``subject`` names the entry, so a restart does not record it again.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time

import orjson

from gateway import metrics
from gateway.audit.backend import AuditBackend
from gateway.audit.event import AuditEvent, trail_event
from gateway.audit.store import AuditStore
from gateway.config import Policy, PolicyRule

log = logging.getLogger("phi_gateway")
KIND = "entry-expiry"
_DAY = 86400.0
# Wakes at least this often, so a clock that jumps forward is noticed.
_MAX_SLEEP = 60.0


def iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat().replace("+00:00", "Z")


def describe(key: str, rule: PolicyRule) -> str:
    """``allow_destinations[0] (ai.vendor.example, ticket CHG-1, owner ciso)``: no reason."""
    facts = [rule.target]
    if rule.ticket:
        facts.append(f"ticket {rule.ticket}")
    if rule.owner:
        facts.append(f"owner {rule.owner}")
    if rule.clients:
        facts.append(f"clients {', '.join(rule.clients)}")
    return f"{key} ({', '.join(facts)})"


def notices(policy: Policy, now: float) -> list[str]:
    """Entries expired (no longer applying) and entries expiring within
    ``policy.expiry_warning_days``, soonest first: for check-config and the start banner."""
    lines: list[tuple[float, str]] = []
    horizon = now + policy.expiry_warning_days * _DAY
    for key, rule in policy.rules():
        at = rule.expires_at
        if at is None or at > horizon:
            continue
        if at <= now:
            text = f"{describe(key, rule)} expired at {iso(at)} and no longer applies"
        else:
            text = f"{describe(key, rule)} expires at {iso(at)} (in {_span(at - now)})"
        lines.append((at, text))
    return [text for _, text in sorted(lines)]


def _span(seconds: float) -> str:
    if seconds >= _DAY:
        return f"{seconds / _DAY:.0f} day(s)"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} hour(s)"
    return f"{max(1, round(seconds / 60))} minute(s)"


def counts(policy: Policy, now: float) -> dict[str, int]:
    """How many entries expire soon (within the warning days) and how many have expired."""
    horizon = now + policy.expiry_warning_days * _DAY
    found = {"soon": 0, "expired": 0}
    for _key, rule in policy.rules():
        at = rule.expires_at
        if at is not None and at <= now:
            found["expired"] += 1
        elif at is not None and at <= horizon:
            found["soon"] += 1
    return found


def publish(policy: Policy) -> None:
    """The gauges of the policy in force (replacing the last policy's)."""
    metrics.POLICY_ENTRY_EXPIRY.clear()
    for key, rule in policy.rules():
        if rule.expires_at is not None:
            metrics.POLICY_ENTRY_EXPIRY.labels(key).set(rule.expires_at)
    for state in ("soon", "expired"):
        metrics.POLICY_ENTRIES_EXPIRING.labels(state).set_function(
            functools.partial(_count_now, policy, state)
        )


def _count_now(policy: Policy, state: str) -> float:
    return counts(policy, time.time())[state]


def subject(key: str, rule: PolicyRule) -> str:
    """What names one entry's expiry in the trail: its list, destination, clients and moment
    (not its index, which an edit above it changes)."""
    assert rule.expires_at is not None
    clients = ",".join(rule.clients)
    return f"entry:{key.partition('[')[0]}:{rule.target}:{clients}:{iso(rule.expires_at)}"


def expiry_event(
    *, instance_id: str, policy_version: str, key: str, rule: PolicyRule
) -> AuditEvent:
    assert rule.expires_at is not None
    listed = "deny-list" if key.startswith("deny") else f"{rule.action.value}-list"
    detail = {
        "entry": key,
        "destination": rule.target,
        "list": key.partition("[")[0],
        "action": "block" if key.startswith("deny") else rule.action.value,
        "expires": iso(rule.expires_at),
        "ticket": rule.ticket,
        "owner": rule.owner,
        "clients": list(rule.clients),
        "reason": rule.reason,
    }
    return trail_event(
        prefix="ENT",
        instance_id=instance_id,
        policy_version=policy_version,
        host=rule.host or str(rule.cidr),
        port=rule.port or 0,
        action="entry-expired",
        rule=listed,
        reason=f"{describe(key, rule)} expired at {iso(rule.expires_at)}: it no longer applies",
        kind=KIND,
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
        subject=subject(key, rule),
    )


class ExpiryWatch:
    """Records every entry's expiry in the trail once, at the moment it expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._policy: Policy | None = None
        self._store: AuditStore | None = None
        self._version = ""
        self._recorded: set[str] = set()
        self._thread: threading.Thread | None = None

    def apply(self, policy: Policy, store: AuditStore, policy_version: str) -> None:
        """Watch this policy's entries (at start and after every reload)."""
        with self._lock:
            self._policy, self._store, self._version = policy, store, policy_version
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="entry-expiry", daemon=True)
            self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            with self._lock:
                policy, store, version = self._policy, self._store, self._version
            now = time.time()
            wait = _MAX_SLEEP
            if policy is not None and store is not None:
                try:
                    self.record_due(policy, store, version, now)
                except Exception:  # a trail that cannot be read now: tried again shortly
                    log.warning("entry expiry: could not read the audit trail", exc_info=True)
                    wait = 5.0
                upcoming = [
                    at
                    for _, rule in policy.rules()
                    if (at := rule.expires_at) is not None and at > now
                ]
                if upcoming:
                    wait = min(wait, max(0.0, min(upcoming) - time.time()))
            self._wake.wait(wait)

    def record_due(self, policy: Policy, store: AuditStore, version: str, now: float) -> int:
        """Record the expiries that have happened and that the trail lacks; how many."""
        due = [(key, rule) for key, rule in policy.rules() if rule.expired(now)]
        fresh = [(key, rule) for key, rule in due if subject(key, rule) not in self._recorded]
        if not fresh:
            return 0
        in_trail = _recorded_in(store.backend, [subject(k, r) for k, r in fresh])
        recorded = 0
        for key, rule in fresh:
            name = subject(key, rule)
            if name not in in_trail:
                store.append(
                    expiry_event(
                        instance_id=store.instance_id, policy_version=version, key=key, rule=rule
                    )
                )
                log.warning("%s expired: it no longer applies", describe(key, rule))
                recorded += 1
            self._recorded.add(name)
        return recorded


def _recorded_in(backend: AuditBackend, subjects: list[str]) -> set[str]:
    marks = ", ".join("?" for _ in subjects)
    rows = backend.fetch_once(
        f"SELECT subject FROM audit_events WHERE kind = ? AND subject IN ({marks})",  # noqa: S608
        (KIND, *subjects),
    )
    return {str(row["subject"]) for row in rows}
