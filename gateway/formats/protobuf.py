"""Protocol Buffers without a schema: the wire format walked, its strings read as text.

Without the ``.proto`` file a message's field names are unknown, but its wire format says
enough: every field is a number, a wire type and a value, and a length-delimited value is a
string, a nested message or bytes. They are told apart as ``protoc --decode_raw`` does, text
first: printable UTF-8 is a string, what parses exactly as fields is a message, the rest is
bytes. Strings are read like the values of a JSON document of no format: a document inside
one (FHIR JSON, an HL7 message) goes back to the registry, and the rest of a message's
strings is one text for the free-text detectors (a note split over repeated fields reads as
one) and one record for the unlabelled-record rule (``envelope.record_findings``: a full
name and a full date in one message are a patient). Bytes longer than ``SMALL_BYTES`` go back
to the registry too (a PDF in a bytes field is read as a PDF; bytes no format knows are
opaque); shorter ones are ids, hashes and keys unless they are mostly text (Latin-1, a
legacy encoding), and strings that long are read like a document of their own. Groups
(wire types 3 and 4, deprecated since proto2) are not read: a message with one is not
protobuf to us, which fails closed.

Read by gRPC (``grpc.py``) for each message, and as the last fallback for a binary body no
format knows (``Protobuf``). Bounded by ``limits.max_protobuf_fields`` (fields of one payload)
and ``limits.max_protobuf_depth`` (messages in messages), and by the payload's time budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.containers.budget import Combined
from gateway.envelope import record_findings
from gateway.errors import ContainerError
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.formats.text import mostly_text
from gateway.model import Format, Inspection

PROTOBUF = Format("protobuf")
# Bytes fields this long or shorter are ids, hashes, keys and flags: not read as documents.
SMALL_BYTES = 256
_MAX_FIELD_NUMBER = (1 << 29) - 1
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A value of a record this short, in words, may be one of its fields (a name, a date).
_RECORD_VALUE_WORDS = 4


def fields(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]] | None:
    """(number, wire type, value start, value end) of every field in ``data[start:end]``, or
    None when those bytes are not a protobuf message."""
    found: list[tuple[int, int, int, int]] = []
    at = start
    while at < end:
        key, at = _varint(data, at, end)
        if at < 0:
            return None
        number, wire = key >> 3, key & 7
        if number == 0 or number > _MAX_FIELD_NUMBER:
            return None
        if wire == 0:
            _, stop = _varint(data, at, end)
            if stop < 0:
                return None
        elif wire == 2:
            length, at = _varint(data, at, end)
            if at < 0:
                return None
            stop = at + length
        elif wire == 1:
            stop = at + 8
        elif wire == 5:
            stop = at + 4
        else:
            return None
        if stop > end:
            return None
        found.append((number, wire, at, stop))
        at = stop
    return found


def _varint(data: bytes, at: int, end: int) -> tuple[int, int]:
    """(value, position after it), or (0, -1) when no varint ends before ``end``."""
    value = 0
    shift = 0
    while at < end and shift < 64:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
    return 0, -1


def as_string(value: bytes) -> str | None:
    """A length-delimited value as text, when it is printable UTF-8; None for a message or
    bytes."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


@dataclass
class Message:
    """One message's readable content: (field path, text) and (field path, bytes)."""

    path: str
    strings: list[tuple[str, str]] = field(default_factory=list)
    blobs: list[tuple[str, bytes]] = field(default_factory=list)


class Walk:
    """Every message of one payload, nested ones included, flattened, under one budget."""

    def __init__(self, reader: Reader) -> None:
        self.budget = reader.budget
        self.messages: list[Message] = []
        self.fields = 0

    def message(self, data: bytes, start: int, end: int, path: str, nesting: int = 0) -> bool:
        """Read ``data[start:end]`` as a message; False when it is not one."""
        found = fields(data, start, end)
        if found is None:
            return False
        self.count(len(found))
        if nesting > self.budget.max_protobuf_depth:
            raise ContainerError(
                "protobuf messages nested deeper than max_protobuf_depth", "max_protobuf_depth"
            )
        self.budget.enter(0)  # the time budget
        message = Message(path)
        self.messages.append(message)
        for number, wire, a, b in found:
            if wire != 2 or a == b:
                continue  # numbers are not identifiers without a name saying so
            where = f"{path}.{number}"
            value = data[a:b]
            text = as_string(value)
            if text is not None:
                message.strings.append((where, text))
            elif not self.message(data, a, b, where, nesting + 1):
                message.blobs.append((where, value))
        return True

    def count(self, more: int) -> None:
        self.fields += more
        if self.fields > self.budget.max_protobuf_fields:
            raise ContainerError(
                "protobuf payload has more fields than max_protobuf_fields",
                "max_protobuf_fields",
            )


def read_walk(walk: Walk, reader: Reader, depth: int, into: Combined, where: str) -> None:
    """What the walked messages hold, added to ``into`` under ``where``."""
    for message in walk.messages:
        prose: list[str] = []
        for path, text in message.strings:
            if len(text) > SMALL_BYTES:  # a note or a document of its own
                into.add(f"{where}{path}", reader.scan(text.encode("utf-8"), depth + 1))
                continue
            inner = reader.embedded(text, depth)
            if inner is not None:
                into.add(f"{where}{path}", inner)
            else:
                prose.append(text)
        if prose:
            location = f"{where}{message.path}"
            reader.free_text("\n".join(prose), location, depth, into)
            values = [t for t in prose if len(t.split()) <= _RECORD_VALUE_WORDS]
            into.add_fields(record_findings(values, location))
        for path, value in message.blobs:
            small = len(value) <= SMALL_BYTES
            if small and not mostly_text(value):
                continue  # an id, a hash, a key
            reader.budget.spend(len(value))
            inner = reader.scan(value, depth + 1)
            if small and inner.opaque and not inner.findings:
                continue  # mostly text, but no format's: as unreadable as a key
            into.add(f"{where}{path}", inner)


class Protobuf(FormatHandler):
    """A binary body no format knows that is a protobuf message (``application/x-protobuf``,
    ``application/vnd.google.protobuf``): read without a schema. Asked after plain text."""

    formats = frozenset({PROTOBUF})
    fallback = True
    binary = True  # read as sent: a message's first byte is often a blank ("\n": field 1)

    def sniff(self, payload: Payload) -> bool:
        found = fields(payload.data, 0, len(payload.data))
        return bool(found)

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        walk = Walk(reader)
        walk.message(payload.data, 0, len(payload.data), "")
        combined = Combined(PROTOBUF)
        read_walk(walk, reader, payload.depth, combined, "protobuf")
        return combined.result()
