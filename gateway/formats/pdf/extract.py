"""What a PDF holds, read with PDFium in a worker process (gateway.workers): the text of every
page in content order, the document information dictionary, an XMP packet, form field names
and values, annotation texts, embedded files, and which pages are images without text (scans).

Runs only in the worker: it answers plain JSON values, never an object of PDFium's."""

from __future__ import annotations

import ctypes
import re
import zlib
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

# A page with an image and fewer characters than this is a scan: its text is in the pixels.
SCAN_MAX_CHARS = 20
_XMP = re.compile(rb"<x:xmpmeta\b.*?</x:xmpmeta>", re.DOTALL)
_ANNOTATION_KEYS = (b"Contents", b"T", b"Subj", b"RC")


def extract_pdf(data: bytes, args: dict[str, Any]) -> dict[str, Any]:
    max_pages = int(args["max_pages"])
    max_bytes = int(args["max_bytes"])
    if inflated_bytes(data, max_bytes) > max_bytes:
        return {"too_large": True}  # a decompression bomb in its streams
    if _DEEP_ARRAY.search(data) or _DEEP_DICTIONARY.search(data):
        return {"too_deep": True}
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        # PDFium's own fixed messages ("Incorrect password error", "Data format error").
        if "password" in str(exc).lower():
            return {"encrypted": True}
        return {"unreadable": "not a readable PDF"}
    shard, shards = (int(n) for n in args.get("shard", (0, 1)))
    try:
        return _read(pdf, data, max_pages, max_bytes // shards, (shard, shards))
    finally:
        pdf.close()


def inflated_bytes(data: bytes, budget: int) -> int:
    """How many bytes the document's Flate streams inflate to, counted up to just past
    ``budget``. PDFium inflates a content stream whole, however large, before it reads a
    character: a few hundred kilobytes of zeros become gigabytes. Every ``stream`` keyword
    is tried as the start of a zlib stream (what is not one fails at once), output is
    discarded as it is counted."""
    total = 0
    for match in _STREAM.finditer(data):
        total += _inflate(data, match.end(), budget - total)
        if total > budget:
            break
    return total


def _inflate(data: bytes, start: int, budget: int) -> int:
    inflater = zlib.decompressobj()
    total, position, chunk = 0, start, b""
    try:
        while True:
            if not chunk:
                if position >= len(data):
                    return total
                chunk = data[position : position + _CHUNK]
                position += _CHUNK
            total += len(inflater.decompress(chunk, _CHUNK * 16))
            if total > budget or inflater.eof:
                return total
            chunk = inflater.unconsumed_tail
    except zlib.error:
        return total


_STREAM = re.compile(rb"stream\r?\n")
# Arrays or dictionaries opened MAX_NESTING times in a row (names between them at most).
# PDFium drops what is nested past its own limit; another reader may show it, so such a
# document is refused rather than read in part. Two patterns with a literal first byte:
# the search skips to each candidate instead of trying every position.
MAX_NESTING = 32
_NAME = rb"\s*(?:/[^\s\[\]<>()/]{1,32}\s*)?"
_MORE = rb"(?:(?:\[|<<)" + _NAME + rb"){%d}" % (MAX_NESTING - 1)
_DEEP_ARRAY = re.compile(rb"\[" + _NAME + _MORE)
_DEEP_DICTIONARY = re.compile(rb"<<" + _NAME + _MORE)
_CHUNK = 64 * 1024


def _has_image(page: pdfium.PdfPage) -> bool:
    return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))


def _read(
    pdf: pdfium.PdfDocument, data: bytes, max_pages: int, max_bytes: int, shard: tuple[int, int]
) -> dict[str, Any]:
    """``shard`` (k, n): read pages k, k+n, k+2n, ... (0-based); shard 0 also reads what
    belongs to the whole document (information, XMP, attached files)."""
    pages = len(pdf)
    first, step = shard
    whole = first == 0
    out: dict[str, Any] = {
        "pages": pages,
        "page_numbers": [],
        "page_texts": [],
        "scanned_pages": [],
        "info": {k: v for k, v in pdf.get_metadata_dict().items() if v} if whole else {},
        "xmp": [m.group(0).decode("utf-8", "replace") for m in _XMP.finditer(data)][:4]
        if whole
        else [],
        "fields": [],
        "annotations": [],
        "attachments": [],
    }
    if pages > max_pages:
        out["too_many_pages"] = True
        return out
    pdf.init_forms()
    form = pdf.formenv.raw if pdf.formenv is not None else None
    spent = 0
    for index in range(first, pages, step):
        page = pdf[index]
        try:
            textpage = page.get_textpage()
            text = textpage.get_text_range()
            textpage.close()
            out["page_numbers"].append(index + 1)
            out["page_texts"].append(text)
            spent += len(text)
            # Only a page with next to no text can be a scan: the others' objects are not
            # walked (a page of text holds thousands).
            if len("".join(text.split())) < SCAN_MAX_CHARS and _has_image(page):
                out["scanned_pages"].append(index + 1)
            spent += _annotations(page, form, out, max_bytes - spent)
        finally:
            page.close()
        if spent > max_bytes:
            out["too_large"] = True
            return out
    for number in range(pdf.count_attachments() if whole else 0):
        attachment = pdf.get_attachment(number)
        content = bytes(attachment.get_data())
        spent += len(content)
        if spent > max_bytes:
            out["too_large"] = True
            return out
        out["attachments"].append([attachment.get_name(), content])
    return out


def _annotations(page: Any, form: Any, out: dict[str, Any], budget: int) -> int:
    """Form field values, annotation texts and attached files of one page; the bytes read."""
    spent = 0
    for index in range(pdfium_c.FPDFPage_GetAnnotCount(page.raw)):
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, index)
        if not annot:
            continue
        try:
            subtype = pdfium_c.FPDFAnnot_GetSubtype(annot)
            if subtype == pdfium_c.FPDF_ANNOT_WIDGET and form is not None:
                name = _string(pdfium_c.FPDFAnnot_GetFormFieldName, form, annot)
                value = _string(pdfium_c.FPDFAnnot_GetFormFieldValue, form, annot)
                if value:
                    out["fields"].append([name, value])
                    spent += len(value)
            for key in _ANNOTATION_KEYS:
                text = _string(pdfium_c.FPDFAnnot_GetStringValue, annot, key)
                if text:
                    out["annotations"].append(text)
                    spent += len(text)
            if subtype == pdfium_c.FPDF_ANNOT_FILEATTACHMENT:
                attached = pdfium_c.FPDFAnnot_GetFileAttachment(annot)
                if attached:
                    content = _attachment_bytes(attached, budget - spent)
                    spent += len(content)
                    out["attachments"].append(["annotation", content])
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return spent


def _string(call: Any, *args: Any) -> str:
    """A UTF-16LE string from PDFium's ask-for-the-length-then-fill convention:
    ``call(*args, buffer, size)``."""
    size = int(call(*args, None, 0))
    if size <= 2:
        return ""
    buffer = ctypes.create_string_buffer(size)
    call(*args, ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ushort)), size)
    return buffer.raw[: size - 2].decode("utf-16-le", "replace")


def _attachment_bytes(attachment: Any, budget: int) -> bytes:
    length = ctypes.c_ulong()
    if not pdfium_c.FPDFAttachment_GetFile(attachment, None, 0, ctypes.byref(length)):
        return b""
    size = min(length.value, max(budget, 0) + 1)
    buffer = ctypes.create_string_buffer(size)
    pdfium_c.FPDFAttachment_GetFile(attachment, buffer, size, ctypes.byref(length))
    return buffer.raw[:size]
