"""The fingerprint lookup's upload: a multipart form read as a stream, its file fed straight
into the keyed fingerprint and never stored (not on disk, not whole in memory).

The small fields (the CSRF token) come before the file in the form, as browsers send fields in
the order of the page.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO

_CHUNK = 64 * 1024
_MAX_HEADERS = 8 * 1024
_MAX_FIELD = 1024
# The form's own bytes around the file: boundaries, part headers, the small fields.
OVERHEAD_BYTES = 64 * 1024


class UploadError(ValueError):
    """A malformed or oversized upload (the message names the problem, never the content)."""


@dataclass(slots=True)
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    size: int = 0
    has_file: bool = False


def _parameters(header: str) -> dict[str, str]:
    message = Message()
    message["content-type"] = header
    return {k.lower(): str(v) for k, v in message.get_params(failobj=[])[1:]}


def _boundary(content_type: str) -> bytes:
    value = _parameters(content_type).get("boundary", "")
    if not 1 <= len(value) <= 70:
        raise UploadError("the upload has no multipart boundary")
    return value.encode("latin-1")


def read_upload(
    stream: BinaryIO, length: int, content_type: str, key: bytes, max_file_bytes: int
) -> Upload:
    """Read ``length`` bytes of multipart/form-data: small fields by name, and the one file's
    keyed fingerprint (HMAC-SHA256 with ``key``, as the trail's payload fingerprints)."""
    if length < 0 or length > max_file_bytes + OVERHEAD_BYTES:
        raise UploadError(f"a file of at most {max_file_bytes:,} bytes")
    delimiter = b"\r\n--" + _boundary(content_type)
    upload = Upload()
    digest = hmac.new(key, digestmod=hashlib.sha256)
    remaining = length
    # The body starts with the first boundary line; a leading CRLF makes every boundary
    # look the same ("CRLF--boundary").
    buffer = b"\r\n"
    state = "preamble"
    name = ""
    is_file = False
    value = bytearray()
    while True:
        if remaining > 0 and (state != "body" or len(buffer) < _CHUNK * 2):
            chunk = stream.read(min(_CHUNK, remaining))
            if not chunk:
                raise UploadError("the upload ended early")
            remaining -= len(chunk)
            buffer += chunk
        if state == "preamble":
            at = buffer.find(delimiter)
            if at < 0:
                if remaining <= 0 or len(buffer) > _MAX_HEADERS:
                    raise UploadError("the upload is not a multipart form")
                continue
            buffer = buffer[at + len(delimiter) :]
            state = "after-boundary"
        elif state == "after-boundary":
            if len(buffer) < 2:
                if remaining <= 0:
                    raise UploadError("the upload ended early")
                continue
            if buffer.startswith(b"--"):
                break
            if not buffer.startswith(b"\r\n"):
                raise UploadError("the upload is not a multipart form")
            buffer = buffer[2:]
            state = "headers"
        elif state == "headers":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if remaining <= 0 or len(buffer) > _MAX_HEADERS:
                    raise UploadError("a part of the upload has no end to its headers")
                continue
            name, is_file = _part(buffer[:end].decode("latin-1"))
            if is_file:
                if upload.has_file:
                    raise UploadError("one file at a time")
                upload.has_file = True
            buffer = buffer[end + 4 :]
            value = bytearray()
            state = "body"
        else:  # body
            at = buffer.find(delimiter)
            if at < 0:
                if remaining <= 0:
                    raise UploadError("the upload ended early")
                keep = len(delimiter) - 1
                data, buffer = buffer[:-keep], buffer[-keep:]
            else:
                data, buffer = buffer[:at], buffer[at + len(delimiter) :]
            if is_file:
                upload.size += len(data)
                if upload.size > max_file_bytes:
                    raise UploadError(f"a file of at most {max_file_bytes:,} bytes")
                digest.update(data)
            elif len(value) + len(data) > _MAX_FIELD:
                raise UploadError("a form field is too long")
            else:
                value += data
            if at >= 0:
                if not is_file and name:
                    upload.fields.setdefault(name, value.decode("utf-8", "replace"))
                state = "after-boundary"
    if upload.has_file:
        upload.fingerprint = digest.hexdigest()
    return upload


def _part(headers: str) -> tuple[str, bool]:
    """The part's field name, and whether it is a file."""
    for line in headers.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            params = _parameters("form-data; " + value.strip().partition(";")[2])
            return params.get("name", ""), "filename" in params
    raise UploadError("a part of the upload has no Content-Disposition")
