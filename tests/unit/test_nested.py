"""Payloads inside payloads: each layer is unwrapped and inspected, within named limits."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import lzma
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Limits
from gateway.envelope import inspect_envelope
from gateway.formats import known_formats
from gateway.formats.generic_json import GenericJson
from gateway.inspector import INTERNAL_FAILURE, Inspector
from gateway.model import Category, Format, Inspection
from tests.support.corpus import CORPUS, labelled
from tests.support.evasion import tar_archive, zip_archive
from tests.support.patients import fhir_patient_json, hl7_adt, make_patient

INSPECTOR = Inspector(Limits(max_body_bytes=8 * 1024 * 1024))
PATIENT = make_patient(11)
HL7 = hl7_adt(PATIENT).encode()
FHIR = fhir_patient_json(PATIENT)


def _zip(name: str, data: bytes) -> bytes:
    """An export with a harmless first member, so the PHI sits in member [1]."""
    return zip_archive({"readme.txt": b"quarterly export", name: data})


def _tar(name: str, data: bytes) -> bytes:
    return tar_archive({name: data})


def _multipart(filename: str, data: bytes) -> bytes:
    boundary = b"----gatewaytest7MA4YWxk"
    return (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="comment"\r\n\r\nmonthly batch\r\n'
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
        b"--" + boundary + b"--\r\n"
    )


WRAPPERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip-file": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zip": lambda d: _zip("batch.hl7", d),
    "tar": lambda d: _tar("batch.hl7", d),
    "multipart": lambda d: _multipart("batch.hl7", d),
    "form": lambda d: urlencode({"note": "x", "payload": d.decode("latin-1")}).encode(),
    "base64": base64.b64encode,
    "base64-urlsafe": lambda d: base64.urlsafe_b64encode(d).rstrip(b"="),
    "json-string": lambda d: json.dumps({"job": 7, "message": d.decode("latin-1")}).encode(),
    "json-base64": lambda d: json.dumps({"blob": base64.b64encode(d).decode()}).encode(),
    "text-with-base64": lambda d: b"attached:\n" + base64.b64encode(d) + b"\nthanks",
    "utf-16": lambda d: d.decode("latin-1").encode("utf-16"),
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize("payload", ["hl7", "fhir"])
def test_wrapped_phi_is_found(wrapper: str, payload: str) -> None:
    body = WRAPPERS[wrapper](HL7 if payload == "hl7" else FHIR)
    result = INSPECTOR.inspect(body)
    assert not result.error, result.error
    assert result.contains_phi, f"{payload} in {wrapper} not found"


def test_layers_stack() -> None:
    body = base64.b64encode(_multipart("x.zip", _zip("a.json", gzip.compress(FHIR))))
    result = INSPECTOR.inspect(body)
    assert result.contains_phi
    assert any("zip[1]" in f.location for f in result.findings)


def test_too_deep_is_refused() -> None:
    body = HL7
    for _ in range(8):
        body = gzip.compress(body)
    result = Inspector(Limits(max_nesting_depth=4)).inspect(body)
    assert result.limit == "max_nesting_depth"


def test_zip_bomb_is_refused_in_bounded_memory() -> None:
    bomb = _zip("zeros.txt", b"0" * (80 * 1024 * 1024))
    assert len(bomb) < 200 * 1024
    result = Inspector(Limits(max_decompressed_bytes=16 * 1024 * 1024)).inspect(bomb)
    assert result.limit == "max_decompressed_bytes"


def test_unreadable_archives_fail_closed() -> None:
    assert INSPECTOR.inspect(b"7z\xbc\xaf\x27\x1c" + b"\x00" * 64).error
    encrypted = bytearray(_zip("a.hl7", HL7))
    central = encrypted.index(b"PK\x01\x02")
    encrypted[central + 8] |= 1  # the encryption flag, as the central directory states it
    assert INSPECTOR.inspect(bytes(encrypted)).error
    assert INSPECTOR.inspect(gzip.compress(HL7)[:-9]).error
    future = bytearray(_zip("a.hl7", HL7))
    central = future.index(b"PK\x01\x02")
    future[central + 6] = 64  # "version needed to extract" 6.4: zipfile cannot, says so
    result = INSPECTOR.inspect(bytes(future))
    assert result.error == "corrupt zip archive" and not result.internal


def test_clean_containers_pass() -> None:
    for body in (
        _zip("report.csv", b"ward,beds\nA,12\nB,9\n"),
        _multipart("notes.txt", b"Staff meeting moved to Thursday."),
        urlencode({"q": "bed capacity", "page": "2"}).encode(),
        json.dumps({"status": "ok", "count": 3, "token": "a" * 60}).encode(),
        base64.b64encode(bytes(range(256)) * 4),
    ):
        result = INSPECTOR.inspect(body)
        assert not result.contains_phi and not result.error, body[:40]


def test_named_fields_in_forms_and_json() -> None:
    form = urlencode({"last_name": "Quillfeather", "dob": "1960-01-02"}).encode()
    result = INSPECTOR.inspect(form)
    assert result.format is Format.FORM and result.contains_phi
    assert {Category.NAME, Category.DATE} <= {f.category for f in result.findings}
    login = json.dumps({"email": "ops@example.org", "password": "x"}).encode()
    assert not INSPECTOR.inspect(login).contains_phi  # one weak identifier alone
    export = json.dumps([{"full_name": "Ana Ruiz", "phone": "555-201-3344"}]).encode()
    assert INSPECTOR.inspect(export).contains_phi  # two kinds together
    report = json.dumps({"name": "Quarterly report", "email": "ops@example.org"}).encode()
    assert not INSPECTOR.inspect(report).contains_phi  # a bare "name" is not a person's
    vendor = json.dumps({"account_number": "AC-99812", "policy_number": "P-1"}).encode()
    assert not INSPECTOR.inspect(vendor).contains_phi


def test_fhir_search_in_the_url_is_phi() -> None:
    findings, phi = inspect_envelope("/fhir/Patient", "family:exact=Doe&birthdate=ge1960-01-02", [])
    assert phi and {f.location for f in findings} == {"url.query.family", "url.query.birthdate"}
    _, phi = inspect_envelope("/fhir/Patient", "family=Doe", [])
    assert phi  # any identifying search on a person endpoint
    findings, phi = inspect_envelope("/fhir/Patient/_search", "name=Doe", [])
    assert phi and findings[0].location == "url.query.name"
    _, phi = inspect_envelope("/fhir/Observation", "date=ge2024-01-01&_count=50", [])
    assert not phi
    _, phi = inspect_envelope("/fhir/Patient/123-45-6789", "", [])
    assert phi
    _, phi = inspect_envelope("/api", "", [("X-Patient-MRN", "MRN0042"), ("Accept", "*/*")])
    assert phi
    _, phi = inspect_envelope("/api", "", [("Cookie", "session=abc; theme=dark")])
    assert not phi


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert_sound(INSPECTOR.inspect(data))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(WRAPPERS)), st.integers(0, 400), st.binary(max_size=8))
def test_mutated_containers_never_raise(wrapper: str, position: int, junk: bytes) -> None:
    body = bytearray(WRAPPERS[wrapper](HL7))
    position %= len(body)
    body[position : position + len(junk)] = junk
    assert_sound(INSPECTOR.inspect(bytes(body)))


def assert_sound(result: Inspection) -> None:
    """Whatever the input, the inspection is a verdict of the readers: a format they name,
    and no exception they did not expect (which the inspector turns into an error value)."""
    assert not result.internal, result.error
    assert not result.error.startswith(INTERNAL_FAILURE), result.error
    assert result.format in READABLE_FORMATS


READABLE_FORMATS = known_formats() | {
    Format.MULTIPART,
    Format.FORM,
    Format.ARCHIVE,
    Format.BINARY,
    Format.EMPTY,
}


def test_an_internal_failure_is_seen_by_the_fuzz_assertion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> Inspection:
        raise KeyError("a bug")

    monkeypatch.setattr(GenericJson, "inspect", broken)
    result = INSPECTOR.inspect(json.dumps({"job": 7, "message": HL7.decode()}).encode())
    assert result.internal and result.error == f"{INTERNAL_FAILURE} (KeyError)"
    with pytest.raises(AssertionError):
        assert_sound(result)
    # ... and inside a container too: the part's failure is the container's.
    inner = INSPECTOR.inspect(_zip("batch.json", json.dumps({"a": 1}).encode()))
    assert inner.internal
    with pytest.raises(AssertionError):
        assert_sound(inner)


def test_inspection_time_budget_fires() -> None:
    body = base64.b64encode(_zip("a.zip", _zip("b.hl7", HL7)))
    result = Inspector(Limits(max_inspection_seconds=1e-9)).inspect(body)
    assert result.limit == "max_inspection_seconds"


def _corpus_samples() -> list[bytes]:
    return [(CORPUS / path).read_bytes()[:20_000] for path, _ in labelled()[::9]]


@pytest.mark.skipif(not labelled(), reason=f"labelled corpus not found at {CORPUS}")
@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_corpus_files_never_raise(data: st.DataObject) -> None:
    samples = _corpus_samples()
    body = bytearray(data.draw(st.sampled_from(samples)))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, max(len(body) - 1, 0)))
        body[position : position + 1] = data.draw(st.binary(min_size=0, max_size=4))
    wrapped = data.draw(st.sampled_from(sorted(WRAPPERS)))
    assert_sound(
        INSPECTOR.inspect(WRAPPERS[wrapped](bytes(body)) if wrapped != "form" else bytes(body))
    )


def test_strings_that_only_look_like_documents_are_prose() -> None:
    # HTML snippets and templates in JSON must not fail closed as "malformed" documents...
    for value in ("<p>Hello there<br></p> and more", "{name} is a placeholder", "[1, 2, oops"):
        result = INSPECTOR.inspect(json.dumps({"v": value}).encode())
        assert not result.error and not result.contains_phi, value
    # ...while a broken resource still reads as prose with a birth date in it.
    broken = '{"resourceType": "Patient", "birthDate": "1960-01-02", "name": oops'
    assert INSPECTOR.inspect(json.dumps({"v": broken}).encode()).contains_phi
