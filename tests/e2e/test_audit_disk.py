"""The audit volume fills up (the SQLite trail and its spool on one small tmpfs this test mounts
as root): blocks still stop PHI, allow-listed PHI abroad is refused because it could not be
recorded, domestic traffic flows, /readyz says why; once space is back every decided event is in
the trail and `audit verify` finds it intact and complete. Skipped, saying why, where a tmpfs
cannot be mounted."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.audit.chain import derive_key
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.verify import verify
from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import GatewayProcess
from tests.support.mmdb import FOREIGN_IP_2
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
SECRET = b"disk test secret"


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    volume = tmp_path / "vol"
    volume.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the full-disk test needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(volume)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False, capture_output=True)


def _fill(volume: Path) -> Path:
    filler = volume / "filler"
    with filler.open("ab", buffering=0) as out:
        for size in (65536, 4096, 512, 1):  # to the last page: no file can grow
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def _wait(condition: object, seconds: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_a_full_audit_volume_refuses_unrecorded_phi_and_loses_no_event(
    small_volume: Path, tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    db = small_volume / "audit.db"
    config = gateway_config(
        test_mmdb,
        pki,
        audit={"database": str(db), "instance_id": "gw-disk"},
        policy={"allow_destinations": [{"cidr": f"{FOREIGN_IP_2}/32", "reason": "BAA 9"}]},
    )
    gateway = GatewayProcess(tmp_path / "gw", config, env={"PHI_GATEWAY_SECRET": SECRET.decode()})
    body = hl7_adt(make_patient(1801)).encode()
    decided = 0
    try:
        with httpx.Client(proxy=gateway.proxy_url, timeout=10) as client:
            assert client.post(f"{upstreams.foreign.url}/d0", content=body).status_code == 451
            assert client.post(f"{upstreams.foreign_2.url}/b0", content=body).status_code == 200
            decided += 2
            _wait(lambda: len(gateway.audit_rows()) == 2, 10)
            # SQLite gives back some pages when its write fails: fill again until neither
            # it nor the spool can grow.
            for attempt in range(5):
                filler = _fill(small_volume)
                for number in range(5):
                    path = f"/d{attempt}-{number}"
                    blocked = client.post(f"{upstreams.foreign.url}{path}", content=body)
                    assert blocked.status_code == 451
                    decided += 1
                time.sleep(1.5)
                if gateway.metric("phi_gateway_audit_held_events") > 0:
                    break
            assert gateway.metric("phi_gateway_audit_held_events") > 0
            refused = client.post(f"{upstreams.foreign_2.url}/b1", content=body)
            decided += 1
            assert refused.status_code == 451, refused.text
            assert "recorded" in refused.text
            assert not any(r.path == "/b1" for r in upstreams.foreign_2.received)
            home = client.post(f"{upstreams.domestic.url}/home", content=body)
            assert home.status_code == 200
            status, text = gateway.admin_get("/readyz")
            assert status == 503 and "audit store and spool not writable" in text
            assert "database or disk is full" in gateway.output()
            assert "cannot rollback" not in gateway.output()
            filler.unlink()
            _wait(lambda: gateway.metric("phi_gateway_audit_held_events") == 0)
            _wait(lambda: gateway.admin_get("/readyz")[0] == 200, 10)
            again = client.post(f"{upstreams.foreign_2.url}/b2", content=body)
            assert again.status_code == 200  # recorded again: the BAA transfer goes
            decided += 1
        assert gateway.stop() == 0, gateway.output()[-2000:]
    finally:
        gateway.stop()
    rows = [r for r in gateway.audit_rows() if r["kind"] == "decision"]
    assert len(rows) == decided
    assert sum(1 for r in rows if r["rule"] == "unrecordable") == 1
    result = verify(SqliteBackend(db), derive_key(SECRET, "checkpoint"))
    assert result.intact and result.complete, result.describe()
