"""MLLP framing: ``0x0B <HL7 message> 0x1C 0x0D``, reassembled from arbitrary socket reads.

A TCP read may hold part of a frame, one frame, or several frames and a part of the next. The
framer keeps what it has not yet seen the end of, hands back complete frames in order, and says
when the stream is not MLLP after all (bytes outside a frame) or a frame outgrows the limit.
It never forwards anything itself: the caller decides what each frame becomes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

START = b"\x0b"
END = b"\x1c\r"
# Senders may put a line break between frames; anything else outside a frame is not MLLP.
_BETWEEN_FRAMES = b"\r\n"


def frame(payload: bytes) -> bytes:
    """Wrap one message in the MLLP envelope."""
    return START + payload + END


def starts_like_mllp(data: bytes) -> bool:
    return data[:1] == START


class FramingError(enum.StrEnum):
    NOT_MLLP = "stream is not MLLP (bytes outside a frame)"
    FRAME_TOO_LARGE = "MLLP frame exceeds max_mllp_frame_bytes"


@dataclass(slots=True)
class Framed:
    """What one read produced: complete payloads (without the envelope), in order, then the
    error that stopped framing, if any (the frames before it are still good)."""

    frames: list[bytes] = field(default_factory=list)
    error: FramingError | None = None


class MllpFramer:
    """Incremental MLLP reassembly with a bounded buffer (one partial frame at most)."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for END (after START)
        self.error: FramingError | None = None

    @property
    def pending(self) -> int:
        """Bytes held: the start of a frame whose end has not arrived yet."""
        return len(self._buffer)

    def take_pending(self) -> bytes:
        """The held bytes, for a caller that gives up framing and relays the stream as is."""
        held = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return held

    def feed(self, data: bytes) -> Framed:
        result = Framed()
        if self.error is not None:
            result.error = self.error
            return result
        buffer = self._buffer
        buffer += data
        while buffer:
            if buffer[0] != START[0]:
                skip = len(buffer) - len(buffer.lstrip(_BETWEEN_FRAMES))
                if skip == 0:
                    self.error = result.error = FramingError.NOT_MLLP
                    return result
                del buffer[:skip]
                continue
            # A frame has started: look for its end, starting just before what was searched
            # (the 0x1C of the end may have been the last byte of the previous read).
            end = buffer.find(END, max(1, self._scanned - 1))
            if end < 0:
                self._scanned = len(buffer)
                if len(buffer) - 1 > self.max_frame_bytes:
                    self.error = result.error = FramingError.FRAME_TOO_LARGE
                return result
            if end - 1 > self.max_frame_bytes:
                self.error = result.error = FramingError.FRAME_TOO_LARGE
                return result
            result.frames.append(bytes(buffer[1:end]))
            del buffer[: end + len(END)]
            self._scanned = 0
        return result
