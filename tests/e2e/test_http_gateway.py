"""A hospital's outbound HTTP(S) traffic through the real gateway process."""

from __future__ import annotations

import gzip
import json
import socket

import httpx
import pytest
from fhir.resources.operationoutcome import OperationOutcome
from hl7apy.parser import parse_message

from tests.e2e.conftest import Upstreams, trusting, trusting_both
from tests.support.gateway_process import GatewayProcess
from tests.support.h2client import H2Client
from tests.support.patients import (
    CAPABILITY_STATEMENT,
    fhir_observation_bundle,
    fhir_patient_json,
    fhir_patient_xml,
    hl7_adt,
    make_patient,
)

pytestmark = pytest.mark.e2e
PATIENT = make_patient(42)
ADT = hl7_adt(PATIENT, control_id="CTRL-4242").encode()


def assert_nothing_identifying(text: str) -> None:
    for value in PATIENT.identifiers():
        assert value not in text, "an identifier leaked"


def test_domestic_traffic_passes_untouched(client: httpx.Client, upstreams: Upstreams) -> None:
    before = len(upstreams.domestic.received)
    response = client.post(
        upstreams.domestic.url + "/hl7/adt",
        content=ADT,
        headers={"content-type": "x-application/hl7-v2+er7"},
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    received = upstreams.domestic.received[before:]
    assert [r.body for r in received] == [ADT]
    assert received[0].path == "/hl7/adt"


def test_foreign_hl7_is_blocked_with_an_ack(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    blocked_before = gateway.metric(
        "phi_gateway_decisions_total", action="block", rule="foreign-phi", country="IN"
    )
    response = client.post(upstreams.foreign.url + "/hl7", content=ADT)
    assert response.status_code == 451
    incident = response.headers["x-phi-gateway-incident"]
    assert incident.startswith("INC-")
    assert "/hl7" not in upstreams.foreign.paths()
    ack = parse_message(response.text.replace("\n", "\r"), find_groups=False)
    assert ack.msh.msh_9.to_er7().startswith("ACK")
    assert ack.msa.msa_1.to_er7() == "AR"
    assert ack.msa.msa_2.to_er7() == "CTRL-4242"
    assert incident in ack.err.to_er7()
    assert_nothing_identifying(response.text)

    row = gateway.audit_row(incident)
    assert row["action"] == "block"
    assert row["rule"] == "foreign-phi"
    assert row["country"] == "IN"
    assert row["ip"] == "127.0.0.2"
    assert row["format"] == "hl7v2"
    assert row["message_type"] == "ADT^A01"
    assert row["categories"]["ssn"] == 1
    assert "PID-19" in json.loads(row["locations"])
    assert_nothing_identifying(json.dumps(row))
    after = gateway.metric(
        "phi_gateway_decisions_total", action="block", rule="foreign-phi", country="IN"
    )
    assert after == blocked_before + 1
    assert gateway.metric("phi_gateway_phi_findings_total", category="ssn") >= 1


def test_foreign_fhir_json_gets_operation_outcome(
    client: httpx.Client, upstreams: Upstreams
) -> None:
    response = client.post(
        upstreams.foreign.url + "/fhir/Patient",
        content=fhir_patient_json(PATIENT),
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 451
    assert response.headers["content-type"] == "application/fhir+json"
    outcome = OperationOutcome.model_validate(response.json())
    assert outcome.issue[0].code == "security"
    assert response.headers["x-phi-gateway-incident"] in (outcome.issue[0].diagnostics or "")
    assert "/fhir/Patient" not in upstreams.foreign.paths()


def test_foreign_fhir_xml_gets_xml_outcome(client: httpx.Client, upstreams: Upstreams) -> None:
    response = client.put(
        upstreams.foreign.url + "/fhir/Patient/1",
        content=fhir_patient_xml(PATIENT),
        headers={"content-type": "application/fhir+xml"},
    )
    assert response.status_code == 451
    assert response.headers["content-type"] == "application/fhir+xml"
    assert response.text.startswith('<OperationOutcome xmlns="http://hl7.org/fhir">')
    assert "/fhir/Patient/1" not in upstreams.foreign.paths()


def test_foreign_without_phi_passes(client: httpx.Client, upstreams: Upstreams) -> None:
    body = json.dumps(CAPABILITY_STATEMENT).encode()
    response = client.post(upstreams.foreign.url + "/fhir/metadata", content=body)
    assert response.status_code == 200
    assert upstreams.foreign.received[-1].body == body


def test_territory_is_domestic(client: httpx.Client, upstreams: Upstreams) -> None:
    response = client.post(upstreams.territory.url + "/hl7", content=ADT)
    assert response.status_code == 200
    assert upstreams.territory.received[-1].body == ADT


def test_unknown_location_fails_closed(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    response = client.post(upstreams.unknown.url + "/fhir", content=fhir_patient_json(PATIENT))
    assert response.status_code == 451
    assert "/fhir" not in upstreams.unknown.paths()
    row = gateway.audit_row(response.headers["x-phi-gateway-incident"])
    assert row["location"] == "unknown"
    assert row["country"] == "unknown"


def test_host_header_is_never_trusted(gateway: GatewayProcess, upstreams: Upstreams) -> None:
    # Absolute-form request to the foreign IP that claims a domestic Host.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        head = (
            f"POST {upstreams.foreign.url}/spoofed HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{upstreams.domestic.port}\r\n"
            f"Content-Length: {len(ADT)}\r\nConnection: close\r\n\r\n"
        )
        s.sendall(head.encode() + ADT)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 451")
    assert "/spoofed" not in upstreams.foreign.paths()
    assert "/spoofed" not in upstreams.domestic.paths()


def test_https_through_the_gateway_ca(
    client: httpx.Client, gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    # At home the client sees the server's own certificate (relayed, tests/e2e/
    # test_tls_relay.py); abroad the gateway's, and PHI is refused.
    verify = trusting_both(gateway)
    with httpx.Client(proxy=gateway.proxy_url, verify=verify, timeout=10) as home:
        ok = home.post(upstreams.domestic_tls.url + "/secure", content=ADT)
    assert ok.status_code == 200
    assert upstreams.domestic_tls.received[-1].body == ADT
    blocked = client.post(upstreams.foreign_tls.url + "/secure", content=ADT)
    assert blocked.status_code == 451
    assert "/secure" not in upstreams.foreign_tls.paths()


def test_http2_streams(
    gateway: GatewayProcess, decrypting_gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    # Several streams on one HTTP/2 connection: each is judged on its own.
    h2 = H2Client(
        gateway.port, upstreams.foreign_tls.host, upstreams.foreign_tls.port, trusting(gateway)
    )
    try:
        blocked = h2.post("/h2", fhir_patient_json(PATIENT))
        passed = h2.post("/h2-meta", json.dumps(CAPABILITY_STATEMENT).encode())
        blocked_again = h2.post("/h2-again", ADT)
    finally:
        h2.close()
    assert blocked.status == 451
    assert blocked.headers["x-phi-gateway-incident"].startswith("INC-")
    assert passed.status == 200
    assert blocked_again.status == 451
    assert "/h2-meta" in upstreams.foreign_tls.paths()
    assert "/h2" not in upstreams.foreign_tls.paths()
    assert "/h2-again" not in upstreams.foreign_tls.paths()
    assert gateway.metric("phi_gateway_decisions_total", protocol="http/2", action="block") >= 2
    # Decrypted at home (relay_domestic_tls: false): the HTTP/2 client's streams reach an
    # HTTP/1.1 server through the gateway's translation.
    home = decrypting_gateway
    domestic = H2Client(
        home.port, upstreams.domestic_tls.host, upstreams.domestic_tls.port, trusting(home)
    )
    try:
        ok = domestic.post("/h2-home", ADT)
    finally:
        domestic.close()
    assert ok.status == 200
    assert upstreams.domestic_tls.received[-1].body == ADT


def test_gzip_is_undone_even_multi_member(client: httpx.Client, upstreams: Upstreams) -> None:
    body = gzip.compress(b"") + gzip.compress(ADT)
    response = client.post(
        upstreams.foreign.url + "/gz", content=body, headers={"content-encoding": "gzip"}
    )
    assert response.status_code == 451
    assert "/gz" not in upstreams.foreign.paths()
    ok = client.post(
        upstreams.domestic.url + "/gz", content=body, headers={"content-encoding": "gzip"}
    )
    assert ok.status_code == 200
    assert upstreams.domestic.received[-1].body == body  # forwarded as sent, still encoded


def test_unreadable_payload_fails_closed_abroad_only(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    headers = {"content-encoding": "snappy"}
    blocked = client.post(upstreams.foreign.url + "/x", content=ADT, headers=headers)
    assert blocked.status_code == 451
    assert blocked.json()["rule"] == "uninspectable"
    assert "/x" not in upstreams.foreign.paths()
    passed = client.post(upstreams.domestic.url + "/x", content=ADT, headers=headers)
    assert passed.status_code == 200
    assert gateway.metric("phi_gateway_flows_not_inspected_total", reason="unreadable") >= 1


def test_body_over_the_limit(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    big = b"x" * (4 * 1024 * 1024 + 65536)  # just past limits.max_body_bytes (4 MiB)
    blocked = client.post(upstreams.foreign.url + "/big", content=big)
    assert blocked.status_code == 413  # refused as it arrived (tests/e2e/test_body_limits.py)
    assert "limits.max_body_bytes" in blocked.text and "incident INC-" in blocked.text
    assert "/big" not in upstreams.foreign.paths()
    passed = client.post(upstreams.domestic.url + "/big", content=big)
    assert passed.status_code == 200
    assert gateway.metric("phi_gateway_limit_exceeded_total", limit="max_body_bytes") >= 1


def test_allow_list_forwards_and_records(
    client: httpx.Client, upstreams: Upstreams, gateway: GatewayProcess
) -> None:
    body = json.dumps(fhir_observation_bundle(PATIENT)).encode()
    response = client.post(upstreams.foreign_2.url + "/vendor", content=body)
    assert response.status_code == 200
    assert upstreams.foreign_2.received[-1].body == body
    rows = gateway.audit_rows_where(rule="allow-list")
    assert rows
    assert rows[-1]["action"] == "allow"
    assert rows[-1]["country"] == "DE"


def test_admin_endpoints(gateway: GatewayProcess) -> None:
    assert gateway.admin_get("/healthz") == (200, "ok\n")
    assert gateway.admin_get("/readyz") == (200, "ready\n")
    status, text = gateway.admin_get("/metrics")
    assert status == 200
    assert "phi_gateway_geo_database_build_timestamp_seconds" in text
    assert gateway.metric("phi_gateway_ready") == 1


def test_startup_banner(gateway: GatewayProcess) -> None:
    out = gateway.output()
    assert f"127.0.0.1:{gateway.port}" in out
    assert "mitmproxy-ca-cert.pem" in out
    assert "test-world.mmdb (PHI-Gateway-Test-Country, built " in out
    assert "version " in out
    assert_nothing_identifying(out)


def test_line_feed_inside_a_segment_does_not_hide_the_patient(
    client: httpx.Client, upstreams: Upstreams
) -> None:
    # Receivers end segments at CR; a bare LF inside PID is data to them, not a segment end.
    body = ADT.replace(b"PID|1|", b"PID|1\n|")
    response = client.post(upstreams.foreign.url + "/lf-trick", content=body)
    assert response.status_code == 451
    assert "/lf-trick" not in upstreams.foreign.paths()
