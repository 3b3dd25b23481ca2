"""A DICOM dataset's header, read by walking its tags: Part 10 files (any preamble, the file
meta group, the transfer syntax it names, deflate undone), bare datasets in any of the three
encodings, sequences of any length form, and what follows the pixel data. The pixels are
never read: their length is skipped (an encapsulated pixel item by item, header only).

Our own walk, not pydicom's reader: it stops where our limits say (elements, nesting, time,
decoded bytes), treats a length that points past the end as a refusal rather than a guess,
and costs a fraction of ``dcmread`` on a typical header (bench/RESULTS.md, "DICOM").
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import DicomError

# Transfer syntaxes that change how the dataset itself is encoded; every other one
# (JPEG, RLE, ...) compresses only the pixels and is explicit VR little endian.
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
# Binary values the walk keeps: a document inside the dataset (Encapsulated PDF/CDA).
ENCAPSULATED_DOCUMENT = 0x00420011
_KEPT_BINARY = frozenset({ENCAPSULATED_DOCUMENT})
# Explicit VRs whose length takes four bytes after two reserved ones.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_VALID_VRS = _LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT"}
    | {b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
# Value representations whose values are text (kept for inspection; others: lengths only).
TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC"}
    | {"UI", "UR", "UT"}
)
PREAMBLE = 128
# The implementation class UID of the file meta groups the gateway writes (a 2.25 UUID UID).
IMPLEMENTATION_UID = b"2.25.293139810121374201168316321809423308"


@dataclass(frozen=True, slots=True)
class Syntax:
    explicit: bool
    little: bool
    deflated: bool = False


SYNTAXES = {
    IMPLICIT_LE: Syntax(False, True),
    EXPLICIT_LE: Syntax(True, True),
    DEFLATED_LE: Syntax(True, True, True),
    EXPLICIT_BE: Syntax(True, False),
}
_EXPLICIT = SYNTAXES[EXPLICIT_LE]


def syntax_of(uid: str) -> Syntax:
    return SYNTAXES.get(uid.strip("\x00 "), _EXPLICIT)


@dataclass(frozen=True, slots=True)
class Element:
    """One data element: its tag, VR, where it sits ("ContentSequence[2].PersonName"
    is built from ``parents``), its length and, for text VRs, its value."""

    tag: int
    vr: str
    length: int
    value: bytes  # text VRs only (whole: a name may sit at the end); b"" for binary ones
    parents: tuple[tuple[int, int], ...]  # (sequence tag, item number) from the top

    @property
    def private(self) -> bool:
        return bool((self.tag >> 16) & 1)


@dataclass(frozen=True, slots=True)
class Header:
    """What the walk read: the file meta group (Part 10 only), the dataset's elements in
    order, and how the dataset was encoded."""

    meta: dict[int, bytes]
    elements: list[Element]
    syntax_uid: str  # from the file meta, or the encoding a bare dataset was read in
    part10: bool
    preamble: bytes
    dataset_offset: int  # where the dataset starts in the bytes walked (after the meta)


@dataclass(frozen=True, slots=True)
class WalkLimits:
    max_elements: int
    max_depth: int
    max_decoded_bytes: int
    check: Callable[[], None]  # raises when the payload's time budget is spent


_VR_OF: dict[int, str] = {}


def _dictionary() -> dict[int, str]:
    """Tag → VR from pydicom's data dictionary (implicit VR datasets carry no VR), loaded
    on first use: the standard's own table, not ours."""
    if not _VR_OF:
        from pydicom._dicom_dict import DicomDictionary

        for tag, entry in DicomDictionary.items():
            _VR_OF[tag] = entry[0][:2] if entry[0] != "NONE" else "UN"
    return _VR_OF


def part10_offset(data: bytes) -> int:
    """Where "DICM" starts in a Part 10 file (128 after any preamble; 0 without one), or -1."""
    if (
        data[PREAMBLE : PREAMBLE + 4] == b"DICM"
        and data[PREAMBLE + 4 : PREAMBLE + 6] == b"\x02\x00"
    ):
        return PREAMBLE
    if data[:4] == b"DICM" and data[4:6] == b"\x02\x00":
        return 0
    return -1


