"""Payloads inside payloads: archives, multipart uploads, form fields, base64, UTF-16/32 text,
HL7 or FHIR in a JSON string. Each layer found is unwrapped and scanned again (by the caller's
``scan``), to ``max_nesting_depth`` layers and within ``max_inspection_seconds``; what cannot be
unwrapped is an error, which fails closed abroad.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import io
import lzma
import re
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from gateway.inspect.decode import DecodeError, DecodeLimits, decode_content
from gateway.inspect.fields import is_phi, safe_label, scan_fields
from gateway.model import Finding, Format, Inspection


class NestingError(Exception):
    """A limit fired or a container is unreadable; ``limit`` names the limit, if one did."""

    def __init__(self, reason: str, limit: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


@dataclass
class Budget:
    """Shared by every layer of one payload."""

    decode: DecodeLimits
    max_depth: int
    deadline: float
    max_members: int = 1000
    spent_bytes: int = 0

    def enter(self, depth: int) -> None:
        if depth > self.max_depth:
            raise NestingError("payload nested deeper than max_nesting_depth", "max_nesting_depth")
        if time.perf_counter() > self.deadline:
            raise NestingError(
                "inspection took longer than max_inspection_seconds", "max_inspection_seconds"
            )

    def spend(self, size: int) -> None:
        self.spent_bytes += size
        if self.spent_bytes > self.decode.max_output_bytes:
            raise NestingError(
                "unpacked content exceeds max_decompressed_bytes", "max_decompressed_bytes"
            )


Scan = Callable[[bytes, int], Inspection]


@dataclass
class Combined:
    """Inspections of the parts of one container, merged into one."""

    format: Format
    findings: list[Finding] = field(default_factory=list)
    phi: bool = False
    error: str = ""
    limit: str = ""
    first: Inspection | None = None

    def add(self, where: str, part: Inspection) -> None:
        self.findings += [Finding(f.category, f"{where}/{f.location}") for f in part.findings]
        self.phi = self.phi or part.contains_phi
        if part.error and not self.error:
            self.error, self.limit = f"{where}: {part.error}", part.limit
        if self.first is None and part.format not in (Format.EMPTY, Format.BINARY, Format.TEXT):
            self.first = part

    def add_fields(self, found: list[Finding]) -> None:
        self.findings += found
        self.phi = self.phi or is_phi(found)

    def result(self) -> Inspection:
        base = self.first or Inspection(self.format)
        return replace(
            base,
            format=self.format,
            findings=tuple(self.findings),
            contains_phi=self.phi,
            error=self.error,
            limit=self.limit,
        )


# -- sniffing ---------------------------------------------------------------------------------
_ZIP = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_GZIP = b"\x1f\x8b"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_UNREADABLE_ARCHIVES = (b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07")
_FORM = re.compile(rb"^[\w.\-%+*\[\]]{1,100}=[^&\s]*(?:&[\w.\-%+*\[\]]{1,100}=[^&\s]*)*&?$")
_BASE64_WHOLE = re.compile(rb"^[A-Za-z0-9+/\-_\r\n]+={0,2}\s*$")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/\-_]{48,}={0,2}")
_MULTIPART_START = re.compile(rb"^--([!-~]{1,200})\r?\n")


def is_archive(data: bytes) -> bool:
    return data.startswith((_ZIP, _EMPTY_ZIP, _GZIP, _BZIP2, _XZ, *_UNREADABLE_ARCHIVES)) or (
        len(data) > 262 and data[257:262] == b"ustar"
    )


def unpack_archive(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection:
    combined = Combined(Format.ARCHIVE)
    for where, member in _members(data, budget):
        budget.spend(len(member))
        combined.add(where, scan(member, depth + 1))
    return combined.result()


def _members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    if data.startswith(_GZIP):
        yield "gzip", _decompress(data, "gzip", budget)
    elif data.startswith(_BZIP2):
        yield "bzip2", _stream(bz2.BZ2Decompressor(), data, budget, "bzip2")
    elif data.startswith(_XZ):
        yield "xz", _stream(lzma.LZMADecompressor(), data, budget, "xz")
    elif data.startswith((_ZIP, _EMPTY_ZIP)):
        yield from _zip_members(data, budget)
    elif len(data) > 262 and data[257:262] == b"ustar":
        yield from _tar_members(data, budget)
    else:
        raise NestingError("archive format is not readable (7z, rar)")


def _decompress(data: bytes, coding: str, budget: Budget) -> bytes:
    try:
        return decode_content(data, coding, budget.decode)
    except DecodeError as exc:
        raise NestingError(exc.reason, exc.limit) from None


def _stream(
    decompressor: bz2.BZ2Decompressor | lzma.LZMADecompressor,
    data: bytes,
    budget: Budget,
    name: str,
) -> bytes:
    limit = budget.decode.max_output_bytes
    try:
        out = decompressor.decompress(data, max_length=limit + 1)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise NestingError(f"corrupt {name} data ({type(exc).__name__})") from None
    if len(out) > limit:
        raise NestingError(
            "decompressed body exceeds max_decompressed_bytes", "max_decompressed_bytes"
        )
    if not decompressor.eof:
        raise NestingError(f"truncated {name} data")
    return out


def _zip_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise NestingError("corrupt zip archive") from None
    if len(infos) > budget.max_members:
        raise NestingError(
            "archive has more members than max_archive_members", "max_archive_members"
        )
    for number, info in enumerate(infos):
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise NestingError("encrypted zip member")
        # Declared sizes can lie; the read below is bounded by the budget as well.
        if info.file_size > budget.decode.max_output_bytes:
            raise NestingError(
                "zip member exceeds max_decompressed_bytes", "max_decompressed_bytes"
            )
        try:
            with archive.open(info) as member:
                content = member.read(budget.decode.max_output_bytes + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
            raise NestingError("corrupt zip member") from None
        if len(content) > budget.decode.max_output_bytes:
            raise NestingError(
                "zip member exceeds max_decompressed_bytes", "max_decompressed_bytes"
            )
        yield f"zip[{number}]", content


def _tar_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            members = archive.getmembers()
            if len(members) > budget.max_members:
                raise NestingError(
                    "archive has more members than max_archive_members", "max_archive_members"
                )
            for number, info in enumerate(members):
                if info.size > budget.decode.max_output_bytes:
                    raise NestingError(
                        "tar member exceeds max_decompressed_bytes", "max_decompressed_bytes"
                    )
                handle = archive.extractfile(info) if info.isfile() else None
                if handle is not None:
                    found.append((f"tar[{number}]", handle.read()))
    except (tarfile.TarError, OSError, ValueError):
        raise NestingError("corrupt tar archive") from None
    yield from found


# -- multipart and forms ----------------------------------------------------------------------
def is_multipart(data: bytes) -> bool:
    match = _MULTIPART_START.match(data)
    return match is not None and b"--" + match.group(1) + b"--" in data


def unpack_multipart(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection:
    match = _MULTIPART_START.match(data)
    assert match is not None
    boundary = match.group(1).decode("ascii")
    header = f'Content-Type: multipart/form-data; boundary="{boundary}"\r\n\r\n'.encode()
    message = BytesParser(policy=HTTP).parsebytes(header + data)
    combined = Combined(Format.MULTIPART)
    fields: list[tuple[str, str]] = []
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if not parts:
        raise NestingError("malformed multipart body")
    if len(parts) > budget.max_members:
        raise NestingError(
            "multipart body has more parts than max_archive_members", "max_archive_members"
        )
    for number, part in enumerate(parts):
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = str(part.get_payload()).encode()
        name = part.get_param("name", header="content-disposition")
        label = str(name) if isinstance(name, str) else str(number)
        inner = scan(payload, depth + 1)
        combined.add(f"part[{safe_label(label, keep='._-')}]", inner)
        if isinstance(name, str) and part.get_filename() is None and len(payload) < 1024:
            fields.append((name, payload.decode("utf-8", "replace")))
    combined.add_fields(scan_fields(fields, "form"))
    return combined.result()


def is_form(data: bytes) -> bool:
    return len(data) < 8 * 1024 * 1024 and _FORM.match(data.strip()) is not None


def unpack_form(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection:
    pairs = parse_qsl(data.strip().decode("latin-1"), keep_blank_values=False)
    combined = Combined(Format.FORM)
    combined.add_fields(scan_fields(pairs, "form"))
    for name, value in pairs:
        if len(value) >= 32:  # long enough to hold a message or an encoded document
            budget.spend(len(value))
            combined.add(
                f"form.{safe_label(name, keep='._-')}",
                scan(value.encode("utf-8", "replace"), depth + 1),
            )
    return combined.result()


# -- base64 -----------------------------------------------------------------------------------
def looks_base64(data: bytes) -> bool:
    return len(data) >= 48 and _BASE64_WHOLE.match(data) is not None and b"=" not in data[:-3]


def decode_base64(text: str | bytes) -> bytes | None:
    """Standard or URL-safe alphabet, padding optional; None when it is not base64."""
    raw = text.encode("ascii", "ignore") if isinstance(text, str) else text
    raw = b"".join(raw.split())
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None


def unpack_base64(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection | None:
    """The decoded content's inspection, or None when it decodes to nothing recognisable."""
    decoded = decode_base64(data)
    if decoded is None or not decoded:
        return None
    budget.spend(len(decoded))
    inner = scan(decoded, depth + 1)
    if inner.format in (Format.BINARY, Format.EMPTY) and not inner.findings and not inner.error:
        return None  # random bytes (a hash, a key): not a hidden document
    combined = Combined(Format.TEXT)
    combined.add("base64", inner)
    return combined.result()


# -- wide text --------------------------------------------------------------------------------
_UTF32 = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"))
_UTF16 = ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def wide_encoding(data: bytes) -> str | None:
    """The UTF-16/32 encoding of a payload (with or without a BOM), or None."""
    for bom, name in _UTF32 + _UTF16:
        if data.startswith(bom):
            return name
    head = data[:64]
    if len(head) < 8:
        return None
    if not any(head[1::4]) and not any(head[2::4]) and not any(head[3::4]) and any(head[0::4]):
        return "utf-32-le"
    if not any(head[0::4]) and not any(head[1::4]) and not any(head[2::4]) and any(head[3::4]):
        return "utf-32-be"
    if not any(head[1::2]):
        return "utf-16-le"
    if not any(head[0::2]):
        return "utf-16-be"
    return None


def decode_wide(data: bytes, encoding: str) -> bytes:
    bom = next((b for b, name in _UTF32 + _UTF16 if name == encoding and data.startswith(b)), b"")
    try:
        return data[len(bom) :].decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        raise NestingError(f"malformed {encoding} text") from None
