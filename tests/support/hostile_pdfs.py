"""Hostile PDFs, written object by object (no PDF library writes these on purpose): a
decompression bomb in a content stream, objects nested past any reader's limit, a page tree
of tens of thousands of pages, a page tree that contains itself. Each is small on the wire."""

from __future__ import annotations

import zlib

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_PAGE = (
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
    b"/Resources << /Font << /F1 5 0 R >> >> %s>>"
)
_TEXT = b"BT /F1 12 Tf 72 720 Td (Quarterly safety bulletin) Tj ET"


def _pdf(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _stream(content: bytes, flate: bool) -> bytes:
    data = zlib.compress(content, 9) if flate else content
    kind = b"/Filter /FlateDecode " if flate else b""
    return b"<< /Length %d %s>>\nstream\n" % (len(data), kind) + data + b"\nendstream"


def _document(
    *,
    kids: int = 1,
    count: int = 1,
    page_extra: bytes = b"",
    content: bytes = _TEXT,
    flate: bool = False,
    catalog_extra: bytes = b"",
) -> bytes:
    refs = b" ".join(b"3 0 R" for _ in range(kids))
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R %s>>" % catalog_extra,
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, count),
            _PAGE % page_extra,
            _stream(content, flate),
            _FONT,
        ]
    )


def plain() -> bytes:
    """The control: one page of harmless text, as the hostile ones are built."""
    return _document()


def flate_bomb(inflated: int = 400 * 1024 * 1024) -> bytes:
    """A content stream of a few hundred kilobytes that inflates to ``inflated`` bytes."""
    return _document(content=_TEXT + b" " * inflated, flate=True)


def deeply_nested(depth: int = 100_000) -> bytes:
    """An array and a dictionary nested ``depth`` levels deep."""
    return _document(
        catalog_extra=b"/Deep " + b"[" * depth + b"]" * depth + b" ",
        page_extra=b"/X " + b"<< /A " * depth + b">>" * depth + b" ",
    )


def many_pages(pages: int = 50_000) -> bytes:
    """A page tree of ``pages`` pages (the same page object, listed that often)."""
    return _document(kids=pages, count=pages)


def page_tree_cycle() -> bytes:
    """Pages whose kids lead back to themselves."""
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Pages /Parent 2 0 R /Kids [3 0 R 2 0 R] /Count 2 >>",
        ]
    )
