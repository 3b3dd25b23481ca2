"""A real PostgreSQL for tests, started by scripts/pg-test-server.sh on a loopback port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.gateway_process import free_port

SCRIPT = Path(__file__).parents[2] / "scripts" / "pg-test-server.sh"


class PostgresUnavailable(Exception):
    pass


class PostgresServer:
    def __init__(self) -> None:
        # Not under pytest's tmp (mode 0700 for root): the server may run as "postgres".
        self.dir = Path(tempfile.mkdtemp(prefix="phi-gateway-pg-"))
        self.port = free_port()
        result = subprocess.run(
            ["bash", str(SCRIPT), "start", str(self.dir), str(self.port)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            logs = "".join(p.read_text(errors="replace")[-800:] for p in self.dir.glob("*.log"))
            shutil.rmtree(self.dir, ignore_errors=True)
            raise PostgresUnavailable(result.stderr.strip() + logs)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=postgres user=gateway"

    def halt(self) -> None:
        """Stop the server as an outage does; its data stays for ``resume``."""
        self._script("stop")

    def resume(self) -> None:
        self._script("resume", str(self.port))

    def freeze(self) -> None:
        """Stop the server's processes (SIGSTOP) as a hung host does: connections stay open,
        the kernel still acknowledges them, nothing answers."""
        self._signal("-STOP")

    def thaw(self) -> None:
        self._signal("-CONT")

    def _signal(self, which: str) -> None:
        pid = (self.dir / "data" / "postmaster.pid").read_text().split()[0]
        children = subprocess.run(
            ["pgrep", "-P", pid], capture_output=True, text=True, check=False
        ).stdout.split()
        subprocess.run(["kill", which, pid, *children], check=False, capture_output=True)

    def stop(self) -> None:
        self.thaw()
        self._script("stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _script(self, command: str, *args: str) -> None:
        subprocess.run(
            ["bash", str(SCRIPT), command, str(self.dir), *args],
            capture_output=True,
            timeout=60,
            check=False,
        )
