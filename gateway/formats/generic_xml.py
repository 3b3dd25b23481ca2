"""XML that is no healthcare format (a SOAP call, an export): element and attribute names as
field names, texts as prose."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.containers.budget import Combined
from gateway.containers.encoded import BASE64_RUN
from gateway.errors import ContainerError
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.formats.generic_json import MAX_VALUES
from gateway.formats.xmldoc import split_tag
from gateway.model import Format, Inspection
from gateway.phi.fields import safe_label, scan_fields


class GenericXml(FormatHandler):
    formats = frozenset({Format.XML})

    def sniff(self, payload: Payload) -> bool:
        return payload.first == b"<"

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        root = payload.xml()  # unreadable XML raises: an error, which fails closed abroad
        combined = Combined(Format.XML)
        pairs: list[tuple[str, str]] = []
        texts: list[str] = []
        self._read(root, pairs, texts, [0])
        combined.add_fields(scan_fields(pairs, "xml"))
        text = "\n\n".join(texts)
        reader.wrapped(text, payload.depth, combined)
        reader.free_text(text, "xml", payload.depth, combined)
        # A value in base64 (an attachment in a SOAP call): decoded and read.
        for where, value in _encoded_values(root):
            inner = reader.embedded(value, payload.depth)
            if inner is not None:
                combined.add(f"xml.{where}", inner)
        return combined.result()

    def _read(
        self, element: ET.Element, pairs: list[tuple[str, str]], texts: list[str], count: list[int]
    ) -> None:
        """Element and attribute names as field names; texts as prose. An element of mixed
        content (text beside its children: ``<p><b>SSN</b> 146-32-2440</p>``) is read as one
        paragraph in document order, so a label stays next to the value that follows it;
        the texts of data elements are paragraphs of their own."""
        count[0] += 1
        if count[0] > MAX_VALUES:
            raise ContainerError("XML document has too many elements", "max_inspection_seconds")
        pairs.extend((split_tag(k)[1], v) for k, v in element.attrib.items())
        text = (element.text or "").strip()
        if len(element) == 0:
            if text:
                pairs.append((split_tag(str(element.tag))[1], text))
                texts.append(text)
            return
        if text or any((child.tail or "").strip() for child in element):
            flowing = " ".join(" ".join(element.itertext()).split())
            if flowing:
                texts.append(flowing[:MAX_FLOW])
            for descendant in element.iter():
                if descendant is not element:
                    pairs.extend((split_tag(k)[1], v) for k, v in descendant.attrib.items())
            return
        for child in element:
            self._read(child, pairs, texts, count)


MAX_FLOW = 1024 * 1024  # characters of one mixed-content paragraph


def _encoded_values(root: ET.Element) -> list[tuple[str, str]]:
    """Element texts long enough, and of the alphabet, to be base64 (bounded)."""
    found: list[tuple[str, str]] = []
    for element in root.iter():
        text = (element.text or "").strip()
        if len(text) >= 64 and len(element) == 0 and BASE64_RUN.fullmatch("".join(text.split())):
            found.append((safe_label(split_tag(str(element.tag))[1]), "".join(text.split())))
            if len(found) >= 100:
                break
    return found
