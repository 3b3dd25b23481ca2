"""Office documents: Word, Excel and PowerPoint (OOXML: DOCX, XLSX, PPTX) and OpenDocument
(ODT, ODS, ODP), read in document order the way their applications lay them out: runs of a
paragraph joined, table cells side by side with a tab (a label stays next to its value) and
rows on lines of their own (a spreadsheet reads as a table, header row first), headers and
footers, comments, footnotes, speaker notes, shared strings, dates stored as serial numbers
written as dates, and the document properties (title, author, last modified by, company).
Embedded files are handed back to the registry. A document of images with next to no text (a
scan pasted into Word) is content no reader sees into. Never rewritten: with PHI abroad under
a redact policy it is blocked.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import xml.etree.ElementTree as ET
import zipfile

from gateway.containers.budget import Combined
from gateway.errors import ContainerError, XmlError
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.formats.xmldoc import parse_xml, split_tag
from gateway.model import Format, Inspection
from gateway.phi.fields import scan_fields

OFFICE = Format("office")
_ZIP = b"PK\x03\x04"
_ODF = re.compile(rb"mimetypeapplication/vnd\.oasis\.opendocument\.(\w+)")
# Parts whose text is the document's, in the order a reader meets them.
_TEXT_PARTS = re.compile(
    r"^(?:word/(?:document|header\d*|footer\d*|footnotes|endnotes|comments)\.xml"
    r"|xl/worksheets/sheet\d+\.xml|xl/comments\d*\.xml"
    r"|ppt/(?:slides/slide\d+|notesSlides/notesSlide\d+|comments/comment\d+)\.xml"
    r"|content\.xml|styles\.xml)$"
)
_PROPERTY_PARTS = ("docProps/core.xml", "docProps/app.xml", "docProps/custom.xml", "meta.xml")
_EMBEDDED = re.compile(r"^(?:word|xl|ppt)/embeddings/|^Object \d+/|\.(?:pdf|docx|xlsx|eml|hl7)$")
_IMAGES = re.compile(r"^(?:word|xl|ppt)/media/|^Pictures/")
# A paragraph, a line break, a cell, a row, a tab: what they become in the text.
_PARAGRAPHS = frozenset({"p", "h"})
_BREAKS = frozenset({"br", "cr", "line-break"})
_TABS = frozenset({"tab"})
_CELLS = frozenset({"tc", "table-cell", "c"})
_ROWS = frozenset({"tr", "table-row", "row"})
_TEXT = frozenset({"t", "delText", "instrText", "span", "a"})
SCAN_MAX_CHARS = 20
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_DATE_FORMATS = frozenset(range(14, 23)) | frozenset(range(45, 48))
_DATE_CODE = re.compile(r"(?<!\\)[dmyhs]", re.I)
_QUOTED = re.compile(r'"[^"]*"|\[[^]]*]')  # literal text and [colour]/[locale] codes


def _kind(data: bytes) -> str:
    if not data.startswith(_ZIP):
        return ""
    odf = _ODF.search(data, 0, 256)
    if odf is not None:
        return odf.group(1).decode("ascii", "replace")
    if b"[Content_Types].xml" in data and (b"word/" in data or b"xl/" in data or b"ppt/" in data):
        return "ooxml"
    return ""


class Office(FormatHandler):
    formats = frozenset({OFFICE})
    slow = True  # a zip to unpack

    def sniff(self, payload: Payload) -> bool:
        return bool(_kind(payload.data))

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        try:
            archive = zipfile.ZipFile(io.BytesIO(payload.data))
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError, ValueError):
            raise ContainerError("corrupt office document") from None
        budget = reader.budget
        if len(names) > budget.max_members:
            raise ContainerError(
                "office document has more parts than max_archive_members", "max_archive_members"
            )
        combined = Combined(OFFICE)
        depth = payload.depth
        shared = _shared_strings(archive, reader) if "xl/sharedStrings.xml" in names else []
        dates = _date_styles(archive, reader) if "xl/styles.xml" in names else frozenset()
        spent = 0
        for name in sorted((n for n in names if _TEXT_PARTS.match(n)), key=_reading_order):
            text = _text(_part(archive, name, reader), shared, dates)
            spent += len(text.strip())
            label = f"office.{name}"
            reader.wrapped(text, depth, combined)
            reader.free_text(text, label, depth, combined)
        properties = []
        for name in (n for n in _PROPERTY_PARTS if n in names):
            root = _part(archive, name, reader)
            properties += [
                (split_tag(str(e.tag))[1], (e.text or "").strip())
                for e in root.iter()
                if len(e) == 0 and (e.text or "").strip()
            ]
        combined.add_fields(scan_fields(properties, "office.properties"))
        reader.free_text(
            "\n".join(f"{k}: {v}" for k, v in properties), "office.properties", depth, combined
        )
        for number, name in enumerate(n for n in names if _EMBEDDED.search(n)):
            data = _read(archive, name, reader)
            combined.add(f"office.embedded[{number}]", reader.scan(data, depth + 1))
        result = combined.result()
        if spent < SCAN_MAX_CHARS and any(_IMAGES.match(n) for n in names):
            return result.with_opaque("office document of images")
        return result


def _reading_order(name: str) -> tuple[int, int, str]:
    """Body first, then headers and footers, notes and comments; slides and sheets by number."""
    rank = 1 if re.search(r"header|footer|notes|comment", name) else 0
    number = re.search(r"(\d+)\.xml$", name)
    return rank, int(number.group(1)) if number else 0, name


def _read(archive: zipfile.ZipFile, name: str, reader: Reader) -> bytes:
    budget = reader.budget
    info = archive.getinfo(name)
    limit = budget.decode.max_output_bytes
    if info.file_size > limit or info.flag_bits & 0x1:
        raise ContainerError("office part is too large or encrypted", "max_decompressed_bytes")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise ContainerError(f"corrupt office part ({type(exc).__name__})") from None
    except Exception as exc:  # zlib.error from a corrupt deflate stream
        raise ContainerError(f"corrupt office part ({type(exc).__name__})") from None
    budget.spend(len(data))
    return data


def _part(archive: zipfile.ZipFile, name: str, reader: Reader) -> ET.Element:
    try:
        return parse_xml(_read(archive, name, reader))
    except XmlError as exc:
        raise ContainerError(f"office part {_safe(name)}: {exc.reason}") from None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9/._-]", "_", name)[:80]


def _shared_strings(archive: zipfile.ZipFile, reader: Reader) -> list[str]:
    root = _part(archive, "xl/sharedStrings.xml", reader)
    return [_joined_text(item) for item in root]


def _joined_text(element: ET.Element) -> str:
    """The text of every ``t`` element under ``element`` (the runs of a rich string)."""
    return "".join(t.text or "" for t in element.iter() if split_tag(str(t.tag))[1] == "t")


def _date_styles(archive: zipfile.ZipFile, reader: Reader) -> frozenset[int]:
    """The cell styles (indices into cellXfs) whose number format shows a date."""
    root = _part(archive, "xl/styles.xml", reader)
    custom: dict[int, str] = {}
    styles: list[int] = []
    for element in root.iter():
        local = split_tag(str(element.tag))[1]
        if local == "numFmt":
            custom[int(element.get("numFmtId", "0"))] = element.get("formatCode", "")
        elif local == "cellXfs":
            styles = [int(xf.get("numFmtId", "0")) for xf in element]
    return frozenset(
        index
        for index, fmt in enumerate(styles)
        if fmt in _DATE_FORMATS
        or _DATE_CODE.search(re.sub(r'"[^"]*"|\[[^]]*]', "", custom.get(fmt, "")))
    )


def _text(root: ET.Element, shared: list[str], dates: frozenset[int]) -> str:
    """A part's text in document order (see the module docstring for the layout)."""
    out: list[str] = []
    _walk(root, out, shared, dates, in_cell=False)
    # A row's last cell leaves a tab before the line end: a table reader wants none there.
    return "\n".join(line.rstrip("\t ") for line in "".join(out).split("\n"))


