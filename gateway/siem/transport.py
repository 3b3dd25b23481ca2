"""How a batch of encoded events reaches a SIEM: syslog (RFC 5424 over TCP with
octet-counting framing, TLS per RFC 5425, or UDP), HTTP (Splunk HEC, a webhook), or a file.

``send`` raises ``DeliveryError`` when the batch may not have arrived (the forwarder sends it
again: receivers de-duplicate by event id). ``confirm_seconds`` says how long a connection
must stay open after a write before its batch counts as delivered (0: the answer confirms).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import os
import select
import socket
import ssl
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from gateway.config import FileOutput, HttpOutput, SyslogOutput, split_host_port


class DeliveryError(Exception):
    """The batch may not have arrived; the message never holds an event's content."""


class Transport(ABC):
    confirm_seconds: float = 0.0

    @abstractmethod
    def send(self, messages: Sequence[tuple[int, str, bytes]]) -> None:
        """Send (syslog severity, event id, message) in order; raises DeliveryError."""

    def alive(self) -> bool:
        """Whether what was sent since the last confirmation may still arrive."""
        return True

    @abstractmethod
    def close(self) -> None:
        """Drop the connection (the next send opens a new one)."""


def _client_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SyslogTransport(Transport):
    def __init__(self, output: SyslogOutput) -> None:
        self.output = output
        self.host, self.port = split_host_port(output.address)
        self.confirm_seconds = output.confirm_seconds if output.transport == "tcp" else 0.0
        self.hostname = socket.gethostname().split(".")[0] or "-"
        self._sock: socket.socket | None = None
        self._context: ssl.SSLContext | None = None
        if output.tls:
            self._context = _client_context(output.ca_file)
            if output.cert_file and output.key_file:
                self._context.load_cert_chain(str(output.cert_file), str(output.key_file))

    def frame(self, severity: int, event_id: str, message: bytes) -> bytes:
        """One RFC 5424 message; over TCP prefixed with its length (octet counting)."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        pri = self.output.facility * 8 + severity
        # SD-ID with the IANA example enterprise number (RFC 5612): names the event id.
        head = (
            f"<{pri}>1 {now} {self.hostname} {self.output.app_name} - audit "
            f'[phi@32473 id="{event_id}"] '
        )
        line = head.encode() + message
        if self.output.transport == "udp":
            return line
        return str(len(line)).encode() + b" " + line

    def _connect(self) -> socket.socket:
        timeout = self.output.timeout_seconds
        try:
            if self.output.transport == "udp":
                sock = socket.socket(
                    socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM
                )
                sock.connect((self.host, self.port))
                return sock
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
            if self._context is not None:
                name = self.output.server_name or self.host
                sock = self._context.wrap_socket(sock, server_hostname=name)
            return sock
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"cannot connect to {self.output.address}: {exc}") from None

    def send(self, messages: Sequence[tuple[int, str, bytes]]) -> None:
        if self._sock is None:
            self._sock = self._connect()
        frames = [self.frame(severity, eid, message) for severity, eid, message in messages]
        try:
            if self.output.transport == "udp":
                for frame in frames:
                    self._sock.send(frame[:65000])
            else:
                self._sock.sendall(b"".join(frames))
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise DeliveryError(f"sending to {self.output.address} failed: {exc}") from None

    def alive(self) -> bool:
        """A syslog receiver never writes back: anything readable (a FIN, a TLS alert) or
        an error on the socket means it is closing, and may not have read what we sent."""
        sock = self._sock
        if sock is None:
            return False
        if self.output.transport == "udp":
            return True
        try:
            readable, _, broken = select.select([sock], [], [sock], 0)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except (OSError, ValueError):
            readable, broken, error = [sock], [], 1
        if readable or broken or error:
            self.close()
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class HttpTransport(Transport):
    """One POST per batch; delivered when the receiver answers 2xx."""

    def __init__(self, output: HttpOutput) -> None:
        self.output = output
        url = urllib.parse.urlsplit(output.url)
        self.tls = url.scheme == "https"
        self.host = url.hostname or ""
        self.port = url.port or (443 if self.tls else 80)
        self.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._context = _client_context(output.ca_file) if self.tls else None
        self._conn: http.client.HTTPConnection | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.output.token_env:
            token = os.environ.get(self.output.token_env, "")
            if not token:
                raise DeliveryError(f"${self.output.token_env} is not set: no token to send")
            scheme = "Splunk" if self.output.format == "splunk-hec" else "Bearer"
            headers["Authorization"] = f"{scheme} {token}"
        return headers

    def body(self, messages: Sequence[tuple[int, str, bytes]]) -> bytes:
        if self.output.format == "splunk-hec":
            return b"\n".join(message for _, _, message in messages)  # HEC's batch form
        return b"[" + b",".join(message for _, _, message in messages) + b"]"

    def send(self, messages: Sequence[tuple[int, str, bytes]]) -> None:
        headers = self._headers()
        body = self.body(messages)
        if self._conn is None:
            timeout = self.output.timeout_seconds
            if self.tls:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            self._conn.request("POST", self.path, body=body, headers=headers)
            response = self._conn.getresponse()
            response.read(65536)
            status = response.status
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise DeliveryError(f"POST to {self.host}:{self.port} failed: {exc}") from None
        if not 200 <= status < 300:
            self.close()
            raise DeliveryError(f"{self.host}:{self.port} answered {status}")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None


class FileTransport(Transport):
    """Lines appended and fsync'd; reopened when the file was rotated away."""

    def __init__(self, output: FileOutput) -> None:
        self.path = output.path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    return self._fd
            except OSError:
                pass
            self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return self._fd

    def send(self, messages: Sequence[tuple[int, str, bytes]]) -> None:
        data = b"".join(message + b"\n" for _, _, message in messages)
        try:
            fd = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            self.close()
            raise DeliveryError(f"{self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def transport_for(output: SyslogOutput | HttpOutput | FileOutput) -> Transport:
    if isinstance(output, SyslogOutput):
        return SyslogTransport(output)
    if isinstance(output, HttpOutput):
        return HttpTransport(output)
    return FileTransport(output)
