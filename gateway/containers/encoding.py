"""Undo HTTP Content-Encoding ourselves, with size and ratio limits.

mitmproxy's own decoder reads only the first gzip member, rejects stacked encodings and has no
cap on output size; a gateway that trusted it could be walked around or blown up.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import brotli
from backports import zstd

from gateway.errors import DecodeError


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_output_bytes: int
    max_ratio: int
    # Ratios only matter for outputs large enough to hurt; tiny bodies compress absurdly well.
    ratio_floor_bytes: int = 1024 * 1024


class _Budget:
    def __init__(self, limits: DecodeLimits, input_size: int) -> None:
        self.limits = limits
        self.input_size = max(input_size, 1)

    @property
    def remaining(self) -> int:
        return self.limits.max_output_bytes

    def check(self, produced: int) -> None:
        if produced > self.limits.max_output_bytes:
            raise DecodeError(
                "decompressed body exceeds max_decompressed_bytes", "max_decompressed_bytes"
            )
        if (
            produced > self.limits.ratio_floor_bytes
            and produced / self.input_size > self.limits.max_ratio
        ):
            raise DecodeError(
                "decompression ratio exceeds max_decompression_ratio", "max_decompression_ratio"
            )


def _zlib_members(data: bytes, wbits: int, budget: _Budget, name: str) -> bytes:
    """Decode every concatenated member (gzip allows many; each one must be read)."""
    out = bytearray()
    while True:
        d = zlib.decompressobj(wbits)
        try:
            chunk = d.decompress(data, budget.remaining + 1 - len(out))
            out += chunk
            budget.check(len(out))
            while d.unconsumed_tail and not d.eof:
                out += d.decompress(d.unconsumed_tail, budget.remaining + 1 - len(out))
                budget.check(len(out))
        except zlib.error as exc:
            raise DecodeError(f"corrupt {name} data: {exc}") from None
        if not d.eof:
            raise DecodeError(f"truncated {name} data")
        data = d.unused_data
        if not data.strip(b"\0"):
            return bytes(out)


def _gzip(data: bytes, budget: _Budget) -> bytes:
    return _zlib_members(data, 16 + zlib.MAX_WBITS, budget, "gzip")


def _deflate(data: bytes, budget: _Budget) -> bytes:
    # "deflate" is zlib-wrapped by the RFC, but many clients send raw deflate: accept both.
    if len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0:
        return _zlib_members(data, zlib.MAX_WBITS, budget, "deflate")
    return _zlib_members(data, -zlib.MAX_WBITS, budget, "deflate")


def _brotli(data: bytes, budget: _Budget) -> bytes:
    d = brotli.Decompressor()
    try:
        out = bytearray(d.process(data, output_buffer_limit=budget.remaining + 1))
        budget.check(len(out))
        while not d.is_finished() and not d.can_accept_more_data():
            out += d.process(b"", output_buffer_limit=budget.remaining + 1 - len(out))
            budget.check(len(out))
    except brotli.error as exc:
        raise DecodeError(f"corrupt br data: {exc}") from None
    if not d.is_finished():
        raise DecodeError("truncated br data")
    return bytes(out)


def _zstd(data: bytes, budget: _Budget) -> bytes:
    out = bytearray()
    while data:
        d = zstd.ZstdDecompressor()
        try:
            out += d.decompress(data, budget.remaining + 1 - len(out))
            budget.check(len(out))
            while not d.eof and not d.needs_input:
                out += d.decompress(b"", budget.remaining + 1 - len(out))
                budget.check(len(out))
        except zstd.ZstdError as exc:
            raise DecodeError(f"corrupt zstd data: {exc}") from None
        if not d.eof:
            raise DecodeError("truncated zstd data")
        data = d.unused_data
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes, _Budget], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decode_content(body: bytes, content_encoding: str, limits: DecodeLimits) -> bytes:
    """Undo every coding listed in Content-Encoding (applied in order, so undone in reverse).

    Unknown codings raise DecodeError: we never guess that an unreadable body is harmless.
    """
    tokens = [t.strip().lower() for t in content_encoding.split(",") if t.strip()]
    budget = _Budget(limits, len(body))
    for token in reversed(tokens):
        if token == "identity":
            continue
        decoder = _DECODERS.get(token)
        if decoder is None:
            raise DecodeError("unknown content-encoding")
        body = decoder(body, budget)
    return body
