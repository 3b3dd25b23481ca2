"""MLLP framing: reassembly across any split, many frames per read, bounded, strict."""

from __future__ import annotations

import pytest

from gateway.mllp.framer import END, START, FramingError, MllpFramer, frame
from tests.support.patients import hl7_adt, make_patient

ADT = hl7_adt(make_patient(5)).encode()
SMALL = b"MSH|^~\\&|A|B|C|D|20240101||ACK^A01|X1|P|2.5\r"


def feed_all(framer: MllpFramer, chunks: list[bytes]) -> list[bytes]:
    frames: list[bytes] = []
    for chunk in chunks:
        result = framer.feed(chunk)
        assert result.error is None
        frames += result.frames
    return frames


def test_frame_wraps_in_the_envelope() -> None:
    assert frame(b"abc") == b"\x0babc\x1c\r"
    assert (START, END) == (b"\x0b", b"\x1c\r")


def test_one_frame_one_read() -> None:
    framer = MllpFramer(1 << 20)
    assert feed_all(framer, [frame(ADT)]) == [ADT]
    assert framer.pending == 0


def test_split_at_every_byte_boundary() -> None:
    stream = frame(ADT) + frame(SMALL)
    for cut in range(1, len(stream)):
        framer = MllpFramer(1 << 20)
        assert feed_all(framer, [stream[:cut], stream[cut:]]) == [ADT, SMALL], cut
        assert framer.pending == 0


def test_split_at_every_pair_of_boundaries_around_the_end_marker() -> None:
    stream = frame(SMALL) + frame(SMALL)
    end = len(frame(SMALL))
    for a in range(end - 4, end + 2):
        for b in range(a + 1, len(stream)):
            framer = MllpFramer(1 << 20)
            got = feed_all(framer, [stream[:a], stream[a:b], stream[b:]])
            assert got == [SMALL, SMALL], (a, b)


def test_one_byte_per_read() -> None:
    framer = MllpFramer(1 << 20)
    stream = frame(ADT) * 3
    assert feed_all(framer, [stream[i : i + 1] for i in range(len(stream))]) == [ADT] * 3


def test_many_frames_in_one_read_and_a_partial_held() -> None:
    framer = MllpFramer(1 << 20)
    stream = frame(SMALL) * 50 + frame(ADT)[:100]
    result = framer.feed(stream)
    assert result.frames == [SMALL] * 50
    assert framer.pending == 100
    assert framer.feed(frame(ADT)[100:]).frames == [ADT]


def test_end_bytes_apart_are_data() -> None:
    """0x1C without CR, or CR alone, do not end a frame."""
    payload = b"MSH|a\x1cb\rc\x1c"
    framer = MllpFramer(1 << 20)
    assert feed_all(framer, [frame(payload)]) == [payload]


def test_line_breaks_between_frames_are_tolerated() -> None:
    framer = MllpFramer(1 << 20)
    assert feed_all(framer, [frame(SMALL) + b"\r\n", b"\n" + frame(SMALL)]) == [SMALL, SMALL]


@pytest.mark.parametrize("stream", [b"GET / HTTP/1.1\r\n", b"MSH|^~\\&|no envelope\r", b"\x00"])
def test_a_stream_that_does_not_start_like_mllp(stream: bytes) -> None:
    framer = MllpFramer(1 << 20)
    result = framer.feed(stream)
    assert (result.frames, result.error) == ([], FramingError.NOT_MLLP)
    assert framer.take_pending() == stream
    # The error sticks: nothing after it is framed.
    assert framer.feed(frame(SMALL)).error is FramingError.NOT_MLLP


def test_garbage_after_good_frames_keeps_the_good_frames() -> None:
    framer = MllpFramer(1 << 20)
    result = framer.feed(frame(SMALL) + b"junk" + frame(SMALL))
    assert result.frames == [SMALL]
    assert result.error is FramingError.NOT_MLLP
    assert framer.take_pending() == b"junk" + frame(SMALL)


def test_frame_over_the_limit_without_an_end() -> None:
    framer = MllpFramer(1024)
    assert framer.feed(START + b"x" * 1024).error is None  # exactly the limit, still waiting
    result = framer.feed(b"x")
    assert result.error is FramingError.FRAME_TOO_LARGE
    assert framer.pending == 1026


def test_frame_over_the_limit_in_one_read() -> None:
    framer = MllpFramer(1024)
    result = framer.feed(frame(SMALL) + frame(b"x" * 1025))
    assert result.frames == [SMALL]
    assert result.error is FramingError.FRAME_TOO_LARGE
    at_limit = MllpFramer(1024)
    assert at_limit.feed(frame(b"x" * 1024)).frames == [b"x" * 1024]


def test_large_frame_in_socket_sized_reads_is_linear() -> None:
    payload = b"OBX|" + b"y" * (1 << 20)
    stream = frame(payload)
    framer = MllpFramer(2 << 20)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    assert feed_all(framer, chunks) == [payload]
