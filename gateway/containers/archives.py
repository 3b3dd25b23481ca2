"""Archives and compressed files (zip, tar, gzip, bzip2, xz): each member is handed back to
the registry; 7z and rar cannot be read, which fails closed abroad."""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator

from gateway.containers.budget import Budget, Combined, Scan
from gateway.containers.encoding import decode_content
from gateway.errors import ContainerError, DecodeError
from gateway.model import Format, Inspection

_ZIP = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
_GZIP = b"\x1f\x8b"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_UNREADABLE_ARCHIVES = (b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07")


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
        raise ContainerError("archive format is not readable (7z, rar)")


def _decompress(data: bytes, coding: str, budget: Budget) -> bytes:
    try:
        return decode_content(data, coding, budget.decode)
    except DecodeError as exc:
        raise ContainerError(exc.reason, exc.limit) from None


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
        raise ContainerError(f"corrupt {name} data ({type(exc).__name__})") from None
    if len(out) > limit:
        raise ContainerError(
            "decompressed body exceeds max_decompressed_bytes", "max_decompressed_bytes"
        )
    if not decompressor.eof:
        raise ContainerError(f"truncated {name} data")
    return out


def _zip_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    # NotImplementedError: a central directory that declares a zip version past 6.3.
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        raise ContainerError("corrupt zip archive") from None
    if len(infos) > budget.max_members:
        raise ContainerError(
            "archive has more members than max_archive_members", "max_archive_members"
        )
    for number, info in enumerate(infos):
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise ContainerError("encrypted zip member")
        # Declared sizes can lie; the read below is bounded by the budget as well.
        if info.file_size > budget.decode.max_output_bytes:
            raise ContainerError(
                "zip member exceeds max_decompressed_bytes", "max_decompressed_bytes"
            )
        try:
            with archive.open(info) as member:
                content = member.read(budget.decode.max_output_bytes + 1)
        # zlib.error and LZMAError: a member's deflate or xz stream is corrupt (bzip2 raises
        # OSError).
        except (
            zipfile.BadZipFile,
            OSError,
            ValueError,
            NotImplementedError,
            EOFError,
            zlib.error,
            lzma.LZMAError,
        ):
            raise ContainerError("corrupt zip member") from None
        if len(content) > budget.decode.max_output_bytes:
            raise ContainerError(
                "zip member exceeds max_decompressed_bytes", "max_decompressed_bytes"
            )
        yield f"zip[{number}]", content


def _tar_members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            members = archive.getmembers()
            if len(members) > budget.max_members:
                raise ContainerError(
                    "archive has more members than max_archive_members", "max_archive_members"
                )
            for number, info in enumerate(members):
                if info.size > budget.decode.max_output_bytes:
                    raise ContainerError(
                        "tar member exceeds max_decompressed_bytes", "max_decompressed_bytes"
                    )
                handle = archive.extractfile(info) if info.isfile() else None
                if handle is not None:
                    found.append((f"tar[{number}]", handle.read()))
    except (tarfile.TarError, OSError, ValueError):
        raise ContainerError("corrupt tar archive") from None
    yield from found
