"""Synthetic decision events (no patient data) for tests that read the trail back."""

from __future__ import annotations

import datetime as dt

from gateway.audit.event import AuditEvent

_COUNTER = iter(range(10**9))


def decision_event(client: str, country: str, day: str = "", body: bytes = b"") -> AuditEvent:
    n = next(_COUNTER)
    when = day or dt.datetime.now(dt.UTC).date().isoformat()
    return AuditEvent(
        incident_id=f"INC-{when.replace('-', '')}T000000Z-{n:08x}",
        time=f"{when}T00:00:{n % 60:02d}.{n:06d}Z",
        instance_id="gw-unit",
        policy_version="v1",
        client=client,
        host="vendor.example",
        ip="127.0.0.2",
        port=443,
        country=country,
        location="foreign",
        geo_evidence="[]",
        protocol="http/1",
        format="hl7v2",
        message_type="ADT^A01",
        categories='{"name": 1, "ssn": 1}',
        locations='["PID-5", "PID-19"]',
        action="block",
        rule="foreign-phi",
        reason="PHI to a foreign destination",
        error="",
        payload_fingerprint=body.hex(),
    )
