"""XML that is no healthcare format (a SOAP call, an export): element and attribute names as
field names, texts as prose."""

from __future__ import annotations

from gateway.containers.budget import Combined
from gateway.errors import ContainerError
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.formats.generic_json import MAX_VALUES
from gateway.formats.xmldoc import split_tag
from gateway.model import Format, Inspection
from gateway.phi.fields import scan_fields


class GenericXml(FormatHandler):
    formats = frozenset({Format.XML})

    def sniff(self, payload: Payload) -> bool:
        return payload.first == b"<"

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        root = payload.xml()  # unreadable XML raises: an error, which fails closed abroad
        combined = Combined(Format.XML)
        pairs: list[tuple[str, str]] = []
        texts: list[str] = []
        for number, element in enumerate(root.iter()):
            if number > MAX_VALUES:
                raise ContainerError("XML document has too many elements", "max_inspection_seconds")
            text = (element.text or "").strip()
            if text:
                if len(element) == 0:
                    pairs.append((split_tag(str(element.tag))[1], text))
                texts.append(text)
            pairs.extend((split_tag(k)[1], v) for k, v in element.attrib.items())
        combined.add_fields(scan_fields(pairs, "xml"))
        reader.free_text("\n\n".join(texts), "xml", payload.depth, combined)
        return combined.result()
