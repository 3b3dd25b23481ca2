"""Images and audio (PNG, JPEG, TIFF, GIF, BMP, WebP, HEIC/AVIF; WAV, MP3, M4A/MP4, OGG, FLAC,
DSS/DS2 dictation), recognised by their bytes whatever the Content-Type says.

Their text metadata is read and judged like any text: PNG tEXt/zTXt/iTXt, EXIF, XMP, IPTC,
JPEG and GIF comments (by Pillow, in a worker process), ID3 tags of MP3 files and RIFF
INFO of WAV files (here: a bounded walk of their frames). Their pixels and sound cannot be read
without OCR or speech recognition, so every one is content no reader sees into
(``Inspection.opaque``): ``policy.unreadable_media`` decides what that means abroad (default:
block). A photo with a name in its EXIF is PHI even where media are allowed. With
``ocr.enabled`` an image's text is recognised (``gateway/formats/ocr.py``) and judged; an image
all of whose frames OCR read is no longer opaque (a photo, with next to no text, still is).
"""

from __future__ import annotations

import struct
from typing import Any

from gateway.containers.budget import Combined
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.model import Format, Inspection
from gateway.phi.fields import scan_fields

MEDIA = Format("media")
# The images tesseract reads (through Pillow): HEIC has no decoder in Pillow.
_OCR_TYPES = frozenset({"png", "jpeg", "tiff", "gif", "bmp", "webp"})
_MAX_TAG_BYTES = 1024 * 1024
# The first byte of a BMP's info-header size: 12, 40, 64, 108 or 124.
_BMP_HEADER_SIZES = frozenset({b"\x0c", b"(", b"@", b"l", b"|"})


