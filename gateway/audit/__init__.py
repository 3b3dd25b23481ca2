"""Record stage: the audit trail of decisions (never payload values)."""

from gateway.audit.event import AuditEvent
from gateway.audit.store import AuditStore

__all__ = ["AuditEvent", "AuditStore"]
