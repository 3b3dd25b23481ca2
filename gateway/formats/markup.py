"""HTML and RTF, read as the text a person sees: HTML with its entities undone, block elements,
table rows and ``<br>`` as line breaks, table cells side by side (a label stays next to its
value), script and style ignored; RTF with its control words dropped, ``\\par`` as a line
break, ``\\'hh`` and ``\\uN`` escapes undone, font, colour and style tables skipped and the
document information (title, author, comments) kept. What the text holds is judged like any
text; documents inside it are handed back to the registry. Neither is ever rewritten: with PHI
abroad under a redact policy they are blocked.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from gateway.containers.budget import Combined
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.model import Format, Inspection
from gateway.phi.freetext import decode_text
from gateway.phi.patterns import words

HTML = Format("html")
RTF = Format("rtf")
MAX_TEXT = 16 * 1024 * 1024  # characters of text one document may yield

_HTML_START = re.compile(
    rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S
)
_BLOCKS = frozenset(
    words(
        "address article aside blockquote br caption dd div dl dt fieldset figcaption figure "
        "footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody "
        "tfoot thead title tr ul"
    )
)
_CELLS = frozenset({"td", "th"})
_HIDDEN = frozenset({"script", "style", "template", "noscript"})


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.size = 0
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self._add("\n")
        elif tag in _CELLS:
            self._add(" ")
        for name, value in attrs:  # what a page shows besides its text
            if name in ("alt", "title", "value", "placeholder") and value:
                self._add(f" {value} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self._add("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._add(data)

    def _add(self, text: str) -> None:
        if self.size < MAX_TEXT:
            self.pieces.append(text)
            self.size += len(text)


def html_text(markup: str) -> str:
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    lines = ("".join(parser.pieces)).splitlines()
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


class Html(FormatHandler):
    formats = frozenset({HTML})

    def sniff(self, payload: Payload) -> bool:
        return _HTML_START.match(payload.data[:4096]) is not None

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        text = html_text(decode_text(payload.data))
        return _read_text(HTML, text, "html", payload, reader)


def _read_text(
    fmt: Format, text: str, location: str, payload: Payload, reader: Reader
) -> Inspection:
    combined = Combined(fmt)
    reader.wrapped(text, payload.depth, combined)
    reader.free_text(text, location, payload.depth, combined)
    return combined.result()


# -- RTF ----------------------------------------------------------------------------------------
_RTF_TOKEN = re.compile(
    r"\\(?P<word>[a-zA-Z]{1,32})(?P<arg>-?\d{1,10})? ?"
    r"|\\'(?P<hex>[0-9a-fA-F]{2})"
    r"|\\(?P<symbol>[^a-zA-Z'])"
    r"|(?P<open>\{)|(?P<close>\})"
    r"|(?P<text>[^\\{}\r\n]+)"
    r"|[\r\n]+"
)
# Groups whose content is no text of the document (fonts, colours, styles, pictures, ...).
_RTF_SKIP = frozenset(
    words(
        "fonttbl colortbl stylesheet listtable listoverridetable rsidtbl generator pict object "
        "themedata colorschememapping datastore latentstyles xmlnstbl mmathPr pgdsctbl revtbl "
        "filetbl"
    )
)
_RTF_BREAKS = {
    "par": "\n",
    "line": "\n",
    "row": "\n",
    "sect": "\n",
    "page": "\n",
    "cell": " ",
    "tab": "\t",
}
_RTF_SYMBOLS = {"~": " ", "-": "", "_": "-", "\\": "\\", "{": "{", "}": "}"}


def rtf_text(source: str) -> str:
    """The text of an RTF document (the information group's title, author and comments too)."""
    out: list[str] = []
    stack: list[tuple[bool, int]] = []
    skipping = False
    skip_chars = 1  # \ucN: characters after a \uN that stand in for it
    pending_skip = 0
    starred = False
    size = 0
    for match in _RTF_TOKEN.finditer(source):
        kind = "word" if match.group("word") else match.lastgroup
        if kind == "open":
            stack.append((skipping, skip_chars))
            starred = False
            continue
        if kind == "close":
            skipping, skip_chars = stack.pop() if stack else (False, 1)
            continue
        if kind == "symbol":
            symbol = match.group("symbol")
            if symbol == "*":
                starred = True  # an optional destination: skipped unless we know it
                skipping = True
            elif not skipping:
                out.append(_RTF_SYMBOLS.get(symbol, ""))
            continue
        if kind == "word":
            word, arg = match.group("word"), match.group("arg")
            if word in _RTF_SKIP or (starred and word not in ("title", "author", "comment")):
                skipping = True
            elif word in (
                "title",
                "author",
                "operator",
                "subject",
                "keywords",
                "comment",
                "doccomm",
                "company",
            ):
                skipping = False
                out.append("\n")
            elif word == "uc" and arg:
                skip_chars = int(arg)
            elif word == "u" and arg and not skipping:
                out.append(chr(int(arg) % 65536))
                pending_skip = skip_chars
            elif not skipping and word in _RTF_BREAKS:
                out.append(_RTF_BREAKS[word])
            starred = False
            continue
        if skipping:
            continue
        if kind == "hex":
            if pending_skip:
                pending_skip -= 1
                continue
            out.append(bytes.fromhex(match.group("hex")).decode("cp1252", "replace"))
        elif kind == "text":
            text = match.group("text")
            if pending_skip:
                drop, pending_skip = min(pending_skip, len(text)), max(0, pending_skip - len(text))
                text = text[drop:]
            out.append(text)
        size += len(out[-1]) if out else 0
        if size > MAX_TEXT:
            break
    return "".join(out)


class Rtf(FormatHandler):
    formats = frozenset({RTF})

    def sniff(self, payload: Payload) -> bool:
        return payload.data.startswith(b"{\\rtf")

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        text = rtf_text(payload.data.decode("latin-1"))
        return _read_text(RTF, text, "rtf", payload, reader)
