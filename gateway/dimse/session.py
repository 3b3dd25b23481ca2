"""One DICOM association over TCP, client → server: PDUs in, what to forward / answer / close.

Like the MLLP session (gateway/mllp/session.py), it is handed every read from the sender and
returns what goes on. The association is followed PDU by PDU: the A-ASSOCIATE-RQ and -AC
(which transfer syntax each presentation context uses, the largest PDU the receiver takes),
then each DIMSE message of P-DATA-TF: its command set and data set are held until the data
set is whole, and the data set is judged as a DICOM dataset (wrapped in a Part 10 file that
names its transfer syntax). A message that may go is forwarded as its PDVs were sent; a
redacted one with its new data set; a refused one is answered on the same association with
the response to its command and a failure status (0124H, "Refused: Not authorized", with
the incident id in ErrorComment), so the sender reports a failure and goes on with the next.
What cannot be followed (not an association, an oversized PDU, interleaved messages)
aborts the association abroad (A-ABORT to both sides). Domestic associations no list names
are relayed byte for byte, never held.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.dimse.pdu import (
    ABORT,
    AFFECTED_SOP_CLASS,
    AFFECTED_SOP_INSTANCE,
    ASSOCIATE_AC,
    ASSOCIATE_RQ,
    DATA_SET_TYPE,
    NO_DATA_SET,
    P_DATA_TF,
    REFUSED_NOT_AUTHORIZED,
    RELEASE_RQ,
    Association,
    PduFramer,
    Pdv,
    abort,
    command_text,
    command_uint,
    encode_command,
    failure_response,
    fragments,
    p_data,
    pdv,
    pdvs,
    read_associate_ac,
    read_associate_rq,
    read_command,
)
from gateway.enforce import Act, act
from gateway.engine import Gateway
from gateway.errors import DicomError
from gateway.formats.dicom import DICOM
from gateway.formats.dicom.walk import part10_meta, unwrap_part10, wrap_part10
from gateway.mllp.session import StreamOutput
from gateway.model import Destination, Inspection, Message, Protocol
from gateway.policy import needs_inspection

_IMPLICIT_LE = "1.2.840.10008.1.2"
# What one PDV held costs beside its bytes (its object): empty PDVs are not free.
_PDV_COST = 64


class State(enum.StrEnum):
    RELAY = "relay"
    FOLLOWING = "following"
    CLOSED = "closed"


@dataclass(slots=True)
class _Turn:
    """What one read from the sender produced."""

    out: StreamOutput
    forward: list[bytes] = field(default_factory=list)
    reply: list[bytes] = field(default_factory=list)
    mark: int = 0  # forward[:mark] covers every PDU before self.unsent


class DimseSession:
    def __init__(self, gateway: Gateway, destination: Destination, client: str) -> None:
        self.destination = destination
        self.client = client
        self.most = gateway.config.limits.max_body_bytes
        self.framer = PduFramer(self.most + 64 * 1024)
        self.replies = PduFramer(1024 * 1024 * 1024)
        self.reading_replies = True
        self.association = Association()
        self.state = State.FOLLOWING
        self.associated = False
        self.messages = 0
        # The PDUs as sent since the last message boundary: what is relayed, byte for byte,
        # if the association cannot be followed and is not blocked.
        self.unsent: list[bytes] = []
        self._reset()
        if not needs_inspection(destination, gateway.config):
            gateway.evaluate(self._message(b""), destination)
            self.state = State.RELAY

    def _reset(self) -> None:
        self.command_pdvs: list[Pdv] = []
        self.command: dict[int, bytes] | None = None
        self.data_pdvs: list[Pdv] = []
        self.data_size = 0
        self.context = 0

    @property
    def pending(self) -> int:
        return self.framer.pending + self.data_size

    def _message(self, body: bytes) -> Message:
        host, port = self.destination.host, self.destination.port
        return Message(Protocol.DICOM, self.client, host, port, body=body, raw_body_size=len(body))

    def observe_reply(self, data: bytes) -> None:
        """Replies pass untouched; the A-ASSOCIATE-AC says what was accepted."""
        if self.state is not State.FOLLOWING or not self.reading_replies:
            return
        try:
            for unit in self.replies.feed(data):
                if unit.kind == ASSOCIATE_AC:
                    read_associate_ac(unit.body, self.association)
                elif unit.kind == P_DATA_TF:
                    # Responses hold no more the session needs: stop framing them.
                    self.reading_replies = False
                    self.replies.buffer.clear()
                    return
        except DicomError:
            self.reading_replies = False  # they still pass, unread

    def feed(self, gateway: Gateway, data: bytes) -> StreamOutput:
        out = StreamOutput()
        if self.state is State.RELAY:
            out.forward = data
            return out
        if self.state is State.CLOSED:
            out.close = True
            return out
        turn = _Turn(out)
        try:
            units = self.framer.feed(data)
        except DicomError as exc:  # nothing of this read consumed: all still in the buffer
            units = []
            self._give_up(gateway, exc, turn, b"")
        for number, unit in enumerate(units):
            self.unsent.append(unit.raw)
            try:
                self._pdu(gateway, unit.kind, unit.body, unit.raw, turn)
            except DicomError as exc:
                rest = b"".join(u.raw for u in units[number + 1 :])
                self._give_up(gateway, exc, turn, rest)
                break
            if not self.command_pdvs and not self.data_pdvs:
                # Everything so far is forwarded, answered or dropped: a point to relay from.
                self.unsent.clear()
                turn.mark = len(turn.forward)
        out.forward = b"".join(turn.forward)
        out.reply = b"".join(turn.reply)
        return out

    def _pdu(self, gateway: Gateway, kind: int, body: bytes, raw: bytes, turn: _Turn) -> None:
        forward = turn.forward
        if kind == ASSOCIATE_RQ:
            self.association = Association()
            read_associate_rq(body, self.association)
            self.associated = True
            self._reset()
            forward.append(raw)
            return
        if not self.associated:
            raise DicomError("not a DICOM association")
        if kind != P_DATA_TF:
            if kind in (RELEASE_RQ, ABORT) and (self.command_pdvs or self.data_pdvs):
                self._reset()  # a message cut short: never forwarded
            forward.append(raw)
            return
        for item in pdvs(body):
            self._pdv(gateway, item, turn)

    def _pdv(self, gateway: Gateway, item: Pdv, turn: _Turn) -> None:
        forward = turn.forward
        if item.command:
            if self.command is not None:
                raise DicomError("DIMSE messages interleaved")
            self.command_pdvs.append(item)
            self.context = item.context
            self._count(item)
            if not item.last:
                return
            self.command = read_command(b"".join(p.data for p in self.command_pdvs))
            if command_uint(self.command, DATA_SET_TYPE) == NO_DATA_SET:
                forward.append(b"".join(p_data([p.raw]) for p in self.command_pdvs))
                self._reset()
            return
        if self.command is None or item.context != self.context:
            raise DicomError("DIMSE data set without its command")
        self.data_pdvs.append(item)
        self._count(item)
        if item.last:
            self._judge(gateway, turn)

    def _count(self, item: Pdv) -> None:
        """A message held is bounded by max_body_bytes, each PDV counted with its cost."""
        self.data_size += len(item.data) + _PDV_COST
        if self.data_size > self.most:
            raise DicomError("DIMSE message larger than max_body_bytes", "max_body_bytes")

    def _judge(self, gateway: Gateway, turn: _Turn) -> None:
        forward, reply, out = turn.forward, turn.reply, turn.out
        command = self.command
        assert command is not None
        dataset = b"".join(p.data for p in self.data_pdvs)
        syntax = self.association.accepted.get(self.context, _IMPLICIT_LE)
        sop_class = command_text(command, AFFECTED_SOP_CLASS)
        instance = command_text(command, AFFECTED_SOP_INSTANCE)
        body = wrap_part10(dataset, syntax, sop_class, instance)
        decision = gateway.evaluate(self._message(body), self.destination)
        out.decisions.append(decision)
        self.messages += 1
        what = act(decision)
        commands = b"".join(p_data([p.raw]) for p in self.command_pdvs)
        if what is Act.REFUSE:
            comment = f"PHI gateway refused it: incident {decision.incident_id}"
            response = failure_response(command, REFUSED_NOT_AUTHORIZED, comment)
            reply.append(p_data([pdv(self.context, True, True, response)]))
        elif what is Act.FORWARD_REDACTED and decision.redaction is not None:
            new = unwrap_part10(decision.redaction.body)
            # The command names the instance too: it gets the remapped UID the data set has.
            remapped = part10_meta(decision.redaction.body).get(0x00020003, b"")
            command_set = encode_command({**command, AFFECTED_SOP_INSTANCE & 0xFFFF: remapped})
            max_pdu = self.association.acceptor_max_pdu
            commands = p_data([pdv(self.context, True, True, command_set)])
            forward.append(commands + fragments(self.context, new, max_pdu))
        else:
            forward.append(commands + b"".join(p_data([p.raw]) for p in self.data_pdvs))
        self._reset()

    def _give_up(self, gateway: Gateway, error: DicomError, turn: _Turn, rest: bytes) -> None:
        """What cannot be followed is decided as an unreadable payload: abroad, the
        association is aborted on both sides and the connection closed."""
        forward, reply, out = turn.forward, turn.reply, turn.out
        preset = Inspection(DICOM, error=f"DICOM association: {error.reason}", limit=error.limit)
        decision = gateway.evaluate(self._message(b""), self.destination, preset)
        out.decisions.append(decision)
        if decision.verdict.blocks:
            self.state = State.CLOSED
            if self.associated:
                forward.append(abort())
            reply.append(abort())
            out.close = True
        else:
            # Not blocked (monitor mode, an allow-listed destination): relayed from here on
            # as sent, from the last message boundary.
            self.state = State.RELAY
            del forward[turn.mark :]
            forward.append(b"".join(self.unsent) + rest + bytes(self.framer.buffer))
            self.unsent.clear()
            self.framer.buffer.clear()
            self._reset()
