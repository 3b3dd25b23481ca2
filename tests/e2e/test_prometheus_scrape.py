"""A real Prometheus (Debian's package) scrapes a running gateway with the shipped rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
RULES = Path(__file__).parents[2] / "configs" / "prometheus" / "phi-gateway-rules.yml"


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (make test installs Debian's prometheus as root)")
    yield Path(binary), free_port()


def query(port: int, expr: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, object]] = json.load(response)["data"]["result"]
        return result


def test_prometheus_scrapes_the_gateway(
    tmp_path: Path,
    prometheus_for: tuple[Path, int],
    test_mmdb: Path,
    pki: Pki,
    upstreams: Upstreams,
) -> None:
    binary, port = prometheus_for
    gateway = GatewayProcess(tmp_path / "gw", gateway_config(test_mmdb, pki))
    try:
        with httpx.Client(proxy=gateway.proxy_url, verify=trusting(gateway), timeout=10) as c:
            for seed in range(3):
                body = hl7_adt(make_patient(seed)).encode()
                assert c.post(f"{upstreams.foreign.url}/s", content=body).status_code == 451
        shutil.copy(RULES, tmp_path / "rules.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {
                    "job_name": "phi-gateway",
                    "static_configs": [{"targets": [f"127.0.0.1:{gateway.admin_port}"]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (tmp_path / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [
                str(binary),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            blocked: list[dict[str, object]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    blocked = query(
                        port, 'sum(phi_gateway_decisions_total{job="phi-gateway",action="block"})'
                    )
                except OSError:
                    blocked = []
                if blocked:
                    break
                time.sleep(0.5)
            assert blocked, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert float(blocked[0]["value"][1]) == 3  # type: ignore[index]
            assert float(query(port, 'up{job="phi-gateway"}')[0]["value"][1]) == 1  # type: ignore[index]
            assert float(query(port, "phi_gateway_ready")[0]["value"][1]) == 1  # type: ignore[index]
            events = query(port, 'sum(phi_gateway_audit_events_total{action="block"})')
            assert float(events[0]["value"][1]) == 3  # type: ignore[index]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as r:
                groups = json.load(r)["data"]["groups"]
            rules = {rule["name"]: rule for g in groups for rule in g["rules"]}
            assert "PhiBlockSpike" in rules and rules["PhiGatewayDown"]["health"] == "ok"
        finally:
            prometheus.terminate()
            prometheus.wait(15)
            log.close()
    finally:
        gateway.stop()
