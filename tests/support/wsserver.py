"""A WebSocket server on loopback (wsproto) that records every message it receives."""

from __future__ import annotations

import socket
import threading

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Request,
    TextMessage,
)


class WebSocketSink:
    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        conn.sendall(ws.send(AcceptConnection()))
                    elif isinstance(event, TextMessage):
                        self.messages.append(event.data.encode())
                        conn.sendall(ws.send(TextMessage(data="ack")))
                    elif isinstance(event, BytesMessage):
                        self.messages.append(bytes(event.data))
                        conn.sendall(ws.send(TextMessage(data="ack")))
                    elif isinstance(event, CloseConnection):
                        conn.sendall(ws.send(event.response()))
                        return

    def close(self) -> None:
        self.sock.close()


def websocket_exchange(
    proxy_port: int, host: str, port: int, messages: list[str], timeout: float = 3.0
) -> list[str]:
    """Connect through the proxy (absolute-form upgrade), send text messages, return replies."""
    from wsproto.events import Message as WsMessage

    client = WSConnection(ConnectionType.CLIENT)
    replies: list[str] = []
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as s:
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(client.send(Request(host=f"{host}:{port}", target="/ws")))
        accepted = False
        while not accepted:
            client.receive_data(s.recv(65536))
            accepted = any(isinstance(e, AcceptConnection) for e in client.events())
        for text in messages:
            s.sendall(client.send(TextMessage(data=text)))
        try:
            while len(replies) < len(messages):
                data = s.recv(65536)
                if not data:
                    break
                client.receive_data(data)
                replies += [str(e.data) for e in client.events() if isinstance(e, WsMessage)]
        except TimeoutError:
            pass
    return replies
