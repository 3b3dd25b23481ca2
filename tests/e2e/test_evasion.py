"""Every evasion case through the real gateway: the foreign receiver gets no identifier in any
decoded form; the domestic receiver gets each case byte-identical."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import Upstreams
from tests.support.clean_text import CLEAN_TEXTS
from tests.support.evasion import Case, evasion_cases, identifiers_in
from tests.support.patients import make_patient

pytestmark = pytest.mark.e2e
PATIENT = make_patient(4242)
CASES = evasion_cases(PATIENT)


def _send(client: httpx.Client, base: str, case: Case, tag: str) -> httpx.Response:
    separator = "&" if "?" in case.path else "?"
    url = f"{base}{case.path}{separator}case={tag}"
    return client.request(case.method, url, content=case.body or None, headers=case.headers)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_foreign_receiver_gets_no_identifier(
    client: httpx.Client, upstreams: Upstreams, case: Case
) -> None:
    tag = f"foreign-{case.name}"
    response = _send(client, upstreams.foreign.url, case, tag)
    arrived = [r for r in upstreams.foreign.received if f"case={tag}" in r.path]
    for request in arrived:
        carried = request.path.encode() + b"\n" + request.body
        carried += b"\n".join(f"{k}: {v}".encode() for k, v in request.headers.items())
        assert identifiers_in(carried, PATIENT) == [], f"{case.name} leaked"
    assert response.status_code == 451, f"{case.name}: {response.status_code}"
    assert not arrived


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_domestic_receiver_gets_it_byte_identical(
    client: httpx.Client, upstreams: Upstreams, case: Case
) -> None:
    tag = f"domestic-{case.name}"
    response = _send(client, upstreams.domestic.url, case, tag)
    assert response.status_code == 200
    arrived = [r for r in upstreams.domestic.received if f"case={tag}" in r.path]
    assert len(arrived) == 1
    assert arrived[0].body == case.body


def test_the_cases_do_carry_the_patient() -> None:
    # Guard against a test that passes because the cases are empty.
    for case in CASES:
        assert (
            identifiers_in(case.body, PATIENT)
            or identifiers_in(case.path.encode(), PATIENT)
            or identifiers_in(str(case.headers).encode(), PATIENT)
        ), case.name


def test_clean_operations_text_passes_abroad_untouched(
    client: httpx.Client, upstreams: Upstreams
) -> None:
    # Clinical-operations text with no identifier, as a text body, inside JSON, and as a
    # header: a gateway that blocks these breaks the hospital's ordinary work abroad.
    for number, text in enumerate(CLEAN_TEXTS):
        tag = f"clean-{number}"
        bodies = {
            "text": text.encode(),
            "json": json.dumps({"subject": "ops", "body": text}).encode(),
        }
        for kind, body in bodies.items():
            url = f"{upstreams.foreign.url}/ops?case={tag}-{kind}"
            response = client.post(
                url, content=body, headers={"x-summary": " ".join(text.split())[:200]}
            )
            assert response.status_code == 200, f"clean text {number} ({kind}) was refused"
            arrived = [r for r in upstreams.foreign.received if f"case={tag}-{kind}" in r.path]
            assert [r.body for r in arrived] == [body]
