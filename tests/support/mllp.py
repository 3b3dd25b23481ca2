"""An MLLP receiver (an interface engine's listener) and sender on loopback, in asyncio.

Written independently of ``gateway.mllp``: the tests must not trust the code they test.
The receiver records every byte it gets and answers each frame with an ``AA`` ACK whose
MSA-2 is the frame's MSH-10, as a real interface engine does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine
from typing import Any

SB, EB = b"\x0b", b"\x1c\r"


def mllp(message: bytes | str) -> bytes:
    body = message.encode() if isinstance(message, str) else message
    return SB + body + EB


def control_id(message: bytes) -> bytes:
    """MSH-10 of an ER7 message (standard field separator only: test messages use it)."""
    fields = message.split(b"\r", 1)[0].split(b"|")
    return fields[9] if len(fields) > 9 else b""


def msa(ack: bytes) -> list[bytes]:
    """MSA fields of an ACK frame or message: [b"MSA", code, control id, ...]."""
    body = ack.removeprefix(SB).removesuffix(EB)
    for segment in body.split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")
    raise AssertionError("no MSA segment in the reply")


def receiver_ack(message: bytes) -> bytes:
    ctrl = control_id(message)
    return mllp(
        b"MSH|^~\\&|RECV|SITE|SEND|SITE|20240101000000||ACK|R" + ctrl + b"|P|2.5\r"
        b"MSA|AA|" + ctrl + b"\r"
    )


def split_frames(stream: bytes) -> tuple[list[bytes], bytes]:
    """Complete frame bodies in a byte stream, and the rest."""
    frames = []
    while (end := stream.find(EB)) >= 0:
        frames.append(stream[: end + 2].removeprefix(SB).removesuffix(EB))
        stream = stream[end + 2 :]
    return frames, stream


class MllpReceiver:
    """Listens on ``host``; every connection is recorded; each frame gets an AA ACK."""

    def __init__(self, host: str, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.host = host
        self.tls = tls
        self.data = bytearray()  # every byte received, all connections
        self.connections = 0
        self.peers: list[str] = []  # the address each connection came from
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self._port, ssl=self.tls)
        )
        self.port: int = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    @property
    def frames(self) -> list[bytes]:
        return split_frames(bytes(self.data))[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername")[0])
        pending = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := await reader.read(65536):
                self.data += chunk
                frames, pending = split_frames(pending + chunk)
                for body in frames:
                    writer.write(receiver_ack(body))
                await writer.drain()
        writer.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class MllpSender:
    """One long-lived sender connection: directly (a reverse:tcp listener, or the receiver
    itself when a firewall redirects it to the gateway) or through CONNECT, optionally wrapped
    in TLS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._buffer = b""

    @classmethod
    async def open(
        cls,
        port: int,
        tunnel_to: tuple[str, int] | None = None,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> MllpSender:
        reader, writer = await asyncio.open_connection(host, port)
        if tunnel_to is not None:
            host, target = tunnel_to
            writer.write(f"CONNECT {host}:{target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
        if tls is not None:
            server_hostname = tunnel_to[0] if tunnel_to else "127.0.0.1"
            await writer.start_tls(tls, server_hostname=server_hostname)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 10) -> bytes:
        """The next complete frame (with its envelope) from the other side."""
        while (end := self._buffer.find(EB)) < 0:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                raise ConnectionError("closed before a complete frame arrived")
            self._buffer += chunk
        frame, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
        return frame

    async def exchange(self, message: bytes | str) -> bytes:
        await self.write(mllp(message))
        return await self.read_frame()

    async def closed_by_peer(self, timeout: float = 5) -> bool:
        """True when the other side closes (or resets) within ``timeout``."""
        try:
            return await asyncio.wait_for(self.reader.read(65536), timeout) == b""
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def run[T](coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
