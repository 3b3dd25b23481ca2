"""A loopback HTTP/2-only upstream (TLS, ALPN ``h2``) that records what reached it, trailers
included: the HTTP/1.1 recording server cannot receive trailers, so a test that trailers
arrive as sent needs this one."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from tests.support.upstream import Received


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class H2RecordingServer:
    host: str
    certificate: Path  # PEM: certificate and key
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.certificate)
        self.context.set_alpn_protocols(["h2"])
        self.listener = socket.create_server((self.host, 0))
        self.port: int = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def paths(self) -> list[str]:
        return [r.path for r in self.received]

    def first_at(self, path: str) -> Received:
        """The first request received at ``path`` (StopIteration: none arrived)."""
        return next(r for r in self.received if r.path == path)

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as sock:
                self._speak(sock)
        except (OSError, ssl.SSLError):
            pass  # the peer went away; whatever arrived is recorded

    def _speak(self, sock: ssl.SSLSocket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        pending: dict[int, Received] = {}
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = {_text(k): _text(v) for k, v in event.headers or []}
                    pending[event.stream_id] = Received(
                        headers.get(":method", ""), headers.get(":path", ""), headers, b""
                    )
                elif isinstance(event, h2.events.DataReceived):
                    pending[event.stream_id].body += event.data or b""
                    conn.acknowledge_received_data(
                        event.flow_controlled_length or 0, event.stream_id or 0
                    )
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers = {_text(k): _text(v) for k, v in event.headers or []}
                    pending[event.stream_id].trailers.update(trailers)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id in pending:
                    self.received.append(pending.pop(event.stream_id))
                    reply = b'{"ok": true}'
                    conn.send_headers(
                        event.stream_id,
                        [
                            (":status", "200"),
                            ("content-type", "application/json"),
                            ("content-length", str(len(reply))),
                        ],
                    )
                    conn.send_data(event.stream_id, reply, end_stream=True)
            sock.sendall(conn.data_to_send())
