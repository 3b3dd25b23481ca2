import gzip
import zlib

import brotli
import pytest
from backports import zstd

from gateway.containers.encoding import DecodeLimits, decode_content
from gateway.errors import DecodeError

LIMITS = DecodeLimits(max_output_bytes=10 * 1024 * 1024, max_ratio=200)


def test_every_gzip_member_is_decoded() -> None:
    # mitmproxy's decoder stops after the first member; ours must not.
    body = gzip.compress(b"hello ") + gzip.compress(b"PID|1||MRN123")
    assert decode_content(body, "gzip", LIMITS) == b"hello PID|1||MRN123"


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_accepts_zlib_and_raw(wbits: int) -> None:
    c = zlib.compressobj(wbits=wbits)
    body = c.compress(b"payload") + c.flush()
    assert decode_content(body, "deflate", LIMITS) == b"payload"


def test_stacked_encodings_are_undone_in_reverse_order() -> None:
    body = brotli.compress(gzip.compress(b"payload"))
    assert decode_content(body, "gzip, br", LIMITS) == b"payload"


def test_zstd_multiple_frames() -> None:
    body = zstd.compress(b"one ") + zstd.compress(b"two")
    assert decode_content(body, "zstd", LIMITS) == b"one two"


def test_identity_and_empty_header_pass_through() -> None:
    assert decode_content(b"x", "identity", LIMITS) == b"x"
    assert decode_content(b"x", "", LIMITS) == b"x"


@pytest.mark.parametrize("encoding", ["x-compress", "compress", "gzip, exotic"])
def test_unknown_encoding_is_an_error(encoding: str) -> None:
    with pytest.raises(DecodeError, match="unknown content-encoding"):
        decode_content(gzip.compress(b"x"), encoding, LIMITS)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd", "deflate"])
def test_corrupt_data_is_an_error(encoding: str) -> None:
    with pytest.raises(DecodeError):
        decode_content(b"\x1f\x8b\x08\x00garbage-not-compressed", encoding, LIMITS)


def test_truncated_gzip_is_an_error() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        decode_content(gzip.compress(b"x" * 1000)[:-10], "gzip", LIMITS)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("br", brotli.compress), ("zstd", zstd.compress)],
)
def test_bomb_stops_at_the_output_limit(encoding: str, compress: object) -> None:
    assert callable(compress)
    bomb = compress(b"\0" * (50 * 1024 * 1024))
    limits = DecodeLimits(max_output_bytes=5 * 1024 * 1024, max_ratio=10**9)
    with pytest.raises(DecodeError) as info:
        decode_content(bomb, encoding, limits)
    assert info.value.limit == "max_decompressed_bytes"


def test_ratio_limit() -> None:
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
    with pytest.raises(DecodeError) as info:
        decode_content(bomb, "gzip", LIMITS)
    assert info.value.limit == "max_decompression_ratio"
