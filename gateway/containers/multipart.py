"""multipart/form-data bodies and URL-encoded forms: each part or long field value is handed
back to the registry; short named fields are read as named values."""

from __future__ import annotations

import re
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from gateway.containers.budget import Budget, Combined, Scan
from gateway.errors import ContainerError
from gateway.model import Format, Inspection
from gateway.phi.fields import safe_label, scan_fields
from gateway.phi.freetext import scan_file_name

_FORM = re.compile(rb"^[\w.\-%+*\[\]]{1,100}=[^&\s]*(?:&[\w.\-%+*\[\]]{1,100}=[^&\s]*)*&?$")
_MULTIPART_START = re.compile(rb"^--([!-~]{1,200})\r?\n")


def is_multipart(data: bytes) -> bool:
    match = _MULTIPART_START.match(data)
    return match is not None and b"--" + match.group(1) + b"--" in data


def unpack_multipart(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection:
    match = _MULTIPART_START.match(data)
    assert match is not None
    boundary = match.group(1).decode("ascii")
    header = f'Content-Type: multipart/form-data; boundary="{boundary}"\r\n\r\n'.encode()
    message = BytesParser(policy=HTTP).parsebytes(header + data)
    combined = Combined(Format.MULTIPART)
    fields: list[tuple[str, str]] = []
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if not parts:
        raise ContainerError("malformed multipart body")
    if len(parts) > budget.max_members:
        raise ContainerError(
            "multipart body has more parts than max_archive_members", "max_archive_members"
        )
    for number, part in enumerate(parts):
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = str(part.get_payload()).encode()
        name = part.get_param("name", header="content-disposition")
        label = str(name) if isinstance(name, str) else str(number)
        inner = scan(payload, depth + 1)
        where = f"part[{safe_label(label, keep='._-')}]"
        combined.add(where, inner)
        filename = part.get_filename()
        if isinstance(filename, str) and filename:
            named = scan_file_name(filename, f"{where}.filename")
            combined.findings += named.findings
            combined.phi = combined.phi or named.contains_phi
        if isinstance(name, str) and part.get_filename() is None and len(payload) < 1024:
            fields.append((name, payload.decode("utf-8", "replace")))
    combined.add_fields(scan_fields(fields, "form"))
    return combined.result()


def is_form(data: bytes) -> bool:
    return len(data) < 8 * 1024 * 1024 and _FORM.match(data.strip()) is not None


def unpack_form(data: bytes, depth: int, scan: Scan, budget: Budget) -> Inspection:
    pairs = parse_qsl(data.strip().decode("latin-1"), keep_blank_values=False)
    combined = Combined(Format.FORM)
    combined.add_fields(scan_fields(pairs, "form"))
    for name, value in pairs:
        if len(value) >= 32:  # long enough to hold a message or an encoded document
            budget.spend(len(value))
            combined.add(
                f"form.{safe_label(name, keep='._-')}",
                scan(value.encode("utf-8", "replace"), depth + 1),
            )
    return combined.result()
