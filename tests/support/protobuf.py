"""Protobuf messages written by the protobuf library from a schema built in code (no protoc):
what an EHR's gRPC API would send, and the gRPC length-prefixed framing around them."""

from __future__ import annotations

import gzip
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from tests.support.notes import family
from tests.support.patients import Patient

_F = descriptor_pb2.FieldDescriptorProto
SERVICE = "ehr.v1.Records"
PUT = f"/{SERVICE}/Put"


def _schema() -> descriptor_pool.DescriptorPool:
    proto = descriptor_pb2.FileDescriptorProto(name="ehr/v1/records.proto", package="ehr.v1")
    proto.syntax = "proto3"
    contact = proto.message_type.add(name="Contact")
    contact.field.add(name="phone", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    contact.field.add(name="relation", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    record = proto.message_type.add(name="Record")
    fields: list[tuple[str, int, int, int, str]] = [
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("birth_date", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("record_number", 3, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("notes", 4, _F.TYPE_STRING, _F.LABEL_REPEATED, ""),
        ("attachment", 5, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, ""),
        ("contact", 6, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".ehr.v1.Contact"),
        ("version", 7, _F.TYPE_INT64, _F.LABEL_OPTIONAL, ""),
        ("checksum", 8, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, ""),
        ("status", 9, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("issued", 10, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ]
    for name, number, kind, label, type_name in fields:
        added = record.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            added.type_name = type_name
    ack = proto.message_type.add(name="Ack")
    ack.field.add(name="accepted", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool


_POOL = _schema()
RECORD: type[Message] = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("ehr.v1.Record")
)
ACK: type[Message] = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("ehr.v1.Ack"))


def record(**fields: Any) -> bytes:
    """An ``ehr.v1.Record`` serialised by the protobuf library."""
    message = RECORD()
    contact = fields.pop("contact", None)
    notes = fields.pop("notes", [])
    for name, value in fields.items():
        setattr(message, name, value)
    message.notes.extend(notes)  # type: ignore[attr-defined]
    if contact is not None:
        for name, value in contact.items():
            setattr(message.contact, name, value)  # type: ignore[attr-defined]
    return message.SerializeToString()


def patient_record(p: Patient, **more: Any) -> bytes:
    """A chart record: the name, birth date and record number each in its own field, and no
    field name on the wire (the surname without the synthetic patients' digits)."""
    return record(
        name=f"{p.given} {family(p)}",
        birth_date=p.birth_date_iso,
        record_number=p.mrn,
        **more,
    )


def clean_record(**more: Any) -> bytes:
    """What an operations API sends: a status, an event time, a version, a checksum."""
    return record(
        status="Final Report",
        issued="2026-11-02T10:15:00Z",
        version=7,
        checksum=bytes(range(32)),
        **more,
    )


def frame(message: bytes, compressed: bool = False) -> bytes:
    """One gRPC length-prefixed message (gzip when ``compressed``)."""
    data = gzip.compress(message) if compressed else message
    return bytes([1 if compressed else 0]) + len(data).to_bytes(4, "big") + data