def bare_syntax(data: bytes) -> str:
    """The encoding a dataset without a Part 10 header is in ("" when it is none): its first
    elements must read as increasing standard tags of the first groups, with valid VRs
    (explicit) or lengths that fit (implicit)."""
    if len(data) < 8:
        return ""
    for uid, syntax in ((EXPLICIT_LE, _EXPLICIT), (IMPLICIT_LE, SYNTAXES[IMPLICIT_LE])):
        if _plausible(data, syntax):
            return uid
    if _plausible(data, SYNTAXES[EXPLICIT_BE]):
        return EXPLICIT_BE
    return ""


def _plausible(data: bytes, syntax: Syntax) -> bool:
    at, previous = 0, -1
    fmt = "<HH" if syntax.little else ">HH"
    for count in range(4):
        if at + 8 > len(data):
            return count >= 2 and at == len(data)
        group, number = struct.unpack_from(fmt, data, at)
        tag = group << 16 | number
        if tag <= previous or group & 1 or (count == 0 and not 0x0002 <= group <= 0x0020):
            return False
        if count == 0 and number > 0x1000:
            return False
        if syntax.explicit:
            vr = data[at + 4 : at + 6]
            if vr not in _VALID_VRS:
                return False
            if vr in _LONG_VRS:
                length = struct.unpack_from("<I" if syntax.little else ">I", data, at + 8)[0]
                at += 12
            else:
                length = struct.unpack_from("<H" if syntax.little else ">H", data, at + 6)[0]
                at += 8
        else:
            length = struct.unpack_from("<I", data, at + 4)[0]
            at += 8
        if length == UNDEFINED:
            return count >= 1
        if at + length > len(data) or (count == 0 and length > 1024):
            return False
        at += length
        previous = tag
    return True


def read_header(data: bytes, limits: WalkLimits) -> Header:
    """The header of a Part 10 file or of a bare dataset; raises DicomError."""
    start = part10_offset(data)
    if start < 0:
        uid = bare_syntax(data)
        if not uid:
            raise DicomError("not a DICOM dataset")
        elements = _Walk(data, SYNTAXES[uid], limits).dataset(0)
        return Header({}, elements, uid, False, b"", 0)
    meta, at = _file_meta(data, start + 4)
    uid = meta.get(0x00020010, b"").decode("ascii", "replace").strip("\x00 ")
    syntax = syntax_of(uid)
    body, offset = data, at
    if syntax.deflated:
        body, offset = inflate(data[at:], limits.max_decoded_bytes), 0
    elements = _Walk(body, syntax, limits).dataset(offset)
    return Header(meta, elements, uid or EXPLICIT_LE, True, data[:start], at)


