"""JSON as every JSON format reads and writes it: orjson where it can, json where it must.

Inspection reads a document once (``read``); where that document is then redacted and written
back, ``exact`` says whether the reading can be written back as it came (orjson reads an
integer past 64 bits as a float, and would write NaN and Infinity as null), and reads the
document again with json where it cannot.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from gateway.collector import paused


def read(data: bytes) -> tuple[Any, bool]:
    """(document, read by orjson). orjson where it reads the document (about half the cost of
    json for a large Bundle), json where it refuses one: NaN, Infinity, UTF-16/32, a BOM,
    lone surrogates, 1,024+ levels. Where both read a document they read the same strings,
    keys and structure; orjson reads an integer past 64 bits as a float, and inspection reads
    no number (``exact`` guards the writers)."""
    with paused():  # a tree of fresh containers without cycles (gateway/collector.py)
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            return json.loads(data), False


def loads(data: bytes) -> Any:
    return read(data)[0]


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400
        raise _NotFinite
    return number


def _not_finite(text: str) -> float:  # NaN, Infinity, -Infinity
    raise _NotFinite


# Made once: json.loads(data, parse_float=...) builds a new decoder on every call.
_FINITE = json.JSONDecoder(parse_float=_finite, parse_constant=_not_finite)


def exact(data: bytes, document: Any, by_orjson: bool) -> tuple[Any, bool]:
    """The document as it can be written back, and whether it holds only finite numbers
    (a document with NaN or Infinity is written by json, as it came). ``document`` is what
    ``read(data)`` returned, used as it is where orjson's reading is exact."""
    if by_orjson and not long_number(data):
        return document, True
    text = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
    try:
        return _FINITE.decode(text), True
    except _NotFinite:
        return json.loads(text), False


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19  # 2**63 has 19 digits, and orjson reads -2**63 - 1 as a float


def long_number(data: bytes) -> bool:
    """Might ``data``, valid JSON, hold a number of 19 digits or more? A digit run that long
    inside a string (a Synthea narrative's seed) is told apart by counting the quotes before
    it: an odd count of unescaped ones. Valid JSON has backslashes only in strings, each
    starting an escape; past an escaped backslash the count is not tried."""
    digits = data.translate(_DIGITS_AS_ZERO)  # a table lookup a byte: far cheaper than a regex
    at = digits.find(_LONG_DIGITS)
    start = quotes = 0
    while at >= 0:
        if data.find(b"\\\\", start, at) >= 0:
            return True
        quotes += data.count(b'"', start, at) - data.count(b'\\"', start, at)
        if quotes % 2 == 0:
            return True  # outside every string: a number
        start = at  # a digit: no escape or quote straddles it
        at = digits.find(_LONG_DIGITS, at + len(_LONG_DIGITS))
    return False


def dumps(document: Any) -> bytes:
    """Compact JSON from orjson (the same JSON once parsed as json.dumps writes, far faster).
    What orjson refuses — integers beyond 64 bits, nesting deeper than 255 — json writes;
    a lone surrogate fails in both (the message is then blocked)."""
    try:
        return orjson.dumps(document)
    except TypeError:  # orjson.JSONEncodeError
        return dumps_as_is(document)


def dumps_as_is(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()
