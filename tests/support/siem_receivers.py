"""Real SIEM receivers on loopback for the streaming tests: Debian's rsyslogd with its TLS
driver (gtls) writing what it receives to a file, and a small Splunk-HEC-compatible HTTPS
endpoint. Both can be stopped and started again on the same port (an outage)."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RSYSLOGD = Path("/usr/sbin/rsyslogd")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", re.S)


def rsyslog_missing() -> str | None:
    """Why rsyslog cannot run here (None: it can)."""
    if not RSYSLOGD.exists():
        return "rsyslogd not installed (scripts/install-test-tools.sh installs rsyslog)"
    if not list(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so")):
        return "rsyslog's TLS driver not installed (package rsyslog-gnutls)"
    return None


def split_pem(combined: Path, directory: Path) -> tuple[Path, Path]:
    """(certificate file, key file) from one PEM holding both (rsyslog wants two)."""
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(combined.read_bytes())]
    cert = directory / "syslog-cert.pem"
    key = directory / "syslog-key.pem"
    cert.write_bytes(b"".join(b for b in blocks if b"CERTIFICATE" in b[:40]))
    key.write_bytes(b"".join(b for b in blocks if b"PRIVATE KEY" in b[:40]))
    key.chmod(0o600)
    return cert, key


@dataclass
class Rsyslog:
    directory: Path
    port: int
    ca: Path
    cert: Path
    key: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def received(self) -> Path:
        return self.directory / "received.log"

    def _config(self) -> Path:
        work = self.directory / "work"
        work.mkdir(parents=True, exist_ok=True)
        config = self.directory / "rsyslog.conf"
        config.write_text(
            f"""
global(
    workDirectory="{work}"
    maxMessageSize="64k"
    defaultNetstreamDriver="gtls"
    defaultNetstreamDriverCAFile="{self.ca}"
    defaultNetstreamDriverCertFile="{self.cert}"
    defaultNetstreamDriverKeyFile="{self.key}"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{self.port}")
template(name="sdmsg" type="string" string="%structured-data% %msg%\\n")
action(type="omfile" file="{self.received}" template="sdmsg")
""",
            encoding="utf-8",
        )
        return config

    def start(self) -> None:
        config = self._config()
        pid = self.directory / "rsyslogd.pid"
        self.process = subprocess.Popen(
            [str(RSYSLOGD), "-n", "-f", str(config), "-i", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "rsyslogd.err").open("ab"),
        )
        _wait_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
            self.process = None

    def events(self) -> list[str]:
        """The message part of every line received (after the structured data)."""
        if not self.received.exists():
            return []
        lines = self.received.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line.split("] ", 1)[1] for line in lines if "] " in line]


def _wait_port(port: int, process: subprocess.Popen[bytes], seconds: float = 15) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"receiver exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def start_rsyslog(directory: Path, port: int, ca: Path, combined_pem: Path) -> Rsyslog:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = split_pem(combined_pem, directory)
    receiver = Rsyslog(directory, port, ca, cert, key)
    receiver.start()
    return receiver


@dataclass
class HecReceiver:
    """POST /services/collector/event with "Authorization: Splunk <token>": newline- or
    space-separated JSON events, answered as Splunk does."""

    port: int
    token: str
    context: ssl.SSLContext
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    _server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Authorization") != f"Splunk {receiver.token}":
                    receiver.refused += 1
                    self._answer(401, {"text": "Invalid token", "code": 4})
                    return
                decoder = json.JSONDecoder()
                text, at = body.decode(), 0
                while at < len(text):
                    while at < len(text) and text[at].isspace():
                        at += 1
                    if at >= len(text):
                        break
                    event, at = decoder.raw_decode(text, at)
                    receiver.events.append(event)
                self._answer(200, {"text": "Success", "code": 0})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = self.context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
