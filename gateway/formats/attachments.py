"""Documents carried inside another format's document (a FHIR ``Binary`` or ``Attachment``'s
data, a CDA ``nonXMLBody``): each is decoded and read by its own format through the registry,
and what it holds is the carrier's too. A de-identified PDF in a DocumentReference may go
abroad; one with a name and a record number may not.

An attachment that is not base64 where base64 is required cannot be read (an error: blocked
abroad); one whose bytes no format knows is content nobody can see into (``opaque``: decided by
``policy.unreadable_media``, like an image)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.containers.budget import Combined
from gateway.containers.encoded import decode_base64
from gateway.formats.base import Reader
from gateway.model import Format, Inspection

UNKNOWN_ATTACHMENT = "attachment of unknown format"


def read_attachment(data: bytes, reader: Reader, depth: int) -> Inspection:
    """One attachment's bytes, read by the registry."""
    reader.budget.spend(len(data))
    inner = reader.scan(data, depth + 1)
    if inner.format is Format.BINARY and not inner.error and not inner.opaque:
        return Inspection(Format.BINARY, findings=inner.findings, opaque=UNKNOWN_ATTACHMENT)
    if inner.error and not inner.limit and not inner.internal and data.lstrip()[:1] in _MARKUP:
        # A note that only starts like JSON or XML ("[Addendum] ...", "<3 days ago") is
        # prose: read by the free-text detectors, as a string in a document is.
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return inner
        prose = Combined(Format.TEXT)
        reader.free_text(text, "text", depth + 1, prose)
        return prose.result()
    return inner


_MARKUP = (b"<", b"{", b"[")


def with_attachments(
    base: Inspection,
    attachments: Sequence[tuple[str, str | bytes]],
    reader: Reader,
    depth: int,
) -> Inspection:
    """``base`` (the carrier's own findings, its parse kept for the redactor) with what each
    attachment holds: (location, base64 text or the bytes themselves). A bulk export carries
    thousands: they are bounded by the payload's decoded bytes and time, not by count."""
    if not attachments:
        return base
    combined = Combined(base.format, list(base.findings), base.contains_phi)
    combined.error, combined.limit, combined.opaque = base.error, base.limit, base.opaque
    combined.first = base
    for where, content in attachments:
        data = decode_base64(content) if isinstance(content, str) else content
        if data is None:
            combined.add(where, Inspection(Format.BINARY, error="attachment data is not base64"))
        else:
            combined.add(where, read_attachment(data, reader, depth))
    return combined.result().with_document(base.document)
