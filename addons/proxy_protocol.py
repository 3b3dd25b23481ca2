"""The PROXY protocol v2 on mitmproxy's listeners (``gateway/proxy_protocol.py`` reads the
header): mitmproxy 12 does not read it, so behind HAProxy every client would be HAProxy.

mitmproxy hands each accepted connection to ``ServerInstance.handle_stream``, which makes the
connection handler (its ``Client`` takes the socket's addresses) and runs it. Wrapped here:
a connection from a balancer (``proxy.proxy_protocol_from``) first has its header read, within
``connections.header_seconds``; then the handler is made as mitmproxy makes it, with the
client address the header names (and, in transparent mode, the destination the client
connected to, which the balancer knows and this socket does not). A balancer's connection
without a valid header is closed and counted: its client is unknown, and a gateway that
guessed would write the balancer's address into the audit trail. Every other connection
goes to mitmproxy's own ``handle_stream`` untouched.

The path that makes the handler copies mitmproxy 12.3's (``proxy/mode_servers.py``);
tests/unit/test_proxy_protocol.py fails when mitmproxy's changes, so it is reviewed again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import ctx
from mitmproxy.proxy import mode_servers, mode_specs

from gateway import metrics
from gateway.proxy_protocol import (
    HEADER_BYTES,
    ProxyHeader,
    ProxyProtocolError,
    body_length,
    is_trusted,
    parse,
)

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
# The balancers and the seconds their header may take: from the policy in force.
Settings = Callable[[], tuple[Networks, float]]
_HandleStream = Callable[..., Coroutine[Any, Any, None]]
log = logging.getLogger("phi_gateway")
_settings: list[Settings] = []


def install(settings: Settings) -> None:
    """Wrap mitmproxy's ``handle_stream`` once; ``settings`` is asked at every connection."""
    _settings[:] = [settings]
    original: _HandleStream = mode_servers.ServerInstance.handle_stream
    if getattr(original, "phi_gateway", False):
        return

    async def handle_stream(
        self: mode_servers.ServerInstance[Any], reader: Any, writer: Any = None
    ) -> None:
        networks, seconds = _settings[0]() if _settings else ((), 0.0)
        peer = (
            writer.get_extra_info("peername") if isinstance(writer, asyncio.StreamWriter) else None
        )
        if not networks or not peer or not is_trusted(str(peer[0]), networks):
            await original(self, reader, writer)
            return
        try:
            header = await asyncio.wait_for(_read_header(reader), seconds)
        except (ProxyProtocolError, asyncio.IncompleteReadError, TimeoutError, OSError) as exc:
            reason = str(exc) if isinstance(exc, ProxyProtocolError) else type(exc).__name__
            metrics.PROXY_PROTOCOL.labels("refused").inc()
            log.warning("balancer connection closed: %s", reason)
            writer.close()
            return
        metrics.PROXY_PROTOCOL.labels("local" if header.source is None else "proxied").inc()
        await _serve(self, reader, writer, header)

    handle_stream.phi_gateway = True  # type: ignore[attr-defined]
    handle_stream.original = original  # type: ignore[attr-defined]
    mode_servers.ServerInstance.handle_stream = handle_stream  # type: ignore[method-assign]


async def _read_header(reader: asyncio.StreamReader) -> ProxyHeader:
    head = await reader.readexactly(HEADER_BYTES)
    body = await reader.readexactly(body_length(head))
    return parse(head, body)


async def _serve(
    instance: mode_servers.ServerInstance[Any],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    header: ProxyHeader,
) -> None:
    """mitmproxy's ``handle_stream`` for a TCP listener, with the header's addresses."""
    handler = mode_servers.ProxyConnectionHandler(
        ctx.master, reader, writer, ctx.options, instance.mode
    )
    handler.layer = instance.make_top_layer(handler.layer.context)
    client = handler.layer.context.client
    if header.source is not None and header.destination is not None:
        client.peername = header.source
        client.sockname = header.destination
    if isinstance(instance.mode, mode_specs.TransparentMode):
        if header.destination is None:
            # A LOCAL header (a health check) has no destination to relay to.
            writer.close()
            return
        handler.layer.context.server.address = header.destination
    with instance.manager.register_connection(client.id, handler):
        await handler.handle_client()
