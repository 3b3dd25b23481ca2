"""The DICOM upper layer protocol (PS3.8 section 9) as far as the gateway needs it: PDUs
framed from a byte stream, the presentation contexts an association proposes and accepts,
the PDVs of P-DATA-TF, DIMSE command sets (PS3.7: implicit VR little endian, group 0000),
and the PDUs the gateway writes itself (a failure response, an A-ABORT)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gateway.errors import DicomError

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07
PDU_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7})

# Command elements (PS3.7 E.1).
AFFECTED_SOP_CLASS = 0x00000002
REQUESTED_SOP_CLASS = 0x00000003
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
DATA_SET_TYPE = 0x00000800
AFFECTED_SOP_INSTANCE = 0x00001000
REQUESTED_SOP_INSTANCE = 0x00001001
NO_DATA_SET = 0x0101
C_STORE_RQ = 0x0001
# PS3.7 C.5.x general status "Refused: Not authorized": the sender logs a failure.
REFUSED_NOT_AUTHORIZED = 0x0124


def starts_like_associate_rq(data: bytes) -> bool:
    """An A-ASSOCIATE-RQ PDU: type 01, a plausible length, protocol version 1."""
    if len(data) < 10 or data[0] != ASSOCIATE_RQ or data[1] != 0:
        return False
    length = struct.unpack_from(">I", data, 2)[0]
    return 68 <= length <= 1024 * 1024 and data[6:8] == b"\x00\x01"


@dataclass(frozen=True, slots=True)
class Pdu:
    kind: int
    body: bytes
    raw: bytes


class PduFramer:
    """Bytes in, whole PDUs out; a PDU longer than ``most`` is refused (DicomError)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.buffer = bytearray()

    @property
    def pending(self) -> int:
        return len(self.buffer)

    def feed(self, data: bytes) -> list[Pdu]:
        self.buffer += data
        out: list[Pdu] = []
        buffer = self.buffer
        at = 0
        while len(buffer) - at >= 6:
            kind = buffer[at]
            if kind not in PDU_TYPES:
                raise DicomError("not a DICOM upper layer PDU")
            length = struct.unpack_from(">I", buffer, at + 2)[0]
            if length > self.most:
                raise DicomError("DICOM PDU longer than max_body_bytes", "max_body_bytes")
            end = at + 6 + length
            if end > len(buffer):
                break
            raw = bytes(buffer[at:end])
            out.append(Pdu(kind, raw[6:], raw))
            at = end
        del buffer[:at]
        return out


@dataclass(slots=True)
class Association:
    """What the two sides agreed: transfer syntax per presentation context, and the largest
    PDU the acceptor receives (0: no limit)."""

    proposed: dict[int, str] = field(default_factory=dict)  # context id -> abstract syntax
    accepted: dict[int, str] = field(default_factory=dict)  # context id -> transfer syntax
    acceptor_max_pdu: int = 0


def _items(body: bytes, at: int) -> list[tuple[int, bytes]]:
    items = []
    while at + 4 <= len(body):
        kind = body[at]
        length = struct.unpack_from(">H", body, at + 2)[0]
        if at + 4 + length > len(body):
            raise DicomError("truncated DICOM association item")
        items.append((kind, body[at + 4 : at + 4 + length]))
        at += 4 + length
    return items


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").strip("\x00 ")


def read_associate_rq(body: bytes, into: Association) -> None:
    """The presentation contexts proposed (items after the 68-byte fixed part)."""
    if len(body) < 68:
        raise DicomError("truncated A-ASSOCIATE-RQ")
    for kind, item in _items(body, 68):
        if kind == 0x20 and len(item) >= 4:
            for sub_kind, sub in _items(item, 4):
                if sub_kind == 0x30:
                    into.proposed[item[0]] = _text(sub)


def read_associate_ac(body: bytes, into: Association) -> None:
    """The transfer syntax accepted per context, and the acceptor's maximum PDU length."""
    if len(body) < 68:
        raise DicomError("truncated A-ASSOCIATE-AC")
    for kind, item in _items(body, 68):
        if kind == 0x21 and len(item) >= 4 and item[2] == 0:  # result 0: acceptance
            for sub_kind, sub in _items(item, 4):
                if sub_kind == 0x40:
                    into.accepted[item[0]] = _text(sub)
        elif kind == 0x50:
            for sub_kind, sub in _items(item, 0):
                if sub_kind == 0x51 and len(sub) == 4:
                    into.acceptor_max_pdu = struct.unpack(">I", sub)[0]


