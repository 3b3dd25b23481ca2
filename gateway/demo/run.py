"""``phi-gateway demo`` (``make demo``): watch the gateway stop PHI on its way abroad.

On a fresh machine every address a newcomer can reach is domestic, so nothing is ever
stopped. The demo starts the real gateway with the default policy and one override that
places 127.0.0.2 in India (and 127.0.0.1, a reserved address no database answers for, in the
US), a recording receiver on each address (HTTP and MLLP), and a sender that pushes a few
minutes of synthetic hospital traffic through the proxy. It prints what arrived where, the
console's address with a demo token, and writes a block report. Nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from gateway.api_auth import new_token
from gateway.demo.traffic import KINDS, MLLP_END, MLLP_KIND, Sent, Target, send_demo_traffic

ABROAD_IP = "127.0.0.2"
DOMESTIC_IP = "127.0.0.1"
SHIPPED_CONFIG = Path("configs/gateway.yaml")


class Receiver:
    """A server that records what reached it: requests per kind and bytes, never content."""

    def __init__(self, host: str) -> None:
        self.arrived: Counter[str] = Counter()
        self.bytes = 0
        self._lock = threading.Lock()
        receiver = self

        class Http(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                receiver.record(self.path.strip("/") or "other", len(data))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Mllp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                buffer = b""
                while True:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    while MLLP_END in buffer:
                        frame, buffer = buffer.split(MLLP_END, 1)
                        receiver.record(MLLP_KIND, len(frame))
                        ack = b"MSH|^~\\&|VENDOR||EPIC||20261201||ACK|1|P|2.5.1\rMSA|AA|1\r"
                        self.request.sendall(b"\x0b" + ack + MLLP_END)

        self.http = ThreadingHTTPServer((host, 0), Http)
        self.mllp = socketserver.ThreadingTCPServer((host, 0), Mllp)
        self.mllp.daemon_threads = True
        for server in (self.http, self.mllp):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.host = host

    @property
    def http_port(self) -> int:
        return int(self.http.server_address[1])

    @property
    def mllp_port(self) -> int:
        return int(self.mllp.server_address[1])

    def record(self, kind: str, size: int) -> None:
        with self._lock:
            self.arrived[kind] += 1
            self.bytes += size

    def close(self) -> None:
        for server in (self.http, self.mllp):
            server.shutdown()
            server.server_close()


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def demo_config(
    workdir: Path, listen: str, admin: str, token_hash: str, mllp_ports: list[int]
) -> dict[str, Any]:
    """The shipped policy (configs/gateway.yaml when run from the source tree, the defaults
    otherwise) with what the demo needs on top: where loopback is, its own trail and ports."""
    config: dict[str, Any] = {}
    if SHIPPED_CONFIG.is_file():
        config = yaml.safe_load(SHIPPED_CONFIG.read_text()) or {}
    geo = config.setdefault("geo", {})
    geo["overrides"] = [
        *(geo.get("overrides") or []),
        {"cidr": f"{ABROAD_IP}/32", "country": "IN", "note": "demo: a vendor abroad"},
        {"cidr": f"{DOMESTIC_IP}/32", "country": "US", "note": "demo: the hospital's side"},
    ]
    proxy = config.setdefault("proxy", {})
    proxy["listen"] = listen
    proxy["confdir"] = str(workdir / "mitmproxy")
    proxy["mllp_ports"] = sorted({*(proxy.get("mllp_ports") or []), *mllp_ports})
    config.setdefault("admin", {}).update(
        {"listen": admin, "tokens": [{"name": "demo", "role": "analyst", "sha256": token_hash}]}
    )
    config.setdefault("audit", {}).update(
        {"database": str(workdir / "audit.db"), "instance_id": "demo", "checkpoint_log": None}
    )
    config.setdefault("siem", {})["outputs"] = []
    return config


def _wait_ready(admin: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the gateway exited: see gateway.log in the demo directory")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://{admin}/readyz", timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError("the gateway did not become ready: see gateway.log")


def _summary(sent: Sent, abroad: Receiver, domestic: Receiver) -> str:
    kinds = [*KINDS, MLLP_KIND]
    lines = [
        f"{'payload':<10} {'to India: blocked':>18} {'arrived':>8}   {'domestic: passed':>17} "
        f"{'arrived':>8}"
    ]
    for kind in kinds:
        lines.append(
            f"{kind:<10} {sent.count(kind, 'abroad', 'blocked'):>18} "
            f"{abroad.arrived[kind]:>8}   {sent.count(kind, 'domestic', 'passed'):>17} "
            f"{domestic.arrived[kind]:>8}"
        )
    other = {k: v for k, v in sent.answers.items() if k[2] not in ("blocked", "passed")}
    if other:
        lines.append(
            "other answers: " + ", ".join(f"{k[0]} {k[1]} {k[2]}: {v}" for k, v in other.items())
        )
    return "\n".join(lines)


def _cli() -> list[str]:
    # The same installation's command (the venv's): the gateway the user is trying out.
    return [str(Path(sys.executable).with_name("phi-gateway"))]


def run_demo(args: argparse.Namespace) -> int:
    workdir: Path = args.dir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    abroad, domestic = Receiver(ABROAD_IP), Receiver(DOMESTIC_IP)
    token, token_hash = new_token()
    admin = args.admin_listen
    config = demo_config(
        workdir, args.listen, admin, token_hash, [abroad.mllp_port, domestic.mllp_port]
    )
    config_path = workdir / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PHI_GATEWAY_SECRET": secrets.token_urlsafe(32)}
    log_path = workdir / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*_cli(), "run", "--config", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_ready(admin, process)
        host, _, port = args.listen.rpartition(":")
        proxy = (host, int(port))
        targets = [
            Target(
                "abroad", f"http://{ABROAD_IP}:{abroad.http_port}", (ABROAD_IP, abroad.mllp_port)
            ),
            Target(
                "domestic",
                f"http://{DOMESTIC_IP}:{domestic.http_port}",
                (DOMESTIC_IP, domestic.mllp_port),
            ),
        ]
        seconds = args.minutes * 60
        print(
            f"phi-gateway demo: the gateway runs (proxy {args.listen}, admin {admin}); "
            f"{ABROAD_IP} is placed in India, {DOMESTIC_IP} in the US.\n"
            f"Sending {seconds:.0f} s of synthetic hospital traffic (made-up patients) to both...",
            flush=True,
        )
        sent = send_demo_traffic(
            proxy,
            targets,
            seconds,
            on_round=lambda n: print(f"  round {n} sent", flush=True),
        )
        print(_summary(sent, abroad, domestic), flush=True)
        report = workdir / "block-report.html"
        made = subprocess.run(
            [
                *_cli(),
                "report",
                "--config",
                str(config_path),
                "--format",
                "html",
                "--out",
                str(report),
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        print(
            f"\nBlock report: {report}" if made.returncode in (0, 1) else "\nNo report was written."
        )
        print(
            f"Console: http://{admin}/console/  (sign in with the demo token, role analyst:)\n"
            f"  {token}\n"
            f"Metrics: http://{admin}/metrics\n"
            f"Proxy:   http://{args.listen}  (try: curl -x http://{args.listen} ...)\n"
            f"Files:   {workdir} (config, audit trail, gateway.log)",
            flush=True,
        )
        if not args.exit:
            print("The gateway keeps running: Ctrl-C stops the demo.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while process.poll() is None:
                    time.sleep(0.5)
        return 0 if process.poll() in (None, 0) else 1
    except RuntimeError as exc:
        print(f"phi-gateway demo: {exc} ({log_path})", file=sys.stderr)
        return 1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        abroad.close()
        domestic.close()


def add_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="run the gateway with a receiver 'abroad' on loopback and watch it block"
    )
    demo.add_argument("--dir", type=Path, default=Path("var/demo"), help="demo files (var/demo)")
    demo.add_argument("--minutes", type=float, default=2.0, help="how long to send (2)")
    demo.add_argument("--listen", default="127.0.0.1:8080", help="proxy address")
    demo.add_argument("--admin-listen", default="127.0.0.1:9464", help="admin and console")
    demo.add_argument("--exit", action="store_true", help="stop once the traffic is sent")
