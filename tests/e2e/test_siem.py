"""Every audit event streamed to real SIEM receivers: rsyslog over TLS (CEF) and a
HEC-compatible HTTPS endpoint, plus a file of OCSF lines checked against the pinned class
definitions. Both receivers stop for 30 seconds under traffic: every event of the trail
still arrives, exactly once after de-duplication by event id."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.ocsf.check import problems
from tests.support.patients import fhir_patient_json, hl7_adt, make_patient
from tests.support.siem_receivers import HecReceiver, rsyslog_missing, start_rsyslog
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
OUTAGE_SECONDS = 30
TOKEN = "hec-test-token-0f3a"


def _cef_id(line: str) -> str:
    for part in line.split(" "):
        if part.startswith("externalId="):
            return part.removeprefix("externalId=")
    return ""


def test_siem_outputs_receive_the_whole_trail_through_an_outage(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    missing = rsyslog_missing()
    if missing:
        pytest.skip(missing)
    syslog_port, hec_port = free_port(), free_port()
    rsyslog = start_rsyslog(tmp_path / "rsyslog", syslog_port, pki.ca_pem, pki.server_pem)
    hec = HecReceiver(hec_port, TOKEN, pki.server_context)
    hec.start()
    ocsf_file = tmp_path / "siem" / "events.jsonl"
    config = gateway_config(
        test_mmdb,
        pki,
        audit={"instance_id": "gw-siem"},
        siem={
            "poll_seconds": 0.1,
            "outputs": [
                {
                    "type": "syslog",
                    "name": "rsyslog",
                    "address": f"127.0.0.1:{syslog_port}",
                    "tls": True,
                    "format": "cef",
                    "ca_file": str(pki.ca_pem),
                    "server_name": "localhost",
                    "retry_max_seconds": 2,
                },
                {
                    "type": "http",
                    "name": "hec",
                    "url": f"https://127.0.0.1:{hec_port}/services/collector/event",
                    "format": "splunk-hec",
                    "token_env": "SPLUNK_HEC_TOKEN",
                    "ca_file": str(pki.ca_pem),
                    "retry_max_seconds": 2,
                },
                {"type": "file", "name": "ocsf", "path": str(ocsf_file), "format": "ocsf"},
            ],
        },
    )
    gateway = GatewayProcess(tmp_path / "gw", config, env={"SPLUNK_HEC_TOKEN": TOKEN})
    stop = threading.Event()
    sent = [0]

    def traffic() -> None:
        with httpx.Client(proxy=gateway.proxy_url, verify=trusting(gateway), timeout=10) as c:
            seed = 0
            while not stop.is_set():
                patient = make_patient(9000 + seed)
                body = hl7_adt(patient).encode() if seed % 2 else fhir_patient_json(patient)
                answer = c.post(f"{upstreams.foreign.url}/siem/{seed}", content=body)
                assert answer.status_code == 451
                sent[0] += 1
                seed += 1
                time.sleep(0.05)

    sender = threading.Thread(target=traffic, daemon=True)
    try:
        sender.start()
        banner = gateway.output()
        assert f"rsyslog: cef to syslog tcp+tls 127.0.0.1:{syslog_port}" in banner
        assert TOKEN not in banner
        time.sleep(3)
        rsyslog.stop()
        hec.stop()
        before = sent[0]
        time.sleep(OUTAGE_SECONDS)
        assert sent[0] > before + 50, "traffic kept flowing while the SIEMs were down"
        assert gateway.metric("phi_gateway_siem_output_up", output="rsyslog") == 0
        assert gateway.metric("phi_gateway_siem_lag_events", output="hec") > 0
        rsyslog.start()
        hec.start()
        time.sleep(3)
        stop.set()
        sender.join(15)
        trail = {str(r["incident_id"]) for r in gateway.audit_rows(wait_for=sent[0])}
        assert len(trail) >= sent[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cef_ids = {_cef_id(line) for line in rsyslog.events()}
            hec_ids = {e["event"]["incident_id"] for e in hec.events}
            lines = ocsf_file.read_text(encoding="utf-8").splitlines()
            if trail <= cef_ids and trail <= hec_ids and len(lines) >= len(trail):
                break
            time.sleep(0.5)
        trail = {str(r["incident_id"]) for r in gateway.audit_rows()}
        assert cef_ids == trail  # nothing missing, nothing invented
        assert hec_ids == trail
        assert hec.refused == 0
        events = [json.loads(line) for line in ocsf_file.read_text(encoding="utf-8").splitlines()]
        assert {e["metadata"]["uid"] for e in events} == trail
        assert len(events) == len(trail)  # a file takes each event once
        for event in events:
            assert problems(event) == []
        assert gateway.metric("phi_gateway_siem_delivered_total", output="hec") >= len(trail)
        assert gateway.metric("phi_gateway_siem_failures_total", output="rsyslog") > 0
        # No identifier reached any receiver.
        received = rsyslog.received.read_text(encoding="utf-8") + json.dumps(hec.events)
        # Hashes, fingerprints and epoch times are long runs of hex digits: a date of birth
        # can turn up inside one by chance.
        received = re.sub(r"[0-9a-f]{16,}|[0-9]{12,}", "#", received)
        for seed in range(sent[0]):
            patient = make_patient(9000 + seed)
            assert not [v for v in patient.identifiers() if len(v) > 4 and v in received]
    finally:
        stop.set()
        gateway.stop()
        rsyslog.stop()
        hec.stop()
