"""HAProxy in front of the gateway's proxy workers (``run --workers N``): its configuration and
its process. Debian's package (``haproxy``, installed by scripts/install-test-tools.sh and in
the container image); never a downloaded binary.

TCP mode throughout: the workers terminate TLS and speak every protocol themselves (HTTP,
CONNECT tunnels, MLLP, DICOM), HAProxy only spreads connections, by least connections. Each
connection it opens to a worker starts with a PROXY protocol v2 header (``send-proxy-v2``), so
the worker knows the real client (gateway/proxy_protocol.py). A worker is checked on its
admin port's ``/readyz`` every second: two failures take it out, one success puts it back, so
a dead or unready worker stops getting connections within about two seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import StartError

# Seconds between health checks of a worker; ``_FALL`` failed checks take it out.
CHECK_SECONDS = 1
_FALL = 2
# Idle TCP sessions (a kept-alive HL7 interface, a quiet CONNECT tunnel) are the workers' to
# bound (connections.*); HAProxy only cuts what is idle far longer.
_IDLE = "1h"


@dataclass(frozen=True, slots=True)
class Worker:
    """One worker process as HAProxy reaches it: its listener for this frontend and its
    admin port (for /readyz)."""

    name: str
    port: int
    admin_port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Frontend:
    """One public listen address and the worker listeners behind it (one per worker)."""

    name: str
    host: str
    port: int
    workers: tuple[Worker, ...]


def binary() -> str:
    """The HAProxy executable, or StartError naming how to install it."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise StartError(
            "--workers needs HAProxy in front of the workers: install Debian's haproxy "
            "package (scripts/install-test-tools.sh does)"
        )
    return found


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render(frontends: Sequence[Frontend], runtime: Path, drain_seconds: int) -> str:
    """The configuration: one frontend and one backend per public address."""
    lines = [
        "# Written by phi-gateway run --workers at each start; edits are lost.",
        "global",
        f"    stats socket {runtime / 'haproxy.sock'} mode 600 level admin",
        f"    hard-stop-after {drain_seconds}s",
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        f"    timeout client {_IDLE}",
        f"    timeout server {_IDLE}",
        "    timeout client-fin 10s",
        "    timeout server-fin 10s",
        f"    default-server inter {CHECK_SECONDS}s fastinter {CHECK_SECONDS}s fall {_FALL} rise 1",
    ]
    for frontend in frontends:
        lines += [
            "",
            f"frontend {frontend.name}",
            f"    bind {_address(frontend.host, frontend.port)}",
            f"    default_backend {frontend.name}-workers",
            "",
            f"backend {frontend.name}-workers",
            "    balance leastconn",
            "    option httpchk GET /readyz",
            "    http-check expect status 200",
        ]
        lines += [
            f"    server {w.name} {_address(w.host, w.port)} check port {w.admin_port} "
            "send-proxy-v2"
            for w in frontend.workers
        ]
    return "\n".join(lines) + "\n"


def check(config: Path) -> None:
    """``haproxy -c``: StartError with HAProxy's own words when it refuses the file."""
    done = subprocess.run(
        [binary(), "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise StartError(f"HAProxy refuses its configuration: {done.stderr.strip()[-500:]}")


def command(config: Path) -> list[str]:
    """HAProxy in the foreground (``-db``: its warnings on stderr), master-worker (``-W``):
    SIGUSR1 stops it softly (no new connections, the open ones finish, up to
    ``hard-stop-after``)."""
    return [binary(), "-W", "-db", "-f", str(config)]


def drain(process: subprocess.Popen[bytes]) -> None:
    """Stop accepting; the sessions in flight finish (SIGUSR1: HAProxy's soft stop)."""
    if process.poll() is None:
        process.send_signal(signal.SIGUSR1)
