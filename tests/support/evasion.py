"""Evasion cases built from a synthetic patient, and a search that undoes every encoding a
receiver could undo (so "no identifier arrived" means in any decoded form)."""

from __future__ import annotations

import base64
import binascii
import bz2
import contextlib
import gzip
import io
import json
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes, urlencode

import brotli
from backports import zstd

from tests.support.patients import Patient, fhir_patient, hl7_adt


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = "/upload"  # may carry a query string


def zip_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "----evasion0boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _swap_delimiters(message: str) -> str:
    return message.replace("|", "$").replace("^", "%").replace("MSH$%~\\&", "MSH$%~\\&")


def _csv(p: Patient) -> bytes:
    return (
        "patient_id,last_name,first_name,dob,ssn,phone\n"
        f"{p.mrn},{p.family},{p.given},{p.birth_date_iso},{p.ssn},{p.phone}\n"
    ).encode()


def _note(p: Patient) -> str:
    return (
        f"Follow-up call re: Patient: {p.given} {p.family.rstrip('0123456789')}, "
        f"DOB {p.birth_date_iso}, SSN {p.ssn}. Call back at {p.phone}."
    )


def _generic_xml(p: Patient) -> bytes:
    return (
        f"<claim><member><lastName>{p.family}</lastName><dob>{p.birth_date_iso}</dob>"
        f"<memberId>{p.insurance_id}</memberId></member></claim>"
    ).encode()


def evasion_cases(p: Patient) -> list[Case]:
    hl7 = hl7_adt(p).encode()
    fhir = json.dumps(fhir_patient(p)).encode()
    multipart, multipart_type = _multipart("scan.png", hl7)
    search = urlencode({"family": p.family, "birthdate": p.birth_date_iso})
    cases = [
        Case("plain-hl7", hl7),
        Case("hl7-as-png", hl7, {"content-type": "image/png"}),
        Case("fhir-as-octet-stream", fhir, {"content-type": "application/octet-stream"}),
        Case("bom-hl7", b"\xef\xbb\xbf" + hl7),
        Case("utf-16-fhir", fhir.decode().encode("utf-16")),
        Case("utf-16-be-no-bom-hl7", hl7.decode().encode("utf-16-be")),
        Case("utf-32-hl7", hl7.decode().encode("utf-32")),
        Case("latin1-hl7", hl7.decode().replace(p.city, p.city + "é").encode("latin-1")),
        Case("lf-hl7", hl7.replace(b"\r", b"\n")),
        Case("crlf-hl7", hl7.replace(b"\r", b"\r\n")),
        Case("swapped-delimiters", _swap_delimiters(hl7.decode()).encode()),
        Case("batch-hl7", b"FHS|^~\\&\rBHS|^~\\&\r" + hl7 + b"\rBTS|1\rFTS|1\r"),
        Case(
            "gzip-two-members",
            gzip.compress(b"hello ") + gzip.compress(hl7),
            {"content-encoding": "gzip"},
        ),
        Case("deflate-raw", zlib.compress(hl7)[2:-4], {"content-encoding": "deflate"}),
        Case("deflate-zlib", zlib.compress(hl7), {"content-encoding": "deflate"}),
        Case("br", brotli.compress(hl7), {"content-encoding": "br"}),
        Case("zstd", zstd.compress(hl7), {"content-encoding": "zstd"}),
        Case("gzip-then-br", brotli.compress(gzip.compress(hl7)), {"content-encoding": "gzip, br"}),
        Case("unknown-coding", hl7, {"content-encoding": "x-secret"}),
        Case("gzip-file-no-header", gzip.compress(hl7)),
        Case("bzip2-file", bz2.compress(fhir)),
        Case("xz-file", lzma.compress(hl7)),
        Case("zip-upload", zip_archive({"export.hl7": hl7})),
        Case("tar-upload", tar_archive({"export.ndjson": fhir})),
        Case("multipart-upload", multipart, {"content-type": multipart_type}),
        Case(
            "form-field",
            urlencode({"msg": hl7.decode()}).encode(),
            {"content-type": "application/x-www-form-urlencoded"},
        ),
        Case("json-wrapped-hl7", json.dumps({"message": hl7.decode()}).encode()),
        Case("json-wrapped-fhir", json.dumps({"job": {"payload": fhir.decode()}}).encode()),
        Case("base64-body", base64.b64encode(hl7)),
        Case(
            "base64-urlsafe-in-json",
            json.dumps({"blob": base64.urlsafe_b64encode(fhir).decode()}).encode(),
        ),
        Case(
            "zip-in-base64-in-json",
            json.dumps({"file": base64.b64encode(zip_archive({"a.hl7": hl7})).decode()}).encode(),
        ),
        Case("fhir-search", method="GET", path=f"/fhir/Patient?{search}"),
        Case("ssn-in-path", method="GET", path=f"/fhir/Patient/{p.ssn}"),
        Case("mrn-header", b"{}", {"x-patient-mrn": p.mrn, "x-patient-dob": p.birth_date_iso}),
        Case("cookie", b"{}", {"cookie": f"mrn={quote(p.mrn)}; dob={p.birth_date_iso}"}),
        Case("csv-export", _csv(p), {"content-type": "text/csv"}),
        Case("note-in-json", json.dumps({"ticket": 7, "text": _note(p)}).encode()),
        Case("note-as-text", _note(p).encode(), {"content-type": "text/plain"}),
        Case("note-in-header", b"{}", {"x-comment": _note(p)}),
        Case("generic-xml", _generic_xml(p), {"content-type": "application/xml"}),
    ]
    return cases


# -- what a receiver could read ---------------------------------------------------------------
def _attempts(data: bytes) -> Iterator[bytes]:
    decoders: list[Callable[[bytes], bytes]] = [
        gzip.decompress,  # every member, unlike zlib
        zlib.decompress,
        lambda d: zlib.decompress(d, -15),
        brotli.decompress,
        zstd.decompress,
        bz2.decompress,
        lzma.decompress,
        lambda d: base64.b64decode(d, validate=False),
        lambda d: base64.urlsafe_b64decode(d + b"=" * (-len(d) % 4)),
        unquote_to_bytes,
    ]
    for decode in decoders:
        try:
            out = decode(data)
        except (
            zlib.error,
            OSError,
            EOFError,
            ValueError,
            binascii.Error,
            lzma.LZMAError,
            brotli.error,
            zstd.ZstdError,
        ):
            continue
        if out and out != data:
            yield out
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32"):
        with contextlib.suppress(UnicodeDecodeError):
            yield data.decode(encoding).encode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        yield from (v.encode() for v in _json_strings(json.loads(data)))
    if data.startswith(b"PK"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    yield archive.read(name)
        except (zipfile.BadZipFile, OSError, ValueError):
            pass


def _json_strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _json_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _json_strings(value)


def decoded_forms(data: bytes, depth: int = 3) -> Iterator[bytes]:
    yield data
    if depth == 0 or len(data) > 4 * 1024 * 1024:
        return
    for out in _attempts(data):
        yield from decoded_forms(out, depth - 1)


def identifiers_in(data: bytes, p: Patient) -> list[str]:
    """Which of the patient's identifier values any decoded form of ``data`` holds."""
    values = [v for v in p.identifiers() if len(v) >= 4]
    found: set[str] = set()
    for form in decoded_forms(data):
        text = form.decode("latin-1").lower()
        found.update(v for v in values if v.lower() in text)
    return sorted(found)
