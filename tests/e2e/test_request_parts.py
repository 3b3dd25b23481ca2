"""Every byte of the request, through the real gateway over HTTP/1.1 and HTTP/2: a Referer
holding the EHR page the user came from and an OpenID Connect id_token in Authorization are
refused abroad with nothing reaching the receiver; their clean counterparts (an ordinary
Referer, an opaque access token) are forwarded abroad; at home everything arrives as sent."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.e2e.conftest import Upstreams, trusting
from tests.support.gateway_process import GatewayProcess
from tests.support.h2client import H2Client
from tests.support.patients import make_patient

pytestmark = pytest.mark.e2e
PATIENT = make_patient(1802)
BODY = b'{"invoice": "2026-11", "amount": 120.5}'


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


REFERER = (
    f"https://ehr.hospital.example/chart?patient=4411&mrn={PATIENT.mrn}"
    f"&dob={PATIENT.birth_date_iso}"
)
ID_TOKEN = _jwt(
    {"sub": "1", "name": f"{PATIENT.given} {PATIENT.family}", "birthdate": PATIENT.birth_date_iso}
)
CASES = {
    "referer": ("Referer", REFERER),
    "id-token": ("Authorization", f"Bearer {ID_TOKEN}"),
}
CLEAN = {
    "referer": ("Referer", "https://intranet.hospital.example/billing?tab=2"),
    "id-token": ("Authorization", "Bearer 2YotnFZFEjr1zCsicMWpAA"),
}


def _leaks(upstreams: Upstreams) -> bool:
    seen = [str(r.headers) + r.path for r in upstreams.foreign.received]
    seen += [str(r.headers) + r.path for r in upstreams.foreign_tls.received]
    return any(PATIENT.mrn in s or PATIENT.family in s for s in seen)


@pytest.mark.parametrize("case", sorted(CASES))
def test_http1_abroad_refused_clean_passes_home_as_sent(
    client: httpx.Client, upstreams: Upstreams, case: str
) -> None:
    name, value = CASES[case]
    refused = client.post(
        f"{upstreams.foreign.url}/parts/{case}", content=BODY, headers={name: value}
    )
    assert refused.status_code == 451
    assert f"/parts/{case}" not in upstreams.foreign.paths() and not _leaks(upstreams)
    clean_name, clean_value = CLEAN[case]
    passed = client.post(
        f"{upstreams.foreign.url}/parts/{case}/clean",
        content=BODY,
        headers={clean_name: clean_value},
    )
    assert passed.status_code == 200
    home = client.post(
        f"{upstreams.domestic.url}/parts/{case}", content=BODY, headers={name: value}
    )
    assert home.status_code == 200
    arrived = upstreams.domestic.first_at(f"/parts/{case}").headers
    assert {k.lower(): v for k, v in arrived.items()}[name.lower()] == value


@pytest.mark.parametrize("case", sorted(CASES))
def test_http2_abroad_refused(gateway: GatewayProcess, upstreams: Upstreams, case: str) -> None:
    name, value = CASES[case]
    h2 = H2Client(
        gateway.port, upstreams.foreign_tls.host, upstreams.foreign_tls.port, trusting(gateway)
    )
    try:
        refused = h2.post(f"/h2parts/{case}", BODY, [(name.lower(), value)])
        clean_name, clean_value = CLEAN[case]
        passed = h2.post(f"/h2parts/{case}/clean", BODY, [(clean_name.lower(), clean_value)])
    finally:
        h2.close()
    assert refused.status == 451 and passed.status == 200
    assert f"/h2parts/{case}" not in upstreams.foreign_tls.paths() and not _leaks(upstreams)


def test_file_names_abroad(client: httpx.Client, upstreams: Upstreams) -> None:
    named = f"{PATIENT.family}_{PATIENT.given}_{PATIENT.birth_date_iso}_{PATIENT.mrn}.pdf"
    refused = client.put(f"{upstreams.foreign.url}/files/{named}", content=BODY)
    assert refused.status_code == 451 and not _leaks(upstreams)
    passed = client.put(f"{upstreams.foreign.url}/files/invoice-2026-11.pdf", content=BODY)
    assert passed.status_code == 200
    files = {"file": (named, b"quarterly totals only", "text/plain")}
    upload = client.post(f"{upstreams.foreign.url}/files/form", files=files)
    assert upload.status_code == 451 and "/files/form" not in upstreams.foreign.paths()
    home = client.put(f"{upstreams.domestic.url}/files/{named}", content=BODY)
    assert home.status_code == 200 and upstreams.domestic.received[-1].body == BODY


def test_patch_bodies_abroad(client: httpx.Client, upstreams: Upstreams) -> None:
    patch = [{"op": "add", "path": "/birthDate", "value": PATIENT.birth_date_iso}]
    headers = {"content-type": "application/json-patch+json"}
    refused = client.patch(
        f"{upstreams.foreign.url}/fhir/Patient/1", content=json.dumps(patch), headers=headers
    )
    assert refused.status_code == 451 and "/fhir/Patient/1" not in upstreams.foreign.paths()
    clean = [{"op": "replace", "path": "/status", "value": "final"}]
    passed = client.patch(
        f"{upstreams.foreign.url}/fhir/Observation/9", content=json.dumps(clean), headers=headers
    )
    assert passed.status_code == 200 and "/fhir/Observation/9" in upstreams.foreign.paths()


def test_a_lookup_query_and_an_unlabelled_header_abroad(
    client: httpx.Client, upstreams: Upstreams
) -> None:
    lookup = f"Aurelio Quillfeather {PATIENT.birth_date_iso}"
    refused = client.get(f"{upstreams.foreign.url}/lookup", params={"q": lookup})
    assert refused.status_code == 451 and "/lookup" not in " ".join(upstreams.foreign.paths())
    note = f"{PATIENT.given} {PATIENT.family}, DOB {PATIENT.birth_date_iso}"
    header = client.post(f"{upstreams.foreign.url}/noted", content=BODY, headers={"X-Note": note})
    assert header.status_code == 451 and "/noted" not in upstreams.foreign.paths()
    clean = client.get(f"{upstreams.foreign.url}/lookup-clean", params={"q": "Invoice 2026-11-02"})
    assert clean.status_code == 200


def _fullwidth(digits: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in digits)


ZW = "\u200b"  # zero-width space
# Written the way a rich-text editor or an evasive sender spells them: entities between the
# words, a zero-width space inside the surname, fullwidth digits in the SSN.
OBFUSCATED = {
    "entities": f"Patient:&nbsp;{PATIENT.given}&nbsp;{PATIENT.family} seen today.",
    "zero-width": f"Pati{ZW}ent: {PATIENT.given} {PATIENT.family[:3]}{ZW}{PATIENT.family[3:]}",
    "fullwidth": f"Verified SSN {_fullwidth(PATIENT.ssn)} at registration.",
}
OBFUSCATED_CLEAN = "Q&amp;A session at 10&nbsp;am in Room\u00a0B \u2014 bring your badge."


def _note_leaks(upstreams: Upstreams) -> bool:
    seen = [r.body.decode("utf-8", "replace") for r in upstreams.foreign.received]
    seen += [r.body.decode("utf-8", "replace") for r in upstreams.foreign_tls.received]
    return any(
        PATIENT.given in s or PATIENT.family[:3] in s or _fullwidth(PATIENT.ssn) in s for s in seen
    )


@pytest.mark.parametrize("case", sorted(OBFUSCATED))
def test_obfuscated_notes_abroad_http1(
    client: httpx.Client, upstreams: Upstreams, case: str
) -> None:
    body = OBFUSCATED[case].encode()
    headers = {"content-type": "text/plain; charset=utf-8"}
    refused = client.post(f"{upstreams.foreign.url}/notes/{case}", content=body, headers=headers)
    assert refused.status_code == 451
    assert f"/notes/{case}" not in upstreams.foreign.paths() and not _note_leaks(upstreams)
    clean = client.post(
        f"{upstreams.foreign.url}/notes/{case}/clean",
        content=OBFUSCATED_CLEAN.encode(),
        headers=headers,
    )
    assert clean.status_code == 200
    assert upstreams.foreign.first_at(f"/notes/{case}/clean").body == OBFUSCATED_CLEAN.encode()
    home = client.post(f"{upstreams.domestic.url}/notes/{case}", content=body, headers=headers)
    assert home.status_code == 200
    assert upstreams.domestic.first_at(f"/notes/{case}").body == body


@pytest.mark.parametrize("case", sorted(OBFUSCATED))
def test_obfuscated_notes_abroad_http2(
    gateway: GatewayProcess, upstreams: Upstreams, case: str
) -> None:
    h2 = H2Client(
        gateway.port, upstreams.foreign_tls.host, upstreams.foreign_tls.port, trusting(gateway)
    )
    headers = [("content-type", "text/plain; charset=utf-8")]
    try:
        refused = h2.post(f"/h2notes/{case}", OBFUSCATED[case].encode(), headers)
        passed = h2.post(f"/h2notes/{case}/clean", OBFUSCATED_CLEAN.encode(), headers)
    finally:
        h2.close()
    assert refused.status == 451 and passed.status == 200
    assert f"/h2notes/{case}" not in upstreams.foreign_tls.paths() and not _note_leaks(upstreams)


def test_an_hl7_report_without_a_pid_abroad(client: httpx.Client, upstreams: Upstreams) -> None:
    header = "MSH|^~\\&|LAB|HOSP|READER|VENDOR|20261114||ORU^R01|C18|P|2.5.1\r"
    report = (
        f"OBX|1|TX|18842-5^Report||PATIENT: {PATIENT.given} {PATIENT.family}, "
        f"MRN: {PATIENT.mrn}, DOB: {PATIENT.birth_date_iso}. Findings normal.\r"
    )
    headers = {"content-type": "application/hl7-v2"}
    body = (header + report).encode()
    refused = client.post(f"{upstreams.foreign.url}/oru", content=body, headers=headers)
    assert refused.status_code == 451 and "/oru" not in upstreams.foreign.paths()
    assert not _note_leaks(upstreams)
    clean = (header + "OBX|1|TX|18842-5^Report||Lipid panel within normal limits.\r").encode()
    passed = client.post(f"{upstreams.foreign.url}/oru-clean", content=clean, headers=headers)
    assert passed.status_code == 200 and upstreams.foreign.first_at("/oru-clean").body == clean
    home = client.post(f"{upstreams.domestic.url}/oru", content=body, headers=headers)
    assert home.status_code == 200 and upstreams.domestic.first_at("/oru").body == body
