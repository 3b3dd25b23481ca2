"""gRPC and gRPC-Web requests: length-prefixed messages (a flag byte, a 4-byte length), each
read as protobuf without a schema (``protobuf.py``), or by the registry when it is not
protobuf (gRPC with JSON messages). A compressed message is undone by its magic bytes (gzip,
zlib "deflate", zstd), bounded like a Content-Encoding; one in another compression (snappy)
cannot be read, which fails closed abroad.

The refusal is gRPC's own, so a client reports why it was stopped rather than "HTTP status
451": HTTP 200 with ``grpc-status: 7`` (PERMISSION_DENIED) and the refusal text in
``grpc-message``, in trailers for gRPC over HTTP/2 and in the headers (the Trailers-Only form)
for gRPC-Web, whose trailers would travel in the body; the incident id in
``X-PHI-Gateway-Incident`` as for every refusal.
"""

from __future__ import annotations

from urllib.parse import quote

from gateway.containers.budget import Combined
from gateway.containers.encoding import decode_content
from gateway.errors import ContainerError
from gateway.formats.base import INCIDENT_HEADER, FormatHandler, Payload, Reader, RefusalRequest
from gateway.formats.protobuf import Walk, read_walk
from gateway.model import BlockResponse, Format, Inspection

GRPC = Format("grpc")
PERMISSION_DENIED = "7"
_HEADER = 5
_COMPRESSED = 1
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"))
# Printable ASCII but "%" goes into grpc-message as it is; the rest is percent-encoded
# (gRPC over HTTP/2, "grpc-message").
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def frames(data: bytes) -> list[tuple[int, int, int]] | None:
    """(flag, start, end) of every length-prefixed message, when they tile ``data`` exactly."""
    found: list[tuple[int, int, int]] = []
    at = 0
    while at < len(data):
        flag = data[at]
        if flag > _COMPRESSED or at + _HEADER > len(data):
            return None
        start = at + _HEADER
        end = start + int.from_bytes(data[at + 1 : start], "big")
        if end > len(data):
            return None
        found.append((flag, start, end))
        at = end
    return found or None


def _uncompressed(message: bytes, reader: Reader) -> bytes:
    coding = next((name for magic, name in _MAGIC if message.startswith(magic)), "")
    zlib = len(message) > 1 and message[0] & 0x0F == 8
    if not coding and zlib and int.from_bytes(message[:2], "big") % 31 == 0:
        coding = "deflate"  # a zlib stream: gRPC's "deflate"
    if not coding:
        raise ContainerError("gRPC message compressed in a coding the gateway does not read")
    data = decode_content(message, coding, reader.budget.decode)
    reader.budget.spend(len(data))
    return data


class Grpc(FormatHandler):
    formats = frozenset({GRPC})
    # Its first bytes are zeros (a flag and a length): sniffed before the UTF-16/32 stage.
    binary = True

    def sniff(self, payload: Payload) -> bool:
        return frames(payload.data) is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        data = payload.data
        found = frames(data)
        assert found is not None
        walk = Walk(reader)
        combined = Combined(GRPC)
        for number, (flag, first, last) in enumerate(found):
            walk.count(1)
            where = f"grpc[{number}]"
            message, start, end = data, first, last
            if flag == _COMPRESSED:
                message = _uncompressed(data[first:last], reader)
                start, end = 0, len(message)
            if not walk.message(message, start, end, where):
                combined.add(where, reader.scan(message[start:end], payload.depth + 1))
        read_walk(walk, reader, payload.depth, combined, "")
        result = combined.result()
        return Inspection(
            GRPC,
            message_type=f"{len(found)} message{'s' if len(found) > 1 else ''}",
            findings=result.findings,
            contains_phi=result.contains_phi,
            error=result.error,
            limit=result.limit,
            internal=result.internal,
            opaque=result.opaque,
        )

    def refusal(self, request: RefusalRequest) -> BlockResponse | None:
        content_type = request.content_type.split(";", 1)[0].strip().lower()
        if not content_type.startswith("application/grpc"):
            return None
        status = (
            ("grpc-status", PERMISSION_DENIED),
            ("grpc-message", quote(request.text, safe=_MESSAGE_SAFE)),
        )
        incident = ((INCIDENT_HEADER, request.incident_id),)
        if content_type.startswith("application/grpc-web"):
            return BlockResponse(200, content_type, b"", incident + status)
        return BlockResponse(200, content_type, b"", incident, trailers=status)