def inflate(data: bytes, most: int) -> bytes:
    """A deflated dataset (raw deflate, RFC 1951), at most ``most`` bytes of it."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, most + 1)
    except zlib.error as exc:
        raise DicomError("deflated DICOM dataset cannot be inflated") from exc
    if len(out) > most or inflater.unconsumed_tail:
        raise DicomError(
            "deflated DICOM dataset exceeds max_decompressed_bytes", "max_decompressed_bytes"
        )
    return out


def _file_meta(data: bytes, at: int) -> tuple[dict[int, bytes], int]:
    """The group 0002 elements (always explicit VR little endian) and where they end."""
    meta: dict[int, bytes] = {}
    end = len(data)
    while at + 8 <= end:
        group, number = struct.unpack_from("<HH", data, at)
        if group != 0x0002:
            break
        vr = data[at + 4 : at + 6]
        if vr in _LONG_VRS:
            if at + 12 > end:
                raise DicomError("truncated DICOM file meta group")
            length = struct.unpack_from("<I", data, at + 8)[0]
            at += 12
        else:
            length = struct.unpack_from("<H", data, at + 6)[0]
            at += 8
        if length == UNDEFINED or at + length > end:
            raise DicomError("DICOM file meta element longer than the file")
        meta[group << 16 | number] = data[at : at + min(length, 1024)]
        at += length
    if 0x00020010 not in meta:
        raise DicomError("DICOM file meta group without a transfer syntax")
    return meta, at


class _Walk:
    __slots__ = ("count", "data", "end", "explicit", "fmt_h", "fmt_i", "fmt_tag", "limits", "out")

    def __init__(self, data: bytes, syntax: Syntax, limits: WalkLimits) -> None:
        self.data = data
        self.end = len(data)
        self.explicit = syntax.explicit
        self.fmt_tag = "<HH" if syntax.little else ">HH"
        self.fmt_i = "<I" if syntax.little else ">I"
        self.fmt_h = "<H" if syntax.little else ">H"
        self.limits = limits
        self.out: list[Element] = []
        self.count = 0

    def dataset(self, at: int) -> list[Element]:
        self._elements(at, self.end, (), top=True)
        return self.out

    def _header(self, at: int, explicit: bool) -> tuple[int, str, int, int]:
        """(tag, VR, length, where the value starts) of the element at ``at``."""
        data = self.data
        if at + 8 > self.end:
            raise DicomError("truncated DICOM element")
        group, number = struct.unpack_from(self.fmt_tag, data, at)
        tag = group << 16 | number
        if group == 0xFFFE or not explicit:
            length = struct.unpack_from(self.fmt_i, data, at + 4)[0]
            vr = "" if group == 0xFFFE else _dictionary().get(tag, "UN")
            return tag, vr, length, at + 8
        raw = data[at + 4 : at + 6]
        if raw in _LONG_VRS:
            if at + 12 > self.end:
                raise DicomError("truncated DICOM element")
            return (
                tag,
                raw.decode("ascii"),
                struct.unpack_from(self.fmt_i, data, at + 8)[0],
                at + 12,
            )
        if raw not in _VALID_VRS:
            raise DicomError("DICOM element with an invalid value representation")
        return tag, raw.decode("ascii"), struct.unpack_from(self.fmt_h, data, at + 6)[0], at + 8

    def _elements(
        self,
        at: int,
        stop: int,
        parents: tuple[tuple[int, int], ...],
        top: bool = False,
        explicit: bool | None = None,
    ) -> int:
        """Elements from ``at`` to ``stop`` (or to an item's end marker): where they ended."""
        explicit = self.explicit if explicit is None else explicit
        limits = self.limits
        while at < stop:
            if top and at + 8 > stop and not self.data[at:stop].strip(b"\x00"):
                return stop  # trailing padding
            tag, vr, length, value_at = self._header(at, explicit)
            if tag == ITEM_END:
                return value_at
            if tag >> 16 == 0xFFFE:
                raise DicomError("DICOM item marker outside a sequence")
            self.count += 1
            if self.count > limits.max_elements:
                raise DicomError(
                    "DICOM dataset has more elements than max_dicom_elements",
                    "max_dicom_elements",
                )
            if self.count & 1023 == 0:
                limits.check()
            if tag in PIXEL_TAGS and (top or length == UNDEFINED):
                # Pixels, at the top or in an item (an icon's, encapsulated): skipped.
                at = self._skip_pixels(value_at, length)
                self.out.append(Element(tag, vr or "OB", length, b"", parents))
                continue
            explicit_inner = explicit
            if explicit and vr not in TEXT_VRS and vr != "SQ" and not tag >> 16 & 1:
                # A standard element sent with another VR (UN from a writer that did not
                # know it, OB from one hiding it) is read as the dictionary says.
                known = _dictionary().get(tag, "")
                if vr == "UN" and known:
                    vr, explicit_inner = known, False
                elif known in TEXT_VRS:
                    vr = known
            if vr == "SQ" or (length == UNDEFINED and vr in ("UN", "")):
                # UN of undefined length is a sequence in implicit VR little endian.
                inner_explicit = explicit_inner and vr == "SQ"
                self.out.append(Element(tag, "SQ", length, b"", parents))
                at = self._sequence(value_at, length, parents, tag, inner_explicit)
                continue
            if length == UNDEFINED:
                raise DicomError("DICOM element of undefined length that is no sequence")
            end = value_at + length
            if end > self.end:
                raise DicomError("DICOM element longer than the data")
            keep = vr in TEXT_VRS or tag in _KEPT_BINARY
            value = self.data[value_at:end] if keep else b""
            self.out.append(Element(tag, vr, length, value, parents))
            at = end
        if at > stop:
            raise DicomError("DICOM element runs past its item")
        return at

    def _sequence(
        self,
        at: int,
        length: int,
        parents: tuple[tuple[int, int], ...],
        tag: int,
        explicit: bool,
    ) -> int:
        if len(parents) >= self.limits.max_depth:
            raise DicomError(
                "DICOM sequences nested deeper than max_dicom_depth", "max_dicom_depth"
            )
        stop = self.end if length == UNDEFINED else at + length
        if stop > self.end:
            raise DicomError("DICOM sequence longer than the data")
        number = 0
        while at < stop:
            item_tag, _, item_length, value_at = self._header(at, explicit)
            if item_tag == SEQUENCE_END:
                return value_at
            if item_tag != ITEM:
                raise DicomError("DICOM sequence holds something other than items")
            inside = (*parents, (tag, number))
            if item_length == UNDEFINED:
                at = self._elements(value_at, stop, inside, explicit=explicit)
            else:
                item_end = value_at + item_length
                if item_end > stop:
                    raise DicomError("DICOM item longer than its sequence")
                self._elements(value_at, item_end, inside, explicit=explicit)
                at = item_end
            number += 1
        if length == UNDEFINED:
            raise DicomError("truncated DICOM sequence")
        return at

    def _skip_pixels(self, at: int, length: int) -> int:
        """Past the pixel data: by its length, or item by item when encapsulated."""
        if length != UNDEFINED:
            if at + length > self.end:
                raise DicomError("DICOM pixel data longer than the data")
            return at + length
        fmt = self.fmt_tag
        while at + 8 <= self.end:
            group, number = struct.unpack_from(fmt, self.data, at)
            item_length = struct.unpack_from(self.fmt_i, self.data, at + 4)[0]
            tag = group << 16 | number
            at += 8
            if tag == SEQUENCE_END:
                return at
            if tag != ITEM or item_length == UNDEFINED or at + item_length > self.end:
                raise DicomError("malformed encapsulated DICOM pixel data")
            at += item_length
            self.count += 1
            if self.count & 4095 == 0:
                self.limits.check()
        raise DicomError("truncated encapsulated DICOM pixel data")


def _meta_element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) & 1:
        value += b"\x00"
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", 2, tag, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 2, tag, vr, len(value)) + value


def wrap_part10(dataset: bytes, syntax: str, sop_class: str, sop_instance: str) -> bytes:
    """A dataset as DIMSE carries it, in a Part 10 file naming its transfer syntax: read
    (and rewritten) like any file, then unwrapped again."""
    elements = (
        _meta_element(0x0001, b"OB", b"\x00\x01")
        + _meta_element(0x0002, b"UI", sop_class.encode("ascii", "replace"))
        + _meta_element(0x0003, b"UI", sop_instance.encode("ascii", "replace"))
        + _meta_element(0x0010, b"UI", syntax.encode("ascii", "replace"))
        + _meta_element(0x0012, b"UI", IMPLEMENTATION_UID)
    )
    length = _meta_element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"\x00" * PREAMBLE + b"DICM" + length + elements + dataset


def part10_meta(data: bytes) -> dict[int, bytes]:
    """The file meta elements of a Part 10 file ({} when it is none)."""
    start = part10_offset(data)
    return _file_meta(data, start + 4)[0] if start >= 0 else {}


def unwrap_part10(data: bytes) -> bytes:
    """The dataset of a Part 10 file (deflated as it was, if it was)."""
    start = part10_offset(data)
    if start < 0:
        return data
    return data[_file_meta(data, start + 4)[1] :]
