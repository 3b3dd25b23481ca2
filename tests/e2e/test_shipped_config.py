"""`make run`'s setup: the shipped config and the embedded DB-IP database, for real."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import Upstreams
from tests.support.gateway_process import BIN, GatewayProcess
from tests.support.patients import hl7_adt, make_patient

pytestmark = pytest.mark.e2e
REPO = Path(__file__).parents[2]
SHIPPED = REPO / "configs" / "gateway.yaml"
EMBEDDED = REPO / "geo_db" / "dbip-country-lite.mmdb"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )


def test_shipped_config_checks_out() -> None:
    result = run_cli("check-config", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    assert "mode enforce" in result.stdout


@pytest.mark.parametrize(
    ("address", "country", "verdict"),
    [
        ("8.8.8.8", "US", "domestic"),
        ("49.44.0.1", "IN", "foreign"),
        ("10.1.2.3", "US", "domestic"),
        ("192.0.2.1", "unknown", "foreign"),
        ("3.4.12.4", "IE", "foreign"),  # AWS eu-west-1 by the embedded provider list
        ("104.16.0.1", "unknown", "foreign"),  # Cloudflare: anycast, treated by geo.anycast
    ],
)
def test_embedded_database_lookups(address: str, country: str, verdict: str) -> None:
    result = run_cli("geo", "lookup", address, "--config", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    assert f"{address}: {country} (" in result.stdout
    assert f"jurisdiction verdict: {verdict}" in result.stdout
    assert "IP geolocation by DB-IP" in result.stdout


def test_lookup_shows_every_source_and_the_rule() -> None:
    result = run_cli("geo", "lookup", "3.4.12.4", "--config", str(SHIPPED))
    out = result.stdout
    assert "3.4.12.4: IE (foreign, by provider)" in out
    assert "rule: provider list: aws eu-west-1 3.4.12.4/32" in out
    assert "provider:aws: IE [eu-west-1 3.4.12.4/32] (data 2026-08-22)" in out
    assert re.search(r"db:dbip-country-lite: [A-Z]{2} \(data 2026-06-01\)", out), out
    assert re.search(r"db:geo-whois-asn-country: [A-Z]{2} \(data 2026-06-17\)", out), out
    assert "databases (combined by any-foreign)" in out


def test_embedded_database_answers_ipv6() -> None:
    result = run_cli("geo", "lookup", "2001:4860:4860::8888", "--config", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"2001:4860:4860::8888: [A-Z]{2} \((domestic|foreign), by database\)", result.stdout
    ), result.stdout


def test_make_run_setup_serves_domestic_traffic(tmp_path: Path, upstreams: Upstreams) -> None:
    config = yaml.safe_load(SHIPPED.read_text())
    config["audit"]["database"] = str(tmp_path / "audit.db")
    config["proxy"]["confdir"] = str(tmp_path / "mitmproxy")
    process = GatewayProcess(tmp_path, config)
    try:
        body = hl7_adt(make_patient(11)).encode()
        # Loopback is domestic by the shipped overrides, both 127.0.0.1 and 127.0.0.2.
        for server in (upstreams.domestic, upstreams.foreign):
            response = httpx.post(f"{server.url}/make-run", content=body, proxy=process.proxy_url)
            assert response.status_code == 200
            assert server.received[-1].body == body
        out = process.output()
        assert f"dbip-country-lite.mmdb (DBIP-Country-Lite, built {_build_date()}" in out
        assert "IP geolocation by DB-IP" in out
    finally:
        process.stop()


def _build_date() -> str:
    import json

    date: str = json.loads(EMBEDDED.with_suffix(".json").read_text())["build_date"]
    return date
