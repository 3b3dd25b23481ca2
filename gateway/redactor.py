"""The redact action: the payload as inspection decoded and parsed it (``Inspection.document``:
decoded once) is rewritten to Safe Harbor and verified by its format's handler. A message that
cannot be redacted, or whose redacted form fails verification, comes back with ``error`` set:
the engine then blocks it (never forward a half-redacted message)."""

from __future__ import annotations

import logging
import os
import secrets

from gateway.collector import paused
from gateway.config import RedactionSettings
from gateway.errors import PayloadError
from gateway.formats import handler_for
from gateway.formats.base import RedactContext
from gateway.model import Inspection, RedactionOutcome
from gateway.phi.safe_harbor import DatePolicy, Pseudonymizer

log = logging.getLogger(__name__)


def site_secret(settings: RedactionSettings) -> tuple[bytes, bool]:
    """The pseudonym key from the environment, or a random one for this process only."""
    value = os.environ.get(settings.secret_env, "")
    if value:
        return value.encode(), True
    return secrets.token_bytes(32), False


class Redactor:
    def __init__(self, settings: RedactionSettings, secret: bytes) -> None:
        self.settings = settings
        self.pseudonymizer = Pseudonymizer(secret)
        self.shift = settings.dates == "shift"
        self.context = RedactContext(
            pseudonymizer=self.pseudonymizer,
            dates=self._dates,
            shift=self.shift,
            pseudonymize_ids=settings.identifiers == "pseudonym",
            redact_z_segments=settings.z_segments == "redact",
            keep=frozenset(settings.keep),
            dicom_characteristics=settings.dicom.retain_patient_characteristics,
            dicom_clean_descriptors=settings.dicom.clean_descriptors,
        )

    def _dates(self, patient_key: str) -> DatePolicy:
        if not self.shift:
            return DatePolicy()
        days = self.pseudonymizer.shift_days(patient_key, self.settings.max_shift_days)
        return DatePolicy(mode="shift", shift_days=days)

    def redact(self, inspection: Inspection) -> RedactionOutcome:
        with paused():  # see gateway/collector.py
            return self._redact(inspection)

    def _redact(self, inspection: Inspection) -> RedactionOutcome:
        fmt = inspection.format
        handler = handler_for(fmt)
        document = inspection.document
        if handler is None or document is None or not handler.can_redact(fmt):
            return RedactionOutcome(error=f"redaction is not available for {fmt.value} payloads")
        try:
            return handler.redact(document, self.context)
        except (PayloadError, ValueError, RecursionError) as exc:
            return RedactionOutcome(error=f"cannot redact: {type(exc).__name__}")
        except Exception as exc:
            # Only the type: an exception's text can quote the payload.
            log.error("redaction failed unexpectedly (%s); message blocked", type(exc).__name__)
            return RedactionOutcome(error=f"cannot redact: unexpected {type(exc).__name__}")
