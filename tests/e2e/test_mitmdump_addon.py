"""The addon inside plain mitmdump, and the fail-open trap that `phi-gateway run` avoids."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams
from tests.support.gateway_process import BIN, free_port
from tests.support.patients import hl7_adt, make_patient

pytestmark = pytest.mark.e2e
REPO = Path(__file__).parents[2]
ADT = hl7_adt(make_patient(9)).encode()


def mitmdump(tmp_path: Path, config: Path, script: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN.parent / "mitmdump"),
            "-q",
            "-s",
            str(script),
            "--set",
            f"phi_gateway_config={config}",
            "--set",
            "connection_strategy=lazy",
            "--set",
            f"confdir={tmp_path / 'mitm'}",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def write_config(tmp_path: Path, test_mmdb: Path) -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"geo:\n  databases: [{{path: {test_mmdb}, answers_reserved: true}}]\n"
        f"audit:\n  database: {tmp_path / 'audit.db'}\n"
    )
    return config


def test_addon_blocks_inside_mitmdump(
    tmp_path: Path, test_mmdb: Path, upstreams: Upstreams
) -> None:
    config = write_config(tmp_path, test_mmdb)
    for port in mitmdump(tmp_path, config, REPO / "addons" / "phi_gateway.py"):
        response = httpx.post(
            upstreams.foreign.url + "/via-mitmdump", content=ADT, proxy=f"http://127.0.0.1:{port}"
        )
        assert response.status_code == 451
    assert "/via-mitmdump" not in upstreams.foreign.paths()


def test_mitmdump_fails_open_when_the_script_reload_fails(
    tmp_path: Path, test_mmdb: Path, upstreams: Upstreams
) -> None:
    """Documents the trap `phi-gateway run` exists to avoid: mitmdump hot-reloads `-s`
    scripts, and when the reload fails it keeps proxying without the addon."""
    script = tmp_path / "phi_gateway.py"
    script.write_text((REPO / "addons" / "phi_gateway.py").read_text())
    config = write_config(tmp_path, test_mmdb)
    for port in mitmdump(tmp_path, config, script):
        proxy = f"http://127.0.0.1:{port}"
        assert (
            httpx.post(upstreams.foreign.url + "/before", content=ADT, proxy=proxy).status_code
            == 451
        )
        script.write_text("this is not python (\n")
        deadline = time.monotonic() + 15
        status = 451
        while status == 451 and time.monotonic() < deadline:
            time.sleep(0.5)
            status = httpx.post(
                upstreams.foreign.url + "/trap", content=ADT, proxy=proxy
            ).status_code
        assert status == 200  # the trap: PHI went abroad unfiltered
    assert "/trap" in upstreams.foreign.paths()
    assert "/before" not in upstreams.foreign.paths()