@dataclass(frozen=True, slots=True)
class Pdv:
    context: int
    command: bool
    last: bool
    data: bytes
    raw: bytes  # the item as sent: length, context id, control header, fragment


def pdvs(body: bytes) -> list[Pdv]:
    out = []
    at = 0
    while at < len(body):
        if at + 6 > len(body):
            raise DicomError("truncated DICOM presentation data value")
        length = struct.unpack_from(">I", body, at)[0]
        end = at + 4 + length
        if length < 2 or end > len(body):
            raise DicomError("DICOM presentation data value longer than its PDU")
        header = body[at + 5]
        out.append(
            Pdv(body[at + 4], bool(header & 1), bool(header & 2), body[at + 6 : end], body[at:end])
        )
        at = end
    return out


def p_data(items: list[bytes]) -> bytes:
    body = b"".join(items)
    return struct.pack(">BBI", P_DATA_TF, 0, len(body)) + body


def pdv(context: int, command: bool, last: bool, data: bytes) -> bytes:
    header = (1 if command else 0) | (2 if last else 0)
    return struct.pack(">IBB", len(data) + 2, context, header) + data


def fragments(context: int, data: bytes, max_pdu: int) -> bytes:
    """A data set as P-DATA-TF PDUs no longer than the acceptor takes (one PDV each)."""
    room = (max_pdu - 6 - 6) if max_pdu else len(data) or 1
    room = max(room, 1024)
    out = []
    for at in range(0, max(len(data), 1), room):
        piece = data[at : at + room]
        out.append(p_data([pdv(context, False, at + room >= len(data), piece)]))
    return b"".join(out)


def read_command(data: bytes) -> dict[int, bytes]:
    """A command set's elements (implicit VR little endian): tag -> value."""
    out: dict[int, bytes] = {}
    at = 0
    while at + 8 <= len(data):
        group, number, length = struct.unpack_from("<HHI", data, at)
        end = at + 8 + length
        if group != 0 or end > len(data):
            raise DicomError("malformed DIMSE command set")
        out[number] = data[at + 8 : end]
        at = end
    return out


def command_uint(command: dict[int, bytes], tag: int) -> int | None:
    value = command.get(tag)
    return struct.unpack("<H", value[:2])[0] if value is not None and len(value) >= 2 else None


def command_text(command: dict[int, bytes], tag: int) -> str:
    return _text(command.get(tag, b""))


def _element(tag: int, value: bytes) -> bytes:
    if len(value) & 1:
        value += b"\x00"
    return struct.pack("<HHI", 0, tag, len(value)) + value


def encode_command(command: dict[int, bytes]) -> bytes:
    """A command set from its elements (group 0000, by element number), its length anew."""
    body = b"".join(_element(number, value) for number, value in sorted(command.items()) if number)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def failure_response(request: dict[int, bytes], status: int, comment: str) -> bytes:
    """The response command set refusing ``request`` with ``status`` (and a comment)."""
    field_value = command_uint(request, COMMAND_FIELD) or C_STORE_RQ
    sop_class = request.get(AFFECTED_SOP_CLASS) or request.get(REQUESTED_SOP_CLASS) or b""
    instance = request.get(AFFECTED_SOP_INSTANCE) or request.get(REQUESTED_SOP_INSTANCE) or b""
    message_id = command_uint(request, MESSAGE_ID) or 0
    body = b"".join(
        [
            _element(AFFECTED_SOP_CLASS, sop_class) if sop_class else b"",
            _element(COMMAND_FIELD, struct.pack("<H", field_value | 0x8000)),
            _element(0x0120, struct.pack("<H", message_id)),  # MessageIDBeingRespondedTo
            _element(DATA_SET_TYPE, struct.pack("<H", NO_DATA_SET)),
            _element(0x0900, struct.pack("<H", status)),  # Status
            _element(0x0902, comment.encode("ascii", "replace")[:64]),  # ErrorComment
            _element(AFFECTED_SOP_INSTANCE, instance) if instance else b"",
        ]
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


def abort() -> bytes:
    """A-ABORT from the service provider (source 2), reason not specified."""
    return struct.pack(">BBIBBBB", ABORT, 0, 4, 0, 0, 2, 0)
