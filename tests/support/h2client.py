"""A minimal HTTP/2 client through an HTTP CONNECT proxy, built on the h2 library.

httpx offers ALPN ``http/1.1`` before ``h2`` on proxied connections, so mitmproxy (which
respects the client's preference) speaks HTTP/1.1 to it; this client offers only ``h2``.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

import h2.connection
import h2.events


@dataclass
class H2Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    done: bool = False


@dataclass
class H2Client:
    proxy_port: int
    host: str
    port: int
    context: ssl.SSLContext
    _responses: dict[int, H2Response] = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.proxy_port), timeout=10)
        raw.sendall(
            f"CONNECT {self.host}:{self.port} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n\r\n".encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += raw.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:40]
        self.context.set_alpn_protocols(["h2"])
        self.sock = self.context.wrap_socket(raw, server_hostname=self.host)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection()
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def post(
        self,
        path: str,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
        trailers: list[tuple[str, str]] | None = None,
    ) -> H2Response:
        """POST ``body``; ``trailers``: sent after it, in a HEADERS frame that ends the stream."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":path", path),
                (":scheme", "https"),
                (":authority", f"{self.host}:{self.port}"),
                ("content-length", str(len(body))),
                *(headers or []),
            ],
        )
        self.conn.send_data(stream_id, body, end_stream=not trailers)
        if trailers:
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        while stream_id not in self._responses or not self._responses[stream_id].done:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("proxy closed the HTTP/2 connection")
            for event in self.conn.receive_data(data):
                self._handle(event)
            self.sock.sendall(self.conn.data_to_send())
        return self._responses[stream_id]

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            headers = {
                k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                for k, v in event.headers
            }
            self._responses[event.stream_id] = H2Response(int(headers[":status"]), headers)
        elif isinstance(event, h2.events.DataReceived):
            self._responses[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._responses[event.stream_id].done = True
        elif isinstance(event, h2.events.StreamReset):  # status 0: reset before an answer
            self._responses.setdefault(event.stream_id, H2Response(0, {})).done = True

    def close(self) -> None:
        self.conn.close_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.sock.close()
