"""The redact action as the engine runs it, for tests: a body is inspected (decoded and parsed
once) and the inspection handed to the redactor."""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.inspector import Inspector
from gateway.model import Format, RedactionOutcome
from gateway.redactor import Redactor


class InspectingRedactor:
    def __init__(self, config: GatewayConfig, secret: bytes) -> None:
        self.inspector = Inspector(config.limits)
        self.redactor = Redactor(config.redaction, secret)

    def redact(self, body: bytes, content_encoding: str, fmt: Format) -> RedactionOutcome:
        """The redaction of ``body``, which must inspect as ``fmt`` (else the outcome is an
        error saying what it inspected as, so a test expecting a redaction fails)."""
        inspection = self.inspector.inspect(body, content_encoding)
        if inspection.format != fmt:
            return RedactionOutcome(error=f"inspected as {inspection.format.value}")
        return self.redactor.redact(inspection)
