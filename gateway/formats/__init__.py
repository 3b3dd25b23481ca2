"""Payload formats as plug-ins: one module or package per format, one line each below.

The inspector sniffs every layer of a payload against ``FORMATS`` in this order (the first
handler whose ``sniff`` says yes inspects it; the containers stage is asked after every
format but the fallbacks: plain text, then protobuf, come last); the redactor and ``enforce``
look up the handler of an inspection's format here. Adding a format is writing its handler (see
``base.py`` and docs/architecture.md) and adding one line. The order matters where formats
share a first byte: a FHIR resource before any JSON, FHIR/HL7/CDA XML before any XML.
"""

from __future__ import annotations

from gateway.formats.base import FormatHandler
from gateway.formats.cda import Cda
from gateway.formats.dicom import DicomFormat
from gateway.formats.dicom.json_model import DicomJson
from gateway.formats.dicom.stow import DicomStow
from gateway.formats.email import Email
from gateway.formats.fhir import FhirJson, FhirNdjson, FhirXml
from gateway.formats.generic_json import GenericJson
from gateway.formats.generic_xml import GenericXml
from gateway.formats.grpc import Grpc
from gateway.formats.hl7v2 import Hl7v2Er7, Hl7v2Xml
from gateway.formats.markup import Html, Rtf
from gateway.formats.media import Media
from gateway.formats.office import Office
from gateway.formats.patch import Patch
from gateway.formats.pdf import Pdf
from gateway.formats.protobuf import Protobuf
from gateway.formats.text import Text
from gateway.formats.x12 import X12Format
from gateway.formats.x12.core import CoreEnvelope
from gateway.formats.xds import Xds
from gateway.model import Format

FORMATS: tuple[FormatHandler, ...] = (
    DicomFormat(),  # binary: sniffed on the bytes as sent, before the UTF-16/32 stage
    Grpc(),  # binary: length-prefixed messages start with zeros, before the UTF-16/32 stage
    DicomStow(),  # STOW-RS multipart of DICOM instances: before the containers stage
    Rtf(),  # "{\rtf": before JSON, which would call it malformed
    Hl7v2Er7(),
    X12Format(),  # "ISA*" / "ST*": never JSON or XML, before plain text reads it
    Patch(),  # JSON Patch and FHIRPath Patch: before FHIR and JSON, which read no operations
    DicomJson(),  # the DICOM JSON model: before JSON, which would not know a PN from a code
    FhirJson(),
    FhirNdjson(),
    GenericJson(),
    FhirXml(),
    Hl7v2Xml(),
    Cda(),
    CoreEnvelope(),  # X12 in a CAQH CORE SOAP envelope: before XML, which would not answer in CORE
    Xds(),  # ebRIM metadata in SOAP: before XML, which reads it without knowing the patient
    Html(),  # before XML, which would call an HTML5 page malformed
    GenericXml(),
    Office(),  # a zip that is a document: before the containers stage unpacks it
    Email(),
    Pdf(),
    Media(),
    Text(),
    Protobuf(),  # a binary body no format knows may be protobuf: after plain text
)

_BY_FORMAT: dict[Format, FormatHandler] = {}
for _handler in FORMATS:
    for _format in _handler.formats:
        if _format in _BY_FORMAT:
            raise RuntimeError(f"two format handlers claim {_format.value}")
        _BY_FORMAT[_format] = _handler


def handler_for(fmt: Format) -> FormatHandler | None:
    """The handler whose inspections carry ``fmt`` (None for what the stages report:
    containers, binary, empty, skipped)."""
    return _BY_FORMAT.get(fmt)


def known_formats() -> frozenset[Format]:
    return frozenset(_BY_FORMAT)
