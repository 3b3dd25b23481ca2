"""The incident workflow on a real gateway: changes by the CLI and the API are chained audit
events that `audit verify` covers, reports show each incident's disposition and time to
close, the SIEM stream carries the changes but never a comment, and roles are enforced."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from gateway.api_auth import new_token
from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import BIN, GatewayProcess
from tests.support.ocsf.check import problems
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
AUDITOR, AUDITOR_HASH = new_token()
ANALYST, ANALYST_HASH = new_token()
SECRET = "workflow-test-secret"
COMMENT = "spoke to the coding vendor; Mr Example's chart was resent by fax"


def _post(port: int, incident: str, token: str, body: dict[str, str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/incidents/{incident}/workflow",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(port: int, path: str, token: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def _cli(config: Path, *args: str, admin: str = "") -> subprocess.CompletedProcess[str]:
    extra = ["--admin", admin] if admin else []
    return subprocess.run(
        [str(BIN), *args, *extra, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PHI_GATEWAY_TOKEN": ANALYST, "PHI_GATEWAY_SECRET": SECRET},
        check=False,
    )


def test_workflow_changes_are_chained_reported_and_streamed(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    stream = tmp_path / "siem.jsonl"
    config = gateway_config(
        test_mmdb,
        pki,
        audit={"instance_id": "gw-wf"},
        admin={
            "tokens": [
                {"name": "auditor-1", "role": "auditor", "sha256": AUDITOR_HASH},
                {"name": "analyst-1", "role": "analyst", "sha256": ANALYST_HASH},
            ]
        },
        siem={"poll_seconds": 0.1, "outputs": [{"type": "file", "path": str(stream)}]},
    )
    gateway = GatewayProcess(tmp_path / "gw", config, env={"PHI_GATEWAY_SECRET": SECRET})
    try:
        with httpx.Client(proxy=gateway.proxy_url, verify=trusting(gateway), timeout=10) as c:
            for seed in (41, 42):
                body = hl7_adt(make_patient(seed)).encode()
                assert c.post(f"{upstreams.foreign.url}/wf", content=body).status_code == 451
        rows = gateway.audit_rows(wait_for=2)
        first, second = (str(r["incident_id"]) for r in rows[:2])
        port = gateway.admin_port
        config_file = gateway.workdir / "gateway.yaml"
        admin = f"127.0.0.1:{port}"

        # The CLI, as an analyst: acknowledge, assign, comment, close.
        done = _cli(config_file, "incident", "acknowledge", first, admin=admin)
        assert done.returncode == 0, done.stderr
        assert "new -> acknowledged" in done.stdout
        assert (
            _cli(
                config_file, "incident", "assign", first, "--assignee", "dana", admin=admin
            ).returncode
            == 0
        )
        assert (
            _cli(
                config_file, "incident", "comment", first, "--comment", COMMENT, admin=admin
            ).returncode
            == 0
        )
        closing = _cli(
            config_file, "incident", "close", first, "--disposition", "false-positive", admin=admin
        )
        assert closing.returncode == 0 and "-> false-positive" in closing.stdout
        again = _cli(config_file, "incident", "acknowledge", first, admin=admin)
        assert again.returncode != 0 and "409" in again.stderr  # closed: reopen first

        # The API: an auditor may read, not change; an analyst may.
        assert _post(port, second, AUDITOR, {"change": "acknowledge"})[0] == 403
        assert _post(port, second, ANALYST, {"change": "close"})[0] == 400  # no disposition
        assert (
            _post(port, "INC-20990101T000000Z-00000000", ANALYST, {"change": "acknowledge"})[0]
            == 404
        )
        code, answer = _post(port, second, ANALYST, {"change": "close", "disposition": "resolved"})
        assert code == 200 and answer["state"] == "resolved"

        detail = _get(port, f"/api/v1/incidents/{first}", AUDITOR)["workflow"]
        assert detail["state"] == "false-positive" and detail["assignee"] == "dana"
        assert [h["change"] for h in detail["history"]] == [
            "acknowledge",
            "assign",
            "comment",
            "close",
        ]
        assert detail["history"][2]["comment"] == COMMENT  # kept in the trail, for analysts
        assert {h["by"] for h in detail["history"]} == {"analyst-1"}

        shown = _cli(config_file, "incident", "show", first, admin=admin)
        assert "state false-positive" in shown.stdout and COMMENT not in shown.stdout

        # audit verify covers the workflow events.
        verified = _cli(config_file, "audit", "verify", "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["intact"] is True

        # The report shows dispositions and the time to close.
        report = _get(port, "/api/v1/reports/blocks?format=json", AUDITOR)
        by_id = {i["incident_id"]: i for i in report["incidents"]}
        assert by_id[first]["disposition"] == "false-positive"
        assert by_id[second]["disposition"] == "resolved"
        assert isinstance(by_id[first]["hours_to_close"], float)

        # The SIEM stream has every change, never the comment.
        rows = gateway.audit_rows()
        changes = [r for r in rows if r["kind"] == "workflow"]
        assert len(changes) == 5
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            lines = stream.read_text(encoding="utf-8").splitlines() if stream.exists() else []
            if len(lines) >= len(gateway.audit_rows()) - 1:
                break
            time.sleep(0.2)
        text = stream.read_text(encoding="utf-8")
        assert "resent by fax" not in text and "Example" not in text
        events = [json.loads(line) for line in text.splitlines()]
        closes = [e for e in events if e["class_uid"] == 2006 and e["activity_id"] == 3]
        assert {e["finding_info"]["uid"] for e in closes} == {first, second}
        for event in events:
            assert problems(event) == []
    finally:
        gateway.stop()
