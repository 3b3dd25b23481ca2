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