def _walk(
    element: ET.Element, out: list[str], shared: list[str], dates: frozenset[int], in_cell: bool
) -> None:
    local = split_tag(str(element.tag))[1]
    if local == "c" and element.get("r") is not None:  # a spreadsheet cell
        out.append(_cell(element, shared, dates) + "\t")
        return
    if element.text and (local in _TEXT or local in _PARAGRAPHS):
        out.append(element.text)
    elif local == "s":  # ODF's run of spaces
        out.append(" ")
    cell = in_cell or local in _CELLS
    for child in element:
        _walk(child, out, shared, dates, cell)
        if child.tail and child.tail.strip():  # ODF's mixed content
            out.append(child.tail)
    if local in _BREAKS:
        out.append("\n")
    elif local in _TABS:
        out.append("\t")
    elif local in _PARAGRAPHS:
        out.append(" " if in_cell else "\n")
    elif local in _CELLS:
        out.append("\t")
    elif local in _ROWS:
        out.append("\n")


def _cell(cell: ET.Element, shared: list[str], dates: frozenset[int]) -> str:
    kind = cell.get("t", "n")
    value = ""
    for child in cell:
        name = split_tag(str(child.tag))[1]
        if name == "v":
            value = child.text or ""
        elif name == "is":  # an inline string
            value = _joined_text(child)
    if kind == "s":
        try:
            return shared[int(value)]
        except (ValueError, IndexError):
            return ""
    if kind == "n" and value and int(cell.get("s", "0") or 0) in dates:
        try:
            return (_EXCEL_EPOCH + dt.timedelta(days=float(value))).isoformat()
        except (ValueError, OverflowError):
            return value
    return value
