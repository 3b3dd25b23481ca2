"""X12 in a CAQH CORE connectivity SOAP envelope (Phase II/III: ``COREEnvelopeRealTimeRequest``,
``COREEnvelopeBatchSubmission``, ...): how eligibility (270/271), claim status (276/277) and
batches of claims travel between a provider and a payer or clearinghouse in real time.

The envelope's ``Payload`` element carries the interchange inline (escaped or in CDATA) or
base64-encoded; it is read like any payload (an X12 interchange, or a zip or gzip of them).
The other envelope elements (PayloadID, SenderID, ...) are identifiers of the exchange, read
as free text all the same. A refusal speaks CORE: the matching response envelope with
PayloadType ``CoreEnvelopeError``, our own ErrorCode and the incident id in its ErrorMessage,
echoing only the exchange's ids. Redaction rewrites the interchange in the Payload (inline or
base64 as it came) and leaves every other byte of the envelope as sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, replace
from xml.sax.saxutils import escape

from gateway.containers.budget import Combined
from gateway.containers.encoded import decode_base64
from gateway.errors import XmlError
from gateway.formats.base import (
    BLOCK_STATUS,
    INCIDENT_HEADER,
    FormatHandler,
    Payload,
    Reader,
    RedactContext,
    RefusalRequest,
    with_document,
)
from gateway.formats.x12.envelope import X12Error, find, starts_like_x12
from gateway.formats.x12.redact import rewrite_verified
from gateway.formats.xmldoc import parse_xml, split_tag
from gateway.model import BlockResponse, Document, Format, Inspection, RedactionOutcome

CORE = Format("caqh-core")
SOAP_12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP_11 = "http://schemas.xmlsoap.org/soap/envelope/"
_SOAP = frozenset({SOAP_12, SOAP_11})
_CORE_NS_MARK = "caqh.org"
# What a refusal may echo from the request: the exchange's ids, in their own character set.
_ECHOED = ("PayloadID", "SenderID", "ReceiverID", "CORERuleVersion", "ProcessingMode")
_ECHO_SAFE = re.compile(r"^[A-Za-z0-9._:\-]{1,80}$")
ERROR_CODE = "PHIEgressRefused"
# The Payload element as sent, to splice the redacted interchange back in.
_PAYLOAD_ELEMENT = re.compile(
    rb"(<(?:[A-Za-z_][\w.\-]*:)?Payload(?:\s[^>]*)?>)(.*?)(</(?:[A-Za-z_][\w.\-]*:)?Payload\s*>)",
    re.DOTALL,
)
_CDATA = re.compile(rb"^\s*<!\[CDATA\[(.*)\]\]>\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class CoreParsed:
    """The envelope as sent, how its Payload carried the interchange, its SOAP version, and
    whether its own elements (left as sent by redaction) identify a patient."""

    data: bytes
    carried: str  # "inline" (escaped or in CDATA) or "base64"
    soap: str
    envelope_identifies: bool


class CoreEnvelope(FormatHandler):
    formats = frozenset({CORE})

    def sniff(self, payload: Payload) -> bool:
        if payload.first != b"<" or b"COREEnvelope" not in payload.data:
            return False
        root = payload.xml_root()
        return root is not None and _core_element(root) is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        request = _core_element(payload.xml())
        assert request is not None  # sniffed
        envelope: dict[str, str] = {}
        carried = ""
        combined = Combined(CORE)
        for child in request:
            local = split_tag(str(child.tag))[1]
            text = child.text or ""
            if local == "Payload":
                body, carried = _payload_bytes(text)
                if body:
                    combined.add("core/Payload", reader.scan(body, payload.depth + 1))
            else:
                envelope[local] = text.strip()
        ids = "\n".join(v for v in envelope.values() if v)
        own = Combined(CORE)  # the envelope's own elements, apart: redaction leaves them
        if ids:
            reader.free_text(ids, "core/envelope", payload.depth, own)
            combined.findings += own.findings
            combined.phi = combined.phi or own.phi
        soap = split_tag(str(payload.xml().tag))[0]
        reply = {f"core.{k}": v for k, v in envelope.items() if k in _ECHOED and _echo_safe(v)}
        reply["core.request"] = split_tag(str(request.tag))[1]
        reply["core.namespace"] = split_tag(str(request.tag))[0][:200]
        reply["core.soap"] = soap
        inspection = replace(combined.result(), reply=reply)
        if not carried:
            return inspection
        parsed = CoreParsed(payload.data, carried, soap, own.phi)
        return with_document(inspection, payload, parsed)

    def can_redact(self, fmt: Format) -> bool:
        return fmt == CORE

    def redact(self, document: Document, context: RedactContext) -> RedactionOutcome:
        parsed = document.parsed
        if not isinstance(parsed, CoreParsed) or document.sent_as[0]:
            return RedactionOutcome(error="redaction is not available for this envelope")
        if parsed.envelope_identifies:  # only the Payload is rewritten
            return RedactionOutcome(error="the CORE envelope itself identifies a patient")
        matches = list(_PAYLOAD_ELEMENT.finditer(parsed.data))
        if len(matches) != 1:
            return RedactionOutcome(error="the envelope does not hold exactly one Payload")
        match = matches[0]
        inner = _unwrap(match.group(2), parsed.carried)
        if inner is None:
            return RedactionOutcome(error="the Payload cannot be read back for redaction")
        text = inner.decode("utf-8", "strict")
        try:
            interchanges = find(text)
        except X12Error:
            return RedactionOutcome(error="the Payload is not a readable interchange")
        if not interchanges:
            return RedactionOutcome(error="the Payload holds no interchange")
        result = rewrite_verified(text, interchanges, context)
        if isinstance(result, str):
            return RedactionOutcome(error=result)
        content = _wrap(result.text.encode("utf-8"), parsed.carried)
        body = parsed.data[: match.start(2)] + content + parsed.data[match.end(2) :]
        return RedactionOutcome(
            body, _content_type(parsed.soap), dict(result.counts), tuple(sorted(result.locations))
        )

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        inspection = request.inspection
        if inspection.format != CORE:
            return None
        body = core_error(inspection.reply, request.incident_id, request.text)
        content_type = _content_type(inspection.reply.get("core.soap", SOAP_12))
        headers = ((INCIDENT_HEADER, request.incident_id),)
        return BlockResponse(BLOCK_STATUS, content_type, body.encode(), headers)


def core_error(reply: Mapping[str, str], incident_id: str, text: str) -> str:
    """The response envelope refusing the request: partners swapped, the exchange's ids
    echoed (only those in their own character set), the incident id in the message."""
    soap = reply.get("core.soap", SOAP_12)
    namespace = reply.get("core.namespace") or "http://www.caqh.org/SOAP/WSDL/CORERule2.2.0.xsd"
    name = reply.get("core.request", "COREEnvelopeRealTimeRequest")
    response = name.removesuffix("Request") + "Response"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = {
        "PayloadType": "CoreEnvelopeError",
        "ProcessingMode": reply.get("core.ProcessingMode", "RealTime"),
        "PayloadID": reply.get("core.PayloadID", ""),
        "TimeStamp": now,
        "SenderID": reply.get("core.ReceiverID", ""),
        "ReceiverID": reply.get("core.SenderID", ""),
        "CORERuleVersion": reply.get("core.CORERuleVersion", ""),
        "ErrorCode": ERROR_CODE,
        "ErrorMessage": f"{text} (incident {incident_id})",
    }
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{escape(soap)}"><soapenv:Body>'
        f'<cor:{response} xmlns:cor="{escape(namespace)}">{fields}</cor:{response}>'
        "</soapenv:Body></soapenv:Envelope>"
    )


def _core_element(root: ET.Element) -> ET.Element | None:
    """The CORE request element in a SOAP Body, or None."""
    namespace, local = split_tag(str(root.tag))
    if namespace not in _SOAP or local != "Envelope":
        return None
    for body in root:
        if split_tag(str(body.tag)) != (namespace, "Body"):
            continue
        for child in body:
            child_ns, child_local = split_tag(str(child.tag))
            if child_local.startswith("COREEnvelope") and _CORE_NS_MARK in child_ns:
                return child
    return None


def _payload_bytes(text: str) -> tuple[bytes, str]:
    """The Payload's content and how it was carried: X12 inline (the parser has undone the
    escapes and CDATA), else base64, else as it is (read like any payload)."""
    stripped = text.strip()
    if not stripped:
        return b"", ""
    if starts_like_x12(stripped):
        return text.encode("utf-8"), "inline"
    decoded = decode_base64(stripped)
    if decoded:
        return decoded, "base64"
    return text.encode("utf-8"), ""


def _unwrap(raw: bytes, carried: str) -> bytes | None:
    """The Payload element's content as the interchange's bytes."""
    if carried == "base64":
        return decode_base64(raw)
    cdata = _CDATA.match(raw)
    if cdata is not None:
        return cdata.group(1)
    if b"<" in raw:
        return None  # markup inside the Payload: not a payload we rewrite
    try:
        text = parse_xml(b"<p>" + raw + b"</p>").text  # the escapes undone
    except XmlError:
        return None
    return text.encode("utf-8") if text else None


def _wrap(content: bytes, carried: str) -> bytes:
    if carried == "base64":
        return base64.b64encode(content)
    return escape(content.decode("utf-8")).encode("utf-8")


def _echo_safe(value: str) -> bool:
    return _ECHO_SAFE.match(value) is not None


def _content_type(soap: str) -> str:
    """SOAP 1.1 travels as text/xml, SOAP 1.2 as application/soap+xml."""
    return "text/xml; charset=utf-8" if soap == SOAP_11 else "application/soap+xml"
