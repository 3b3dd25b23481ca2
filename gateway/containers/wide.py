"""UTF-16 and UTF-32 text, with or without a byte-order mark: re-encoded as UTF-8 and read
again (a receiver reads it as text; a sniffer looking for ASCII would not)."""

from __future__ import annotations

from gateway.errors import ContainerError

_UTF32 = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"))
_UTF16 = ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def wide_encoding(data: bytes) -> str | None:
    """The UTF-16/32 encoding of a payload (with or without a BOM), or None."""
    for bom, name in _UTF32 + _UTF16:
        if data.startswith(bom):
            return name
    head = data[:64]
    if len(head) < 8:
        return None
    if not any(head[1::4]) and not any(head[2::4]) and not any(head[3::4]) and any(head[0::4]):
        return "utf-32-le"
    if not any(head[0::4]) and not any(head[1::4]) and not any(head[2::4]) and any(head[3::4]):
        return "utf-32-be"
    if not any(head[1::2]):
        return "utf-16-le"
    if not any(head[0::2]):
        return "utf-16-be"
    return None


def byte_order_mark(data: bytes, encoding: str) -> bytes:
    """The BOM ``data`` starts with, in ``encoding``, or b""."""
    return next((b for b, name in _UTF32 + _UTF16 if name == encoding and data.startswith(b)), b"")


def decode_wide(data: bytes, encoding: str) -> bytes:
    bom = byte_order_mark(data, encoding)
    try:
        return data[len(bom) :].decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        raise ContainerError(f"malformed {encoding} text") from None
