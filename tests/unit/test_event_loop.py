"""``phi-gateway run``'s event loop: out of descriptors, accept() pauses once, not per
failure (CPython gh-151615 made the retries multiply)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from addons.runner import GatewayEventLoop


class Exhausted:
    """A listening socket whose every accept() fails with EMFILE."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.accepts = 0

    def accept(self) -> tuple[socket.socket, Any]:
        self.accepts += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def accept_once(loop: asyncio.SelectorEventLoop, sock: Exhausted) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    loop._accept_connection(lambda: None, sock, None, None, 100)  # type: ignore[attr-defined]
    return errors


def test_one_resource_error_schedules_one_retry(listening: socket.socket) -> None:
    loop = GatewayEventLoop()
    try:
        sock = Exhausted(listening)
        errors = accept_once(loop, sock)
        assert sock.accepts == 1
        assert len(errors) == 1
        assert errors[0]["message"] == "socket.accept() out of system resource"
        assert len(loop._scheduled) == 1  # type: ignore[attr-defined]
    finally:
        loop.close()


def test_the_resource_error_is_one_line_without_traceback(
    listening: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    loop = GatewayEventLoop()
    try:
        with caplog.at_level(logging.WARNING):
            loop._accept_connection(lambda: None, Exhausted(listening), None, None, 100)
        assert [r.getMessage() for r in caplog.records] == [
            "accept() out of resources (Too many open files): new connections wait"
        ]
        assert all(r.exc_info is None for r in caplog.records)
    finally:
        loop.close()


def test_asyncios_own_loop_multiplies_them(listening: socket.socket) -> None:
    """What the gateway's loop fixes (if this fails, CPython has fixed it itself)."""
    loop = asyncio.SelectorEventLoop()
    try:
        sock = Exhausted(listening)
        errors = accept_once(loop, sock)
        assert sock.accepts == 100
        assert len(errors) == 100
    finally:
        loop.close()


def test_connections_are_still_accepted(listening: socket.socket) -> None:
    async def serve() -> bytes:
        async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello")
            writer.close()

        server = await asyncio.start_server(answer, sock=listening)
        reader, writer = await asyncio.open_connection(*listening.getsockname())
        data = await reader.read()
        writer.close()
        server.close()
        return data

    assert asyncio.run(serve(), loop_factory=GatewayEventLoop) == b"hello"
