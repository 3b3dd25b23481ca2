"""The admin API of a real gateway: bearer tokens with roles, incidents paged and filtered,
block reports, policy reload for admins only, every access audited, metrics on their own
address."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.api_auth import new_token
from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.mmdb import FOREIGN_IP_2
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
AUDITOR, AUDITOR_HASH = new_token()
ADMIN, ADMIN_HASH = new_token()


@pytest.fixture(scope="module")
def api_gateway(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> Iterator[GatewayProcess]:
    metrics_port = free_port()
    config = gateway_config(
        test_mmdb,
        pki,
        policy={"allow_destinations": [{"cidr": f"{FOREIGN_IP_2}/32", "reason": "BAA test"}]},
        admin={
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "tokens": [
                {"name": "auditor-1", "role": "auditor", "sha256": AUDITOR_HASH},
                {"name": "ops-1", "role": "admin", "sha256": ADMIN_HASH},
            ],
        },
    )
    process = GatewayProcess(tmp_path_factory.mktemp("api"), config)
    process.metrics_port = metrics_port  # type: ignore[attr-defined]
    with httpx.Client(proxy=process.proxy_url, verify=trusting(process), timeout=10) as client:
        for seed in range(3):
            client.post(f"{upstreams.foreign.url}/a", content=hl7_adt(make_patient(seed)).encode())
        client.post(f"{upstreams.foreign_2.url}/b", content=hl7_adt(make_patient(9)).encode())
    process.audit_rows(wait_for=4)
    yield process
    process.stop()


def call(
    port: int, path: str, token: str | None = None, method: str = "GET"
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_tokens_and_roles(api_gateway: GatewayProcess) -> None:
    port = api_gateway.admin_port
    assert call(port, "/api/v1/incidents")[0] == 401
    assert call(port, "/api/v1/incidents", "phg_not-a-real-token")[0] == 401
    assert call(port, "/api/v1/incidents", AUDITOR)[0] == 200
    assert call(port, "/api/v1/policy/reload", AUDITOR, "POST")[0] == 403
    code, _, body = call(port, "/api/v1/policy/reload", ADMIN, "POST")
    assert code == 200 and json.loads(body)["reloaded"] is True


def test_incidents_filtered_and_paged(api_gateway: GatewayProcess) -> None:
    port = api_gateway.admin_port
    code, _, body = call(port, "/api/v1/incidents?action=block&country=IN&limit=2", AUDITOR)
    page = json.loads(body)
    assert code == 200 and page["total"] == 3 and len(page["incidents"]) == 2
    assert {i["country"] for i in page["incidents"]} == {"IN"}
    assert page["incidents"][0]["categories"]["name"] >= 1  # parsed, not a JSON string
    code, _, body = call(port, page["next"], AUDITOR)
    rest = json.loads(body)
    assert len(rest["incidents"]) == 1 and rest["next"] is None
    allowed = json.loads(call(port, "/api/v1/incidents?action=allow", AUDITOR)[2])
    assert allowed["total"] == 1 and allowed["incidents"][0]["country"] == "DE"
    one = page["incidents"][0]["incident_id"]
    code, _, body = call(port, f"/api/v1/incidents/{one}", AUDITOR)
    assert code == 200 and json.loads(body)["incident_id"] == one
    assert call(port, "/api/v1/incidents/INC-nope", AUDITOR)[0] == 404
    assert call(port, "/api/v1/incidents?from=yesterday", AUDITOR)[0] == 400
    assert call(port, "/api/v1/incidents?action=steal", AUDITOR)[0] == 400


def test_block_reports_in_every_format(api_gateway: GatewayProcess) -> None:
    port = api_gateway.admin_port
    code, ctype, body = call(port, "/api/v1/reports/blocks?format=json", AUDITOR)
    report = json.loads(body)
    assert code == 200 and ctype == "application/json"
    assert report["totals"]["block"] == 3 and report["totals"]["allow"] == 1
    for fmt, start in (("csv", b"Block report"), ("html", b"<!DOCTYPE html>"), ("pdf", b"%PDF")):
        code, ctype, body = call(port, f"/api/v1/reports/blocks?format={fmt}", AUDITOR)
        assert code == 200 and body.startswith(start), fmt
    assert call(port, "/api/v1/reports/blocks?format=docx", AUDITOR)[0] == 400


def test_every_access_is_audited(api_gateway: GatewayProcess) -> None:
    port = api_gateway.admin_port
    call(port, "/api/v1/incidents?country=IN&limit=7", AUDITOR)
    call(port, "/api/v1/incidents?limit=8")
    allowed = api_gateway.audit_rows_where(reason="GET /api/v1/incidents?country=IN&limit=7 -> 200")
    refused = api_gateway.audit_rows_where(reason="GET /api/v1/incidents?limit=8 -> 401")
    assert len(allowed) == 1 and len(refused) == 1
    detail = json.loads(allowed[0]["detail"])
    assert detail["token"] == "auditor-1" and detail["role"] == "auditor"
    assert allowed[0]["kind"] == "access" and allowed[0]["action"] == "api-access"
    assert json.loads(refused[0]["detail"])["token"] == "-"
    rows = api_gateway.audit_rows()
    assert ADMIN not in json.dumps(rows) and AUDITOR not in json.dumps(rows)


def test_metrics_on_their_own_address(api_gateway: GatewayProcess) -> None:
    metrics_port: int = api_gateway.metrics_port  # type: ignore[attr-defined]
    code, _, body = call(metrics_port, "/metrics")
    assert code == 200 and b"phi_gateway_admin_api_requests_total" in body
    assert call(metrics_port, "/healthz")[0] == 200
    assert call(metrics_port, "/api/v1/incidents", AUDITOR)[0] == 404
    assert call(api_gateway.admin_port, "/metrics")[0] == 404


def test_a_token_in_the_url_is_refused_and_not_recorded(api_gateway: GatewayProcess) -> None:
    port = api_gateway.admin_port
    for path in (
        f"/api/v1/incidents?access_token={AUDITOR}",
        f"/api/v1/incidents?limit=3&q={AUDITOR}",
    ):
        code, _, body = call(port, path)
        assert code == 400 and b"Authorization header" in body
    rows = api_gateway.audit_rows_where(
        reason="GET /api/v1/incidents?access_token=%5Bremoved%5D -> 400"
    )
    assert len(rows) == 1
    assert AUDITOR not in json.dumps(api_gateway.audit_rows())
