"""HL7 v2 over MLLP: framing (``framer``) and per-connection judgement (``session``)."""

from gateway.mllp.framer import FramingError, MllpFramer, frame, starts_like_mllp
from gateway.mllp.session import MllpSession, StreamOutput

__all__ = ["FramingError", "MllpFramer", "MllpSession", "StreamOutput", "frame", "starts_like_mllp"]
