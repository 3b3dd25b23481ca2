"""Start the real ``phi-gateway run`` as a subprocess and talk to it like an operator would."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from tests.support.netns import Netns

BIN = Path(sys.executable).parent / "phi-gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _limited_files(nofile: int) -> list[str]:
    """A prefix that runs the command under RLIMIT_NOFILE ``nofile`` (set, then exec'd)."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code]


class GatewayProcess:
    """``netns``: run the gateway inside that network namespace (the admin API is reached from
    a thread that enters it too), listening on ``listen_host`` there."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        extra_args: list[str] = (),  # type: ignore[assignment]
        *,
        netns: Netns | None = None,
        listen_host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        nofile: int | None = None,
    ) -> None:
        """``nofile``: the gateway's RLIMIT_NOFILE (soft and hard), set in the child."""
        self.workdir = workdir
        self.netns = netns
        self.listen_host = listen_host
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_port = free_port()
        self.config = config
        config.setdefault("audit", {}).setdefault("database", str(workdir / "audit.db"))
        config.setdefault("proxy", {}).setdefault("confdir", str(workdir / "mitmproxy"))
        self.config_path = workdir / "gateway.yaml"
        self.write_config(config)
        self.log_path = workdir / "gateway.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *(netns.exec_prefix if netns else ()),
                *(_limited_files(nofile) if nofile is not None else ()),
                str(BIN),
                "run",
                "--config",
                str(self.config_path),
                "--listen",
                f"{listen_host}:{self.port}",
                "--admin",
                f"127.0.0.1:{self.admin_port}",
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.wait_ready()

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config))

    @property
    def proxy_url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    @property
    def ca_pem(self) -> Path:
        return Path(self.config["proxy"]["confdir"]) / "mitmproxy-ca-cert.pem"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin_get(self, path: str) -> tuple[int, str]:
        if self.netns is not None:
            return self.netns.call(lambda: self._admin_get(path))
        return self._admin_get(path)

    def _admin_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}{path}",
                timeout=5,
            ) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.output()}")
            try:
                if self.admin_get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.output()}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include the given ones."""
        _, text = self.admin_get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def audit_rows(self, wait_for: int = 0, timeout: float = 5) -> list[dict[str, Any]]:
        db = Path(self.config["audit"]["database"])
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while True:
            if db.exists():
                conn = sqlite3.connect(db)
                conn.row_factory = sqlite3.Row
                try:
                    rows = [
                        dict(r) for r in conn.execute("SELECT * FROM audit_events ORDER BY seq")
                    ]
                except sqlite3.OperationalError:
                    rows = []
                finally:
                    conn.close()
            if len(rows) >= wait_for or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def audit_rows_where(self, **match: str) -> list[dict[str, Any]]:
        """Rows whose columns equal the given values, waiting briefly for the writer."""
        deadline = time.monotonic() + 5
        while True:
            rows = [r for r in self.audit_rows() if all(r.get(k) == v for k, v in match.items())]
            if rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def audit_row(self, incident_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for row in self.audit_rows():
                if row["incident_id"] == incident_id:
                    row["categories"] = json.loads(row["categories"])
                    return row
            time.sleep(0.05)
        raise AssertionError(f"no audit row for {incident_id}")

    def reload(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs (a crash, an OOM kill, a power cut of the process)."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
