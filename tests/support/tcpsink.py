"""Raw TCP servers on loopback: one that records every byte it is sent, one that never answers."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time


class TcpSink:
    def __init__(self, host: str, greeting: bytes = b"") -> None:
        self.sock = socket.create_server((host, 0))
        self.port: int = self.sock.getsockname()[1]
        self.greeting = greeting
        self.data = bytearray()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            # A connection the gateway cuts may end in a reset: what arrived is kept.
            with conn, contextlib.suppress(ConnectionResetError):
                if self.greeting:
                    conn.sendall(self.greeting)
                while chunk := conn.recv(65536):
                    self.data += chunk

    def close(self) -> None:
        self.sock.close()


def send_through_tunnel(proxy_port: int, host: str, port: int, payload: bytes) -> None:
    """CONNECT through the proxy, send raw bytes, read until the proxy closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(payload)
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass


class SilentServer:
    """Accepts connections and reads what it is sent, but never answers (a hung upstream);
    with ``reply_after``, sends ``reply`` that many seconds after the first bytes arrive (a
    slow one). ``tls``: completes the TLS handshake first."""

    def __init__(
        self,
        host: str,
        tls: ssl.SSLContext | None = None,
        *,
        reply_after: float | None = None,
        reply: bytes = b"",
    ) -> None:
        self.sock = socket.create_server((host, 0))
        self.port: int = self.sock.getsockname()[1]
        self.tls = tls
        self.reply_after = reply_after
        self.reply = reply
        self.data = bytearray()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._open.append(conn)
            while chunk := conn.recv(65536):
                self.data += chunk
                if self.reply_after is not None:
                    time.sleep(self.reply_after)
                    conn.sendall(self.reply)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()
