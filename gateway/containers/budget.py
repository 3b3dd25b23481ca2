"""What every layer of one payload shares: the budget (depth, time, bytes, members) and the
merging of the parts' inspections into one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gateway.containers.encoding import DecodeLimits
from gateway.errors import ContainerError
from gateway.model import Finding, Format, Inspection
from gateway.phi.fields import is_phi


@dataclass
class Budget:
    """Shared by every layer of one payload."""

    decode: DecodeLimits
    max_depth: int
    deadline: float
    max_members: int = 1000
    spent_bytes: int = 0
    # One DICOM dataset: data elements read, sequences within sequences.
    max_dicom_elements: int = 200_000
    max_dicom_depth: int = 12
    # One protobuf payload: fields read, messages within messages.
    max_protobuf_fields: int = 200_000
    max_protobuf_depth: int = 32

    def enter(self, depth: int) -> None:
        if depth > self.max_depth:
            raise ContainerError(
                "payload nested deeper than max_nesting_depth", "max_nesting_depth"
            )
        if time.perf_counter() > self.deadline:
            raise ContainerError(
                "inspection took longer than max_inspection_seconds", "max_inspection_seconds"
            )

    def spend(self, size: int) -> None:
        self.spent_bytes += size
        if self.spent_bytes > self.decode.max_output_bytes:
            raise ContainerError(
                "unpacked content exceeds max_decompressed_bytes", "max_decompressed_bytes"
            )


Scan = Callable[[bytes, int], Inspection]


@dataclass
class Combined:
    """Inspections of the parts of one container, merged into one."""

    format: Format
    findings: list[Finding] = field(default_factory=list)
    phi: bool = False
    error: str = ""
    limit: str = ""
    internal: bool = False
    opaque: str = ""
    first: Inspection | None = None

    def add(self, where: str, part: Inspection) -> None:
        self.findings += [Finding(f.category, f"{where}/{f.location}") for f in part.findings]
        self.phi = self.phi or part.contains_phi
        if part.error and not self.error:
            self.error, self.limit = f"{where}: {part.error}", part.limit
            self.internal = part.internal
        if part.opaque and not self.opaque:
            self.opaque = f"{part.opaque} ({where})"[:80]
        if self.first is None and part.format not in (Format.EMPTY, Format.BINARY, Format.TEXT):
            self.first = part

    def add_fields(self, found: list[Finding]) -> None:
        self.findings += found
        self.phi = self.phi or is_phi(found)

    def result(self) -> Inspection:
        base = self.first or Inspection(self.format)
        return replace(
            base,
            format=self.format,
            findings=tuple(self.findings),
            contains_phi=self.phi,
            error=self.error,
            limit=self.limit,
            internal=self.internal,
            opaque=self.opaque,
            document=None,  # a container is never redacted as one document
        )
