"""What an admin does: start, check, reload, monitor, allow and deny — against real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import BIN, GatewayProcess, free_port
from tests.support.mmdb import FOREIGN_IP
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
REPO = Path(__file__).parents[2]
ADT = hl7_adt(make_patient(3)).encode()


def phi_gateway(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )


def test_check_config_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  mode: enforcing\n  foreign_phi_action: block\n")
    result = phi_gateway("check-config", str(bad))
    assert result.returncode == 2
    assert "policy.mode" in result.stderr
    assert "'enforce' or 'monitor'" in result.stderr


def test_check_config_checks_the_geo_database(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"geo:\n  databases: [{tmp_path / 'missing.mmdb'}]\n")
    result = phi_gateway("check-config", str(config))
    assert result.returncode == 2
    assert "geo.databases[0].path" in result.stderr


def test_check_config_accepts_a_good_file(tmp_path: Path, test_mmdb: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"geo:\n  databases: [{test_mmdb}]\naudit:\n  database: {tmp_path}/a.db\n")
    result = phi_gateway("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert "OK (policy version" in result.stdout


def test_run_refuses_to_start_with_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("jurisdiction:\n  allowed_countries: [USA]\n")
    port = free_port()
    result = phi_gateway(
        "run",
        "--config",
        str(bad),
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{free_port()}",
    )
    assert result.returncode == 2
    assert "jurisdiction.allowed_countries[0]" in result.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_run_refuses_to_start_without_its_geo_database(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"geo:\n  databases: [{tmp_path / 'missing.mmdb'}]\n")
    result = phi_gateway(
        "run",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--admin",
        f"127.0.0.1:{free_port()}",
    )
    assert result.returncode == 2
    assert "cannot open MaxMind database" in result.stderr


def test_geo_lookup(tmp_path: Path, test_mmdb: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"geo:\n  databases: [{{path: {test_mmdb}, answers_reserved: true}}]\n"
        "  overrides: [{cidr: 127.0.0.9/32, country: DE}]\n"
    )
    foreign = phi_gateway("geo", "lookup", FOREIGN_IP, "--config", str(config))
    assert foreign.returncode == 0
    assert "127.0.0.2: IN (foreign, by database)" in foreign.stdout
    assert "db:test-world: IN" in foreign.stdout
    assert "jurisdiction verdict: foreign" in foreign.stdout
    overridden = phi_gateway("geo", "lookup", "127.0.0.9", "--config", str(config))
    assert "override:127.0.0.9/32: DE" in overridden.stdout
    home = phi_gateway("geo", "lookup", "localhost", "--config", str(config))
    assert "127.0.0.1: US (domestic" in home.stdout


def test_monitor_mode_forwards_and_records(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    process = GatewayProcess(tmp_path, gateway_config(test_mmdb, pki, policy={"mode": "monitor"}))
    try:
        with httpx.Client(proxy=process.proxy_url, verify=trusting(process)) as client:
            response = client.post(upstreams.foreign.url + "/monitored", content=ADT)
        assert response.status_code == 200
        assert upstreams.foreign.received[-1].body == ADT
        rows = process.audit_rows(wait_for=1)
        assert [r["action"] for r in rows] == ["monitor"]
        assert rows[0]["rule"] == "foreign-phi"
        assert process.metric("phi_gateway_decisions_total", action="monitor") == 1
    finally:
        process.stop()


def test_deny_list_blocks_everything_even_at_home(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    config = gateway_config(
        test_mmdb,
        pki,
        policy={
            "deny_destinations": [
                {"host": "127.0.0.1", "port": upstreams.domestic.port, "reason": "contract ended"}
            ]
        },
    )
    process = GatewayProcess(tmp_path, config)
    try:
        with httpx.Client(proxy=process.proxy_url) as client:
            response = client.post(upstreams.domestic.url + "/denied", content=b"hello")
        assert response.status_code == 451
        assert response.json()["rule"] == "deny-list"
        assert "contract ended" in response.json()["reason"]
        assert "/denied" not in upstreams.domestic.paths()
    finally:
        process.stop()


def test_reload_keeps_last_good_policy(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    config = gateway_config(test_mmdb, pki)
    process = GatewayProcess(tmp_path, config)
    try:
        process.config_path.write_text("policy: {mode: [broken\n")
        process.reload()
        _wait_for(lambda: process.metric("phi_gateway_config_reloads_total", result="failure") == 1)
        assert process.proc.poll() is None
        with httpx.Client(proxy=process.proxy_url) as client:
            assert client.post(upstreams.foreign.url + "/r1", content=ADT).status_code == 451
            # A valid new policy takes effect.
            config["policy"] = {"mode": "monitor"}
            process.write_config(config)
            process.reload()
            _wait_for(
                lambda: process.metric("phi_gateway_config_reloads_total", result="success") >= 1
            )
            assert client.post(upstreams.foreign.url + "/r2", content=ADT).status_code == 200
        assert "/r1" not in upstreams.foreign.paths()
        assert "/r2" in upstreams.foreign.paths()
    finally:
        process.stop()


def test_a_half_written_config_is_not_reloaded(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    deny = {"host": "127.0.0.1", "port": upstreams.domestic.port, "reason": "contract ended"}
    config = gateway_config(test_mmdb, pki, policy={"deny_destinations": [deny]})
    process = GatewayProcess(tmp_path, config)
    try:
        whole = process.config_path.read_text()
        # As an editor's write looks halfway: valid YAML that stops before the policy.
        cut = whole[: whole.index("policy:")].rstrip("\n") + "\n"
        for failures, text in enumerate((cut, whole[: whole.index("contract") + 5]), 1):
            process.config_path.write_text(text)
            process.reload()  # one at a time: signals sent together may arrive as one
            _wait_for(
                lambda n=failures: (
                    process.metric("phi_gateway_config_reloads_total", result="failure") == n
                )
            )
        with httpx.Client(proxy=process.proxy_url) as client:
            response = client.post(upstreams.domestic.url + "/still-denied", content=b"x")
        assert response.status_code == 451 and response.json()["rule"] == "deny-list"
        # Written whole and renamed into place, the same file is taken.
        staged = process.config_path.with_suffix(".tmp")
        staged.write_text(whole.replace("contract ended", "contract ended 2025"))
        staged.replace(process.config_path)
        process.reload()
        _wait_for(lambda: process.metric("phi_gateway_config_reloads_total", result="success") >= 1)
        assert "/still-denied" not in upstreams.domestic.paths()
    finally:
        process.stop()


def test_clean_shutdown_flushes_the_audit_trail(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    process = GatewayProcess(tmp_path, gateway_config(test_mmdb, pki))
    with httpx.Client(proxy=process.proxy_url) as client:
        for i in range(20):
            client.post(upstreams.foreign.url + f"/s{i}", content=ADT)
    assert process.stop() == 0
    assert len(process.audit_rows()) == 20


def _wait_for(condition: object, timeout: float = 10) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_audit_list_command(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    process = GatewayProcess(tmp_path, gateway_config(test_mmdb, pki))
    with httpx.Client(proxy=process.proxy_url) as client:
        response = client.post(upstreams.foreign.url + "/listed", content=ADT)
    process.stop()
    result = phi_gateway("audit", "list", "--config", str(process.config_path), "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["incident_id"] == response.headers["x-phi-gateway-incident"]
    assert sys.executable  # the listing ran in the project's interpreter