def _kind(data: bytes) -> tuple[str, str] | None:
    """(kind, file type) of an image, audio or video file, from its first bytes."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "image", "tiff"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image", "gif"
    if head.startswith(b"BM") and data[14:15] in _BMP_HEADER_SIZES:
        return "image", "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "wav"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"):
            return "image", "heic"
        if brand in (b"M4A ", b"M4B "):
            return "audio", "m4a"
        return "video", "mp4"
    if head.startswith(b"ID3"):
        return "audio", "mp3"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "audio", "mp3"  # an MPEG audio frame without tags
    if head.startswith(b"OggS"):
        return "audio", "ogg"
    if head.startswith(b"fLaC"):
        return "audio", "flac"
    if head[1:4] in (b"dss", b"ds2") and head[0] in (2, 3):
        return "audio", "dss"
    return None


class Media(FormatHandler):
    formats = frozenset({MEDIA})
    slow = True  # image metadata is read by a worker process

    def sniff(self, payload: Payload) -> bool:
        return _kind(payload.data) is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        found = _kind(payload.data)
        assert found is not None
        kind, filetype = found
        pairs: list[tuple[str, str]] = []
        if kind == "image":
            answer = reader.extract("image", payload.data)
            if isinstance(answer, list):
                pairs = [(str(p[0]), str(p[1])) for p in answer if isinstance(p, list)]
        elif filetype == "mp3":
            pairs = id3_texts(payload.data)
        elif filetype == "wav":
            pairs = riff_info(payload.data)
        combined = Combined(MEDIA)
        combined.add_fields(scan_fields(pairs, "media.metadata"))
        text = "\n".join(f"{name}: {value}" for name, value in pairs)
        reader.free_text(text, "media.metadata", payload.depth, combined)
        opaque = kind
        if kind == "image" and filetype in _OCR_TYPES:
            frames = reader.recognize("ocr-image", payload.data, {})
            if frames is not None:
                for number, page in enumerate(frames, 1):
                    if page is not None:
                        reader.free_text(page, f"media.ocr[{number}]", payload.depth, combined)
                # Read only when every frame was: a frame OCR did not read may hold anything.
                if frames and all(page is not None for page in frames):
                    opaque = ""
                else:
                    opaque = "image (OCR read no text)"
        result = combined.result()
        return Inspection(
            MEDIA,
            message_type=filetype,
            findings=result.findings,
            contains_phi=result.contains_phi,
            opaque=opaque,
        )


def id3_texts(data: bytes) -> list[tuple[str, str]]:
    """The text frames (T***, COMM, USLT, TXXX) of an ID3v2.3/2.4 tag: names and values."""
    if not data.startswith(b"ID3") or len(data) < 10:
        return []
    major, flags = data[3], data[5]
    size = _syncsafe(data[6:10])
    end = min(10 + size, len(data), 10 + _MAX_TAG_BYTES)
    at = 10
    if flags & 0x40 and at + 4 <= end:  # an extended header first
        raw = data[at : at + 4]
        at += _syncsafe(raw) if major == 4 else struct.unpack(">I", raw)[0]
    found: list[tuple[str, str]] = []
    while at + 10 <= end and len(found) < 256:
        frame_id = data[at : at + 4]
        if not frame_id.strip(b"\x00"):
            break  # padding
        raw = data[at + 4 : at + 8]
        length = _syncsafe(raw) if major == 4 else struct.unpack(">I", raw)[0]
        body = data[at + 10 : at + 10 + length]
        at += 10 + length
        if frame_id[:1] == b"T" or frame_id in (b"COMM", b"USLT"):
            text = _id3_text(body, comment=frame_id in (b"COMM", b"USLT"))
            if text:
                found.append((frame_id.decode("latin-1"), text))
    return found


def _syncsafe(raw: bytes) -> int:
    return (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3] if len(raw) == 4 else 0


_ID3_ENCODINGS = ("latin-1", "utf-16", "utf-16-be", "utf-8")


def _id3_text(body: bytes, comment: bool) -> str:
    if not body:
        return ""
    encoding = _ID3_ENCODINGS[body[0]] if body[0] < 4 else "latin-1"
    text = body[4:] if comment else body[1:]  # COMM/USLT: a language code first
    return text.decode(encoding, "replace").replace("\x00", " ").strip()


def riff_info(data: bytes) -> list[tuple[str, str]]:
    """The INFO list of a RIFF (WAV) file: artist, comment, title and the like."""
    found: list[tuple[str, str]] = []
    at = 12
    while at + 8 <= min(len(data), _MAX_TAG_BYTES * 16) and len(found) < 256:
        chunk, size = data[at : at + 4], struct.unpack("<I", data[at + 4 : at + 8])[0]
        if chunk == b"LIST" and data[at + 8 : at + 12] == b"INFO":
            inner, stop = at + 12, min(at + 8 + size, len(data))
            while inner + 8 <= stop:
                key = data[inner : inner + 4].decode("latin-1", "replace")
                length = struct.unpack("<I", data[inner + 4 : inner + 8])[0]
                value = data[inner + 8 : inner + 8 + length].rstrip(b"\x00")
                found.append((key, value.decode("latin-1", "replace")))
                inner += 8 + length + (length & 1)
        at += 8 + size + (size & 1)
    return found


def image_metadata(data: bytes, args: dict[str, Any]) -> list[list[str]]:
    """The text an image file carries besides its pixels (run in a worker: Pillow parses
    the container in native code). Pixels are never decoded."""
    import io

    from PIL import ExifTags, Image, IptcImagePlugin

    found: list[list[str]] = []
    with Image.open(io.BytesIO(data)) as image:
        for key, value in image.info.items():
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            if isinstance(text, str) and key not in ("icc_profile", "exif"):
                found.append([str(key), text[:65536]])
        # IPTC-IIM (JPEG APP13, TIFF): captions, keywords, bylines, by record:dataset.
        for (record, dataset), raw in (IptcImagePlugin.getiptcinfo(image) or {}).items():
            for value in raw if isinstance(raw, list) else [raw]:
                if isinstance(value, bytes) and value.strip():
                    text = value.decode("utf-8", "replace")[:65536]
                    found.append([f"IPTC {record}:{dataset}", text])
        chunks = getattr(image, "text", None)  # PNG tEXt, zTXt, iTXt
        if isinstance(chunks, dict):
            found += [[str(k), str(v)[:65536]] for k, v in chunks.items()]
        exif = image.getexif()
        tags = {**dict(exif), **dict(exif.get_ifd(ExifTags.IFD.Exif))}
        for tag, value in tags.items():
            if isinstance(value, bytes):
                text = value.decode("utf-8", "replace").strip("\x00")
            else:
                text = value
            if isinstance(text, str) and text.strip():
                found.append([ExifTags.TAGS.get(tag, str(tag)), text[:65536]])
    return found[:512]
