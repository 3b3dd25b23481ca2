"""E-mail and other MIME documents (``message/rfc822``, ``.eml``, an MTOM/XOP package): every
part decoded by its own Content-Transfer-Encoding (base64, quoted-printable) and charset, and
handed back to the registry (a text body, an HTML body, an attached PDF, a nested message);
the headers people write (subject, sender and recipients) read as text. Never rewritten: with
PHI abroad under a redact policy an e-mail is blocked."""

from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesParser

from gateway.containers.budget import Combined
from gateway.errors import ContainerError
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.model import Format, Inspection
from gateway.phi.fields import safe_label, scan_fields

EMAIL = Format("email")
# Headers of a message, at its very start: at least two of these before the first blank line.
_KNOWN = frozenset(
    b"from to cc bcc subject date message-id mime-version received return-path reply-to "
    b"sender content-type content-transfer-encoding x-mailer delivered-to".split()
)
_HEADER_LINE = re.compile(rb"([A-Za-z][A-Za-z0-9-]{0,60}):[ \t]")
_PEOPLE = ("subject", "from", "to", "cc", "bcc", "reply-to", "sender", "comments", "keywords")


def _looks_like_message(data: bytes) -> bool:
    head = data[:8192]
    end = head.find(b"\n\n")
    crlf = head.find(b"\r\n\r\n")
    if crlf != -1 and (end == -1 or crlf < end):
        end = crlf
    if end == -1:
        return False
    known = 0
    for line in head[:end].splitlines():
        if line[:1] in (b" ", b"\t"):
            continue  # a folded header continues
        match = _HEADER_LINE.match(line)
        if match is None:
            return False  # a line that is no header: not a message
        known += match.group(1).lower() in _KNOWN
    return known >= 2


class Email(FormatHandler):
    formats = frozenset({EMAIL})

    def sniff(self, payload: Payload) -> bool:
        return _looks_like_message(payload.data)

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        try:
            return self._read(payload, reader)
        except (LookupError, ValueError, UnicodeError, TypeError, IndexError):
            # A header or part the email package cannot decode (an unknown charset in an
            # RFC 2231 file name, a broken encoded word): unreadable, so refused abroad.
            raise ContainerError("malformed MIME message") from None

    def _read(self, payload: Payload, reader: Reader) -> Inspection:
        message = BytesParser(policy=policy.compat32).parsebytes(payload.data)
        combined = Combined(EMAIL)
        headers = [(k, str(v)) for k, v in message.items() if k.lower() in _PEOPLE]
        combined.add_fields(scan_fields(headers, "email.header"))
        reader.free_text(
            "\n".join(f"{k}: {v}" for k, v in headers), "email.header", payload.depth, combined
        )
        parts = [p for p in message.walk() if not p.is_multipart()]
        if len(parts) > 1000:
            raise ContainerError(
                "message has more parts than max_archive_members", "max_archive_members"
            )
        for number, part in enumerate(parts):
            body = _decoded(part)
            if not body:
                continue
            name = part.get_filename() or part.get_content_type()
            where = f"email.part[{number}:{safe_label(name, keep='._-/')}]"
            combined.add(where, reader.scan(body, payload.depth + 1))
            if part.get_filename():  # the name of a file can name the patient
                reader.free_text(
                    part.get_filename() or "", f"{where}.filename", payload.depth, combined
                )
        return combined.result()


def _decoded(part: Message) -> bytes:
    """The part's bytes with its transfer encoding undone; text re-encoded as UTF-8 from the
    charset it declares (the registry's readers take UTF-8 or Latin-1)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        inner = part.get_payload()
        return str(inner).encode("utf-8") if inner else b""
    if part.get_content_maintype() == "text":
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace").encode("utf-8")
        except LookupError:  # an unknown charset: the bytes as they are
            return payload
    return payload
