"""PDF: the text of every page, the information dictionary and XMP metadata, form field
values, annotations and embedded files, read by PDFium in a worker process (``extract.py``,
``gateway.workers``) and judged here like any document: page texts as prose, metadata and
form fields as named values, embedded files handed back to the registry.

What cannot be read fails closed abroad: an encrypted PDF, one past ``limits.max_pdf_pages``,
one its reader refuses, crashes on or takes too long with. A page that is an image without a
text layer (a scan) is content no reader sees into: ``Inspection.opaque``, which
``policy.unreadable_media`` decides. A PDF is never rewritten: with PHI abroad it is blocked
(as C-CDA is), even where the policy says redact.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.containers.archives import is_archive
from gateway.containers.budget import Combined
from gateway.errors import PayloadError
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.model import Format, Inspection
from gateway.phi.fields import scan_fields

PDF = Format("pdf")
# The header may follow up to 1,024 bytes of anything (PDF 1.7, 7.5.2): readers accept it.
_HEADER = re.compile(rb"%PDF-\d")
_HEADER_REACH = 1024


class PdfError(PayloadError):
    """A PDF that cannot be read (encrypted, too many pages, refused by its reader)."""


class Pdf(FormatHandler):
    formats = frozenset({PDF})
    # Read by a worker process: the inspector keeps it off the proxy's event loop.
    slow = True

    def sniff(self, payload: Payload) -> bool:
        data = payload.data
        if data.startswith(b"%PDF-"):
            return True
        # Junk before the header, as readers allow; an archive that stores a PDF is not one.
        return not is_archive(data) and _HEADER.search(data, 0, _HEADER_REACH + 8) is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        content = _merged(reader.extract_shared("pdf", payload.data, _shares(payload.data)))
        if content.get("encrypted"):
            raise PdfError("PDF is encrypted with a password: it cannot be read")
        if content.get("unreadable"):
            raise PdfError("not a readable PDF")
        if content.get("too_many_pages"):
            raise PdfError("PDF has more pages than max_pdf_pages", "max_pdf_pages")
        if content.get("too_deep"):
            raise PdfError("PDF nests objects deeper than its reader reads", "max_nesting_depth")
        if content.get("too_large"):
            raise PdfError("PDF content exceeds max_decompressed_bytes", "max_decompressed_bytes")
        combined = Combined(PDF)
        depth = payload.depth
        for number, text in enumerate(_strings(content.get("page_texts")), 1):
            reader.wrapped(text, depth, combined)
            reader.free_text(text, f"pdf.page[{number}]", depth, combined)
        info = _pairs(content.get("info"))
        fields = _pairs(content.get("fields"))
        combined.add_fields(scan_fields(info, "pdf.info"))
        combined.add_fields(scan_fields(fields, "pdf.form"))
        labelled = "\n".join(f"{name}: {value}" for name, value in info + fields)
        reader.free_text(labelled, "pdf.fields", depth, combined)
        prose = "\n\n".join(_strings(content.get("annotations")) + _strings(content.get("xmp")))
        reader.free_text(prose, "pdf.annotations", depth, combined)
        for number, (_, data) in enumerate(_attachments(content.get("attachments"))):
            combined.add(f"pdf.attachment[{number}]", reader.scan(data, depth + 1))
        scanned = [p for p in content.get("scanned_pages") or () if isinstance(p, int)]
        if scanned:
            texts = reader.recognize("ocr-pdf", payload.data, {"pages": scanned})
            if texts is not None:
                unread: list[int] = []
                for number, recognised in zip(scanned, texts, strict=False):
                    if recognised is None:
                        unread.append(number)
                    else:
                        reader.free_text(recognised, f"pdf.ocr[{number}]", depth, combined)
                scanned = unread + scanned[len(texts) :]
        result = combined.result()
        if scanned:
            pages = ",".join(str(p) for p in scanned[:5]) + ("..." if len(scanned) > 5 else "")
            return result.with_opaque(f"scanned-pdf (page {pages})")
        return result


# A long PDF is read by several idle workers at once, one share of its pages each. The pages
# are counted by their page objects (written "/Type /Page" or "/Type/Page"): a cheap guess,
# which only decides how to share.
_PAGES_PER_SHARE = 5
_MOST_SHARES = 4


def _shares(data: bytes) -> int:
    # "/Type /Pages" (the tree's inner nodes) counts too: a few, against five pages a share.
    pages = data.count(b"/Type /Page") + data.count(b"/Type/Page")
    return max(1, min(_MOST_SHARES, pages // _PAGES_PER_SHARE))


_FLAGS = ("encrypted", "unreadable", "too_many_pages", "too_deep", "too_large")


def _merged(answers: list[Any]) -> dict[str, Any]:
    """The shares' answers as one: pages in page order, the whole document's parts (shard
    0's), every refusal any share gave."""
    if not answers or not all(isinstance(a, dict) for a in answers):
        raise PdfError("PDF reader answered nonsense")
    if len(answers) == 1:
        return dict(answers[0])
    merged: dict[str, Any] = {**answers[0]}
    for flag in _FLAGS:
        if any(a.get(flag) for a in answers):
            merged[flag] = True
    pages: list[tuple[int, str]] = []
    for answer in answers:
        numbers = answer.get("page_numbers")
        texts = answer.get("page_texts")
        if isinstance(numbers, list) and isinstance(texts, list):
            pages += [(n, t) for n, t in zip(numbers, texts, strict=False) if isinstance(n, int)]
    pages.sort(key=lambda page: page[0])
    merged["page_texts"] = [text for _, text in pages]
    for key in ("fields", "annotations", "attachments", "scanned_pages"):
        merged[key] = [item for a in answers for item in (a.get(key) or ())]
    merged["scanned_pages"] = sorted(p for p in merged["scanned_pages"] if isinstance(p, int))
    return merged


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _pairs(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [(str(k), str(v)) for k, v in value.items() if isinstance(v, str)]
    if isinstance(value, list):
        return [(str(p[0]), str(p[1])) for p in value if isinstance(p, list) and len(p) == 2]
    return []


def _attachments(value: Any) -> list[tuple[str, bytes]]:
    from gateway.workers import decode_bytes

    if not isinstance(value, list):
        return []
    found = []
    for item in value:
        if isinstance(item, list) and len(item) == 2:
            data = item[1] if isinstance(item[1], bytes) else decode_bytes(item[1])
            found.append((str(item[0]), data))
    return found
