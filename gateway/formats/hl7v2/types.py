"""Field data types per HL7 v2 version, from hl7apy's structure definitions (loaded once per
version and segment, then cached): the redactor needs to know that PID-7 is a TS in 2.3 and a
DTM in 2.8, that PID-11 is an XAD, that PV1-19 is a CX."""

from __future__ import annotations

import functools

_HL7APY_VERSIONS = (
    "2.1",
    "2.2",
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.8",
    "2.8.1",
    "2.8.2",
)


def reference_version(version: str) -> str:
    """The hl7apy structure set to read a message of ``version`` with."""
    if version in _HL7APY_VERSIONS:
        return version
    short = version[:3]
    return short if short in _HL7APY_VERSIONS else "2.5"


@functools.lru_cache(maxsize=1024)
def field_types(segment: str, version: str) -> dict[int, str]:
    """{field number: data type} for a segment, {} for Z-segments and unknown ones."""
    from hl7apy import load_reference
    from hl7apy.exceptions import ChildNotFound, InvalidName

    try:
        ref = load_reference(segment, "Segment", reference_version(version))
    except (ChildNotFound, InvalidName, KeyError, ValueError):
        return {}
    types: dict[int, str] = {}
    for child in ref[1]:
        name, definition = child[0], child[1]
        number = name.rsplit("_", 1)[-1]
        if number.isdigit():
            types[int(number)] = str(definition[2])
    return types


def warm_up(versions: tuple[str, ...] = ("2.3", "2.5.1")) -> None:
    for version in versions:
        for segment in ("PID", "PD1", "NK1", "PV1", "PV2", "OBX", "OBR", "NTE", "IN1", "GT1"):
            field_types(segment, version)
