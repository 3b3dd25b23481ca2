"""The labelled corpus through the real gateway, and a hunt for leaked identifiers."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams
from tests.support.corpus import CORPUS, labelled
from tests.support.gateway_process import GatewayProcess
from tests.support.mmdb import FOREIGN_IP
from tests.support.patients import (
    fhir_observation_bundle,
    fhir_patient_json,
    fhir_patient_xml,
    hl7_adt,
    make_patient,
)
from tests.support.tcpsink import TcpSink, send_through_tunnel

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not labelled(), reason=f"labelled corpus not found at {CORPUS}")
def test_whole_corpus_to_both_destinations(client: httpx.Client, upstreams: Upstreams) -> None:
    files = labelled()
    wrong: list[str] = []
    for index, (path, expected) in enumerate(files):
        body = (CORPUS / path).read_bytes()
        home = client.post(f"{upstreams.domestic.url}/corpus/{index}", content=body)
        if home.status_code != 200 or upstreams.domestic.received[-1].body != body:
            wrong.append(f"domestic {path}: {home.status_code}")
        abroad = client.post(f"{upstreams.foreign.url}/corpus/{index}", content=body)
        arrived = f"/corpus/{index}" in upstreams.foreign.paths()
        if expected == "phi" and (abroad.status_code != 451 or arrived):
            wrong.append(f"foreign {path}: phi got {abroad.status_code}, arrived={arrived}")
        if expected == "no-phi" and (abroad.status_code != 200 or not arrived):
            wrong.append(f"foreign {path}: no-phi got {abroad.status_code}")
    assert not wrong, "\n".join(wrong)
    assert len(files) >= 190


def test_no_identifier_is_written_anywhere(
    tmp_path: Path, gateway: GatewayProcess, client: httpx.Client, upstreams: Upstreams
) -> None:
    patients = [make_patient(seed) for seed in range(100, 130)]
    for n, patient in enumerate(patients):
        for body in (
            hl7_adt(patient).encode(),
            fhir_patient_json(patient),
            fhir_patient_xml(patient),
            httpx.Request("POST", "/", json=fhir_observation_bundle(patient)).read(),
        ):
            response = client.post(f"{upstreams.foreign.url}/leak/{n}", content=body)
            assert response.status_code == 451
            for value in patient.identifiers():
                assert value not in response.text
    gateway.audit_rows(wait_for=len(patients) * 4)
    audit_dir = Path(gateway.config["audit"]["database"]).parent
    stored = b"".join(p.read_bytes() for p in audit_dir.glob("audit.db*"))
    _, metrics_text = gateway.admin_get("/metrics")
    places = {
        "audit database": stored,
        "gateway output": gateway.output().encode(),
        "metrics": metrics_text.encode(),
    }
    for patient in patients:
        for value in patient.identifiers():
            for place, content in places.items():
                assert value.encode() not in content, f"identifier found in {place}"


def test_uninspectable_tcp_to_a_foreign_destination_is_cut(gateway: GatewayProcess) -> None:
    """A stream that is not MLLP (nor HTTP, nor TLS) cannot be read: cut abroad. (MLLP itself
    is framed and judged per message: tests/e2e/test_mllp.py.)"""
    sink = TcpSink(FOREIGN_IP, greeting=b"READY\n")
    stream = b"\x00\x01proprietary " + hl7_adt(make_patient(5)).encode()
    send_through_tunnel(gateway.port, FOREIGN_IP, sink.port, stream)
    sink.sock.close()
    assert b"PID" not in sink.data
    assert gateway.metric("phi_gateway_flows_not_inspected_total", reason="raw-tcp") >= 1


def test_tcp_to_a_domestic_destination_is_untouched(gateway: GatewayProcess) -> None:
    sink = TcpSink("127.0.0.1", greeting=b"READY\n")
    frame = b"\x0b" + hl7_adt(make_patient(6)).encode() + b"\x1c\r"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(f"CONNECT 127.0.0.1:{sink.port} HTTP/1.1\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(frame)
        assert s.recv(4096) == b"READY\n"
    deadline = time.monotonic() + 5
    while bytes(sink.data) != frame and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.sock.close()
    assert bytes(sink.data) == frame
