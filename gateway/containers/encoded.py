"""Base64 (standard or URL-safe, padded or not): a whole body, or a run inside text or JSON.
The decoded bytes are handed back to the registry; random bytes (a hash, a key) are not a
hidden document."""

from __future__ import annotations

import base64
import binascii
import re

from gateway.containers.budget import Budget, Combined, Scan
from gateway.model import Format, Inspection

_BASE64_WHOLE = re.compile(rb"^[A-Za-z0-9+/\-_\r\n]+={0,2}\s*$")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/\-_]{48,}={0,2}")


def looks_base64(data: bytes) -> bool:
    return len(data) >= 48 and _BASE64_WHOLE.match(data) is not None and b"=" not in data[:-3]


def decode_base64(text: str | bytes) -> bytes | None:
    """Standard or URL-safe alphabet, padding optional; None when it is not base64."""
    raw = text.encode("ascii", "ignore") if isinstance(text, str) else text
    raw = b"".join(raw.split())
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None


def unpack_base64(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection | None:
    """The decoded content's inspection, or None when it decodes to nothing recognisable."""
    decoded = decode_base64(data)
    if decoded is None or not decoded:
        return None
    budget.spend(len(decoded))
    inner = scan(decoded, depth + 1)
    if inner.format in (Format.BINARY, Format.EMPTY) and not inner.findings and not inner.error:
        return None  # random bytes (a hash, a key): not a hidden document
    combined = Combined(Format.TEXT)
    combined.add("base64", inner)
    return combined.result()
