"""JSON that is no healthcare format (an API's own envelope, an export, a ticket): named values
of every object, documents carried in string values (handed back to the registry), documents
of other formats inside the tree (FHIR resources), and the plain strings as prose."""

from __future__ import annotations

from typing import Any

from gateway.containers.budget import Combined
from gateway.errors import ContainerError
from gateway.formats.base import FormatHandler, Payload, Reader
from gateway.model import Format, Inspection
from gateway.phi.fields import safe_label, scan_fields

MAX_VALUES = 100_000  # strings (or XML elements) one document may hold to be inspected
EMBEDDED_MIN = 20  # shorter strings cannot hold a document
FREE_TEXT_MIN = 8  # shorter strings cannot hold a labelled identifier
_JSON_START = (b"{", b"[")


class GenericJson(FormatHandler):
    formats = frozenset({Format.JSON})

    def sniff(self, payload: Payload) -> bool:
        return payload.first in _JSON_START

    def inspect(self, payload: Payload, reader: Reader) -> Inspection:
        document, error = payload.json()
        if error:
            return Inspection(Format.JSON, error="malformed JSON")
        combined = Combined(Format.JSON)
        owners = [h for h in reader.formats if h.claims_json_nodes]
        for handler in owners:
            found = handler.within_json(document, reader, payload.depth)
            if found is not None:
                combined.add(*found)
        walk = _Walk(reader, payload.depth, combined, owners)
        walk.node(document, "$")
        # The document's plain strings, one record per line pair (a blank line between them
        # keeps a name in one value from pairing with a phone number in another).
        reader.free_text("\n\n".join(walk.strings), "$.strings", payload.depth, combined)
        return combined.result()


class _Walk:
    """Named values of every object, documents hidden in string values, and the plain
    strings (collected for one free-text pass)."""

    def __init__(
        self, reader: Reader, depth: int, combined: Combined, owners: list[FormatHandler]
    ) -> None:
        self.reader = reader
        self.depth = depth
        self.combined = combined
        self.owners = owners
        self.strings: list[str] = []

    def node(self, node: Any, path: str) -> None:
        if len(self.strings) > MAX_VALUES:
            raise ContainerError(
                "JSON document has too many values to inspect", "max_inspection_seconds"
            )
        if isinstance(node, dict):
            if any(owner.owns_json_node(node) for owner in self.owners):
                return  # inspected by its format (within_json)
            pairs = [(k, v) for k, v in node.items() if isinstance(v, str)]
            self.combined.add_fields(scan_fields(pairs, path))
            for key, value in node.items():
                self.node(value, f"{path}.{safe_label(key)}")
        elif isinstance(node, list):
            for value in node:
                self.node(value, f"{path}[]")
        elif isinstance(node, str):
            inner = self.reader.embedded(node, self.depth) if len(node) >= EMBEDDED_MIN else None
            if inner is not None:
                self.combined.add(path, inner)
            elif len(node) >= FREE_TEXT_MIN:
                self.strings.append(node)
