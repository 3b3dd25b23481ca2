"""A raw TCP server on loopback that records every byte it is sent."""

from __future__ import annotations

import socket
import threading


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
            with conn:
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
