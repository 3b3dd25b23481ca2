"""Every exception the gateway raises on purpose, in one hierarchy (after httpx's
``_exceptions.py``). A caller catches the branch it can handle; nothing here ever carries
payload content: reasons are fixed sentences, limits are config key names.

    GatewayError
    ├── ConfigError          a config file or value is invalid (the message names the key)
    ├── StartError           the gateway cannot run with this config (geo database, audit store)
    ├── GeoError
    │   ├── GeoDatabaseError     a MaxMind-format database is missing or unreadable
    │   ├── RangesError          a provider-ranges file is missing or malformed
    │   └── ProviderDataError    a cloud provider's published list cannot be read
    ├── AuditError           the audit store cannot be opened, written or read
    │   └── QueryError           a report or query period/filter is invalid (also a ValueError)
    ├── ReportFailed         a report could not be built
    │   └── ReportTimeout        ... in the time allowed
    ├── ReportBusy           as many reports as allowed are being built: retry later
    └── PayloadError         a payload (or one layer of it) cannot be read: ``reason`` says why,
        │                    ``limit`` names the config limit that fired, if one did.
        │                    Inspection turns it into an Inspection with ``error`` set: the
        │                    policy then fails closed toward foreign destinations.
        ├── DecodeError          a Content-Encoding cannot be undone
        ├── ContainerError       an archive, multipart body, base64 or wide text cannot be
        │                        unpacked, or a nesting, size, member or time limit fired
        ├── XmlError             unreadable or unsafe XML (entity declarations)
        ├── Hl7Error             not a readable HL7 v2 message
        ├── FhirError            a FHIR document the walker refuses
        ├── DicomError           a DICOM dataset or association that cannot be read
        └── RedactionError       a payload cannot be redacted safely (the message is blocked)
            └── Hl7RedactionError
"""

from __future__ import annotations

from collections.abc import Iterable


class GatewayError(Exception):
    """Base of every exception the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A config file that cannot be used. ``problems`` lists (key path, what is wrong)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid configuration"]
        lines += [f"  {key}: {problem}" for key, problem in problems]
        super().__init__("\n".join(lines))


class StartError(GatewayError):
    """The gateway cannot run with this config (geo database or audit store unusable)."""


class GeoError(GatewayError):
    """Geolocation data cannot be used."""


class GeoDatabaseError(GeoError):
    """A MaxMind-format database is missing, unreadable or of the wrong type."""


class RangesError(GeoError):
    """A provider-ranges file is missing or malformed."""


class ProviderDataError(GeoError):
    """A provider file or region table that cannot be used; ``unmapped`` lists regions with no
    row in the region → country table."""

    def __init__(self, message: str, unmapped: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.unmapped = sorted(set(unmapped))


class AuditError(GatewayError):
    """The audit store cannot be opened, written or read."""


class QueryError(AuditError, ValueError):
    """A filter that cannot be used (bad date, unknown action); the message says which."""


class ReportFailed(GatewayError):
    """The report child wrote no report; the message says why (no values from the trail)."""


class ReportTimeout(ReportFailed):
    """The report child ran past ``report.api_timeout_seconds`` and was killed."""


class ReportBusy(GatewayError):
    """``report.api_max_concurrent`` reports are being built already."""


class PayloadError(GatewayError):
    """A payload cannot be read. ``reason`` is a fixed sentence (never payload content);
    ``limit`` names the config limit that stopped reading, or is empty."""

    def __init__(self, reason: str, limit: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


class DecodeError(PayloadError):
    """A Content-Encoding could not be undone (unknown, corrupt, or over a limit)."""


class ContainerError(PayloadError):
    """A container (archive, multipart, base64, wide text) cannot be unpacked, or a
    nesting, size, member or time limit fired while unpacking it."""


class XmlError(PayloadError):
    """Unreadable or unsafe XML."""


class Hl7Error(PayloadError):
    """Not a readable HL7 v2 message."""


class FhirError(PayloadError):
    """A FHIR document the walker refuses."""


class DicomError(PayloadError):
    """A DICOM dataset (or a DIMSE association) the reader refuses: truncated, lying
    lengths, nested or sized past a limit."""


class RedactionError(PayloadError):
    """A payload cannot be redacted safely: the message is blocked instead."""


class Hl7RedactionError(RedactionError):
    """An HL7 v2 message cannot be redacted safely."""
