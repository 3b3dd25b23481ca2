"""Plain text (CSV/TSV exports, e-mail bodies, notes, logs): read when no format and no
container claimed the payload. Healthcare documents after a preamble ("hello MSH|^~\\&|...")
and base64 runs inside it are handed back to the registry; the rest is read as prose."""

from __future__ import annotations

from gateway.containers.budget import Combined
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.model import Format, Inspection

_SAMPLE = 4096


def mostly_text(sample: bytes) -> bool:
    printable = sum(1 for b in sample if b >= 0x20 or b in (9, 10, 13))
    return printable >= 0.95 * len(sample)


class Text(FormatHandler):
    formats = frozenset({Format.TEXT})
    fallback = True

    def sniff(self, payload: Payload) -> bool:
        return mostly_text(payload.data[:_SAMPLE])

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        combined = Combined(Format.TEXT)
        text = payload.data.decode("utf-8", "replace")
        reader.wrapped(text, payload.depth, combined)
        reader.free_text(text, "text", payload.depth, combined)
        return combined.result()
