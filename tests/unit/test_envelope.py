"""Every header of a request is read, except the protocol machinery (the list is tested
here); URLs in headers like the request target; JWTs in headers, cookies and query
parameters by their claims. Clean counterparts (an opaque token, an ordinary Referer) pass."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from gateway.envelope import MACHINERY, TRAILER_MACHINERY, inspect_envelope
from gateway.model import Category
from tests.support.patients import make_patient

PATIENT = make_patient(1801)
ID_DOB = f"mrn={PATIENT.mrn}&dob={PATIENT.birth_date_iso}"


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


ID_TOKEN = _jwt(
    {
        "iss": "https://idp.hospital.example",
        "sub": "248289761001",
        "name": f"{PATIENT.given} {PATIENT.family}",
        "birthdate": PATIENT.birth_date_iso,
        "email": PATIENT.email,
    }
)


def _phi(headers: list[tuple[str, str]], query: str = "") -> tuple[bool, list[str]]:
    findings, phi = inspect_envelope("/api/v1/upload", query, headers)
    return phi, sorted({f.location for f in findings})


def test_the_machinery_list_is_what_carries_no_payload() -> None:
    assert "referer" not in MACHINERY and "origin" not in MACHINERY and "cookie" not in MACHINERY
    assert {"authorization", "user-agent", "traceparent", "accept"} <= MACHINERY
    for name in sorted(MACHINERY):  # each skipped as named values and as prose
        phi, where = _phi([(name, f"patient {PATIENT.given} {PATIENT.family} {ID_DOB}")])
        assert not phi and where == [], name
    note = f"Patient: {PATIENT.given} {PATIENT.family}, DOB {PATIENT.birth_date_iso}"
    for name in ("X-Custom", "Warning", "X-Correlation", "From"):
        phi, _ = _phi([(name, f"{note}, MRN {PATIENT.mrn}")])
        assert phi, name


@pytest.mark.parametrize("name", ["Referer", "Link", "Content-Location", "X-Return-To"])
def test_urls_in_headers_are_read_like_the_request_target(name: str) -> None:
    url = f"https://ehr.hospital.example/chart?patient=4411&{ID_DOB}"
    value = f"<{url}>; rel=related" if name == "Link" else url
    phi, where = _phi([(name, value)])
    assert phi and f"header:{name.lower()}.query" in " ".join(where)


def test_a_fragment_route_and_an_ssn_path_segment_in_a_referer() -> None:
    phi, where = _phi([("Referer", f"https://ehr.example/app#/chart?{ID_DOB}")])
    assert phi and any(".fragment." in w for w in where)
    phi, _ = _phi([("Referer", f"https://ehr.example/patients/{PATIENT.ssn}/summary")])
    assert phi


def test_an_ordinary_referer_and_origin_pass() -> None:
    phi, where = _phi(
        [
            ("Referer", "https://intranet.hospital.example/home?tab=2&lang=en#top"),
            ("Origin", "https://intranet.hospital.example"),
        ]
    )
    assert not phi and where == []


def test_jwt_claims_are_read_wherever_the_token_is() -> None:
    phi, where = _phi([("Authorization", f"Bearer {ID_TOKEN}")])
    assert phi and "header:authorization.jwt" in " ".join(where)
    phi, _ = _phi([("Cookie", f"theme=dark; id_token={ID_TOKEN}")])
    assert phi
    phi, where = _phi([], f"id_token={ID_TOKEN}&state=xyz")
    assert phi and any(w.startswith("url.query.jwt") for w in where)
    phi, _ = _phi([("X-Session", ID_TOKEN)])
    assert phi


def test_opaque_and_claim_free_tokens_pass() -> None:
    access = _jwt({"iss": "https://idp.example", "sub": "248289761001", "scope": "openid"})
    for value in (
        "Bearer 2YotnFZFEjr1zCsicMWpAA",
        f"Bearer {access}",
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJub3QganNvbg.x",  # a payload that is no JSON
    ):
        phi, where = _phi([("Authorization", value)])
        assert not phi and where == [], value
    login = _jwt({"sub": "1", "email": PATIENT.email})  # a lone e-mail: not PHI
    assert not _phi([("Authorization", f"Bearer {login}")])[0]


def test_findings_hold_no_value() -> None:
    findings, _ = inspect_envelope(
        "/x", f"id_token={ID_TOKEN}", [("Referer", f"https://e.example/c?{ID_DOB}")]
    )
    text = " ".join(f.location for f in findings)
    assert PATIENT.family not in text and PATIENT.mrn not in text
    assert {f.category for f in findings} >= {Category.DATE, Category.MRN}


def test_file_names_are_read_like_free_text() -> None:
    named = f"{PATIENT.family}_{PATIENT.given}_{PATIENT.birth_date_iso}_{PATIENT.mrn}.pdf"
    findings, phi = inspect_envelope(f"/upload/{named}", "", [])
    assert phi and all(f.location.startswith("url.path.filename") for f in findings)
    disposition = [("Content-Disposition", f'attachment; filename="{named}"')]
    assert inspect_envelope("/upload", "", disposition)[1]
    for clean in ("invoice-2026-11.pdf", "report_final_v2.docx", "IMG_20261114_101530.jpg"):
        assert not inspect_envelope(f"/upload/{clean}", "", [])[1], clean
        header = [("Content-Disposition", f'attachment; filename="{clean}"')]
        assert not inspect_envelope("/upload", "", header)[1], clean


def test_a_multipart_part_is_judged_by_its_file_name_too() -> None:
    from gateway.config import Limits
    from gateway.inspector import Inspector

    named = f"{PATIENT.family}_{PATIENT.given}_DOB_{PATIENT.birth_date_iso}.txt"
    body = (
        b'--b1\r\nContent-Disposition: form-data; name="file"; filename="'
        + named.encode()
        + b'"\r\nContent-Type: text/plain\r\n\r\nquarterly totals only\r\n--b1--\r\n'
    )
    result = Inspector(Limits()).inspect(body)
    assert result.contains_phi and any(".filename" in f.location for f in result.findings)
    clean = body.replace(named.encode(), b"invoice-2026-11.txt")
    assert not Inspector(Limits()).inspect(clean).contains_phi


def test_a_lookup_by_name_and_birth_date_is_phi_wherever_it_is_sent() -> None:
    name = "Aurelio Quillfeather"  # as people have them (the synthetic surnames carry digits)
    assert inspect_envelope("/search", f"q={name} {PATIENT.birth_date_iso}", [])[1]
    assert inspect_envelope("/search", "q=Aurelio+Quillfeather+02/03/1970", [])[1]
    assert inspect_envelope("/api", "", [("X-Lookup", "QUILLFEATHER, AURELIO 1970-02-03")])[1]
    for clean in (
        "q=Results Since 2026-01-01",
        "q=chest pain protocol 2026",
        "q=Invoice 2026-11-02",
    ):
        assert not inspect_envelope("/search", clean, [])[1], clean


def _trailer_phi(trailers: list[tuple[str, str]]) -> tuple[bool, list[str]]:
    findings, phi = inspect_envelope(
        "/api/v1/upload", "", [("Content-Type", "text/plain")], trailers
    )
    return phi, sorted({f.location for f in findings})


def test_trailers_are_read_like_headers_under_their_own_name() -> None:
    note = f"Patient: {PATIENT.given} {PATIENT.family} MRN {PATIENT.mrn}"
    phi, where = _trailer_phi([("X-Note", note)])
    assert phi and where and all(w.startswith("trailer") for w in where)
    phi, where = _trailer_phi([("X-Id-Token", ID_TOKEN)])
    assert phi and "trailer:x-id-token.jwt" in " ".join(where)
    phi, where = _trailer_phi([("X-Return-To", f"https://ehr.example/chart?{ID_DOB}")])
    assert phi and "trailer:x-return-to.query" in " ".join(where)
    phi, where = _trailer_phi([("X-Patient-Mrn", PATIENT.mrn)])
    assert phi and "trailer.patient-mrn" in where


def test_weak_identifiers_in_headers_and_trailers_add_up() -> None:
    email = [("X-Email", PATIENT.email)]
    phone = [("X-Phone", PATIENT.phone)]
    assert not inspect_envelope("/api", "", email)[1]
    assert not inspect_envelope("/api", "", [], phone)[1]
    assert inspect_envelope("/api", "", email, phone)[1]


def test_no_name_exempts_a_trailer() -> None:
    # The machinery of the header section may not be sent as a trailer (RFC 9110 6.5.1):
    # under that name in a trailer it is data, and read.
    assert not TRAILER_MACHINERY
    note = f"patient {PATIENT.given} {PATIENT.family} MRN {PATIENT.mrn}"
    for name in sorted(MACHINERY | {"content-digest", "grpc-message", "grpc-status"}):
        phi, where = _trailer_phi([(name, note)])
        assert phi and where, name


def test_ordinary_trailers_pass() -> None:
    digest = base64.b64encode(hashlib.sha256(b"payload").digest()).decode()
    clean = [
        ("X-Checksum", "sha256=" + hashlib.sha256(b"payload").hexdigest()),
        ("Content-Digest", f"sha-256=:{digest}:"),
        ("Repr-Digest", f"sha-256=:{digest}:"),
        ("Content-MD5", base64.b64encode(hashlib.md5(b"payload").digest()).decode()),
        ("grpc-status", "0"),
        ("grpc-message", "OK"),
        ("X-Record-Count", "1203"),
        ("X-Request-Id", "7f3c2a10-5c1e-4a7e-9f4e-0b8e1d2c3a4b"),
    ]
    phi, where = _trailer_phi(clean)
    assert not phi and where == []
