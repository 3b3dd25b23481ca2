"""One MLLP connection, client → server: frames in, what to forward / answer / close out.

The front end (the mitmproxy addon) hands over each read from the sender; the session frames
it, has every complete frame judged as one HL7 message by the gateway, and returns what to
send on: the frames that may go (as sent, or redacted and re-framed), the ACKs that refuse the
others (to the sender), and whether to close. The destination is fixed for a connection, so it
is judged once, when the session starts.

States:
- ``relay``: bytes go on as they arrive (domestic destinations no list names: not inspected,
  so byte-identical and never delayed; streams allowed after they turned out not to be MLLP).
- ``framing``: each frame is inspected, decided, recorded and acted on.
- ``closed``: a fail-closed end (not MLLP or an oversized frame, bound abroad): nothing more
  goes on and the front end closes the connection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.enforce import Act, act, refusal_text
from gateway.engine import Gateway
from gateway.formats.hl7v2.ack import hl7_reject_ack
from gateway.mllp.framer import FramingError, MllpFramer, frame, starts_like_mllp
from gateway.model import Decision, Destination, Format, Inspection, Message, Protocol
from gateway.policy import needs_inspection


class State(enum.StrEnum):
    RELAY = "relay"
    FRAMING = "framing"
    CLOSED = "closed"


@dataclass(slots=True)
class StreamOutput:
    forward: bytes = b""  # to the receiver
    reply: bytes = b""  # to the sender (refusing ACKs)
    close: bool = False  # close the connection (fail closed)
    decisions: list[Decision] = field(default_factory=list)


class MllpSession:
    def __init__(
        self,
        gateway: Gateway,
        destination: Destination,
        client: str,
        first: bytes,
        mllp_port: bool = False,
    ) -> None:
        """``first`` is the first read from the sender: it tells MLLP from other streams.
        ``mllp_port``: the destination port is configured as MLLP (a stream that does not
        start like MLLP is then "not MLLP after all", not generic TCP)."""
        self.destination = destination
        self.client = client
        self.framer = MllpFramer(gateway.config.limits.max_mllp_frame_bytes)
        self.protocol = Protocol.MLLP if starts_like_mllp(first) or mllp_port else Protocol.TCP
        self.state = State.FRAMING
        self.frames = 0
        if not needs_inspection(destination, gateway.config):
            # Domestic and on no list: relayed as sent, one decision for the connection.
            gateway.evaluate(self._message(b"", len(first)), destination)
            self.state = State.RELAY

    @property
    def pending(self) -> int:
        """Bytes held until their frame ends."""
        return self.framer.pending

    def _message(self, body: bytes, size: int) -> Message:
        host, port = self.destination.host, self.destination.port
        return Message(self.protocol, self.client, host, port, body=body, raw_body_size=size)

    def feed(self, gateway: Gateway, data: bytes) -> StreamOutput:
        out = StreamOutput()
        if self.state is State.RELAY:
            out.forward = data
            return out
        if self.state is State.CLOSED:
            out.close = True
            return out
        framed = self.framer.feed(data)
        forward: list[bytes] = []
        reply: list[bytes] = []
        for payload in framed.frames:
            self.frames += 1
            decision = gateway.evaluate(self._message(payload, len(payload)), self.destination)
            out.decisions.append(decision)
            what = act(decision)
            if what is Act.REFUSE:
                reply.append(frame(self.refusal(gateway, decision)))
            elif what is Act.FORWARD_REDACTED and decision.redaction is not None:
                forward.append(frame(decision.redaction.body))
            else:
                forward.append(frame(payload))
        if framed.error is not None:
            self._give_up(gateway, framed.error, forward, out)
        out.forward = b"".join(forward)
        out.reply = b"".join(reply)
        return out

    def _give_up(
        self, gateway: Gateway, error: FramingError, forward: list[bytes], out: StreamOutput
    ) -> None:
        """Not MLLP after all, or a frame over the limit: decided as an unreadable payload."""
        if error is FramingError.NOT_MLLP and self.frames == 0 and self.protocol is Protocol.TCP:
            reason = "raw TCP stream, not MLLP"  # a stream that never looked like MLLP
        else:
            reason = error.value
        limit = "max_mllp_frame_bytes" if error is FramingError.FRAME_TOO_LARGE else ""
        preset = Inspection(Format.BINARY, error=reason, limit=limit)
        held = self.framer.take_pending()
        decision = gateway.evaluate(self._message(b"", len(held)), self.destination, preset)
        out.decisions.append(decision)
        if decision.verdict.blocks:
            self.state = State.CLOSED
            out.close = True
        else:
            self.state = State.RELAY
            forward.append(held)

    @staticmethod
    def refusal(gateway: Gateway, decision: Decision) -> bytes:
        """The ACK refusing one message: MSA-1 as configured, MSA-2 = its MSH-10, ERR."""
        text = refusal_text(decision.verdict, decision.incident_id)
        code = gateway.config.policy.mllp_ack_code.value
        ack = hl7_reject_ack(decision.inspection, text, decision.incident_id, code)
        return ack.encode("utf-8")
