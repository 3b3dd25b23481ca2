"""PHI egress gateway as a mitmproxy addon: hooks → gateway.Gateway → protocol-correct answers.

Standalone use (see README for the fail-open trap of ``mitmdump -s``):

    mitmdump -s addons/phi_gateway.py --set phi_gateway_config=configs/gateway.yaml \
             --set connection_strategy=lazy
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from mitmproxy import ctx, exceptions, http, tcp, websocket
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks

from gateway import metrics
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.engine import Gateway, GatewayStartError
from gateway.model import Destination, Location, Message, Protocol
from gateway.policy import effective_location

log = logging.getLogger("phi_gateway")
OPTION = "phi_gateway_config"
_PIN_MEMORY = 4096
# Bodies above this are inspected in a worker thread so the event loop keeps serving others.
_THREAD_THRESHOLD = 512 * 1024


def _protocol(flow: http.HTTPFlow) -> Protocol:
    version = flow.request.http_version
    if version.startswith("HTTP/2"):
        return Protocol.HTTP2
    if version.startswith("HTTP/3"):
        return Protocol.HTTP3
    return Protocol.HTTP1


def _client(flow: http.HTTPFlow | tcp.TCPFlow) -> str:
    peer = flow.client_conn.peername
    return f"{peer[0]}:{peer[1]}" if peer else ""


def to_message(flow: http.HTTPFlow) -> Message:
    request = flow.request
    body = request.raw_content or b""
    return Message(
        protocol=_protocol(flow),
        client=_client(flow),
        destination_host=request.host,
        destination_port=request.port,
        method=request.method,
        path=request.path.split("?", 1)[0],
        content_type=request.headers.get("content-type", ""),
        content_encoding=request.headers.get("content-encoding", ""),
        accept=request.headers.get("accept", ""),
        body=body,
        raw_body_size=len(body),
    )


class PhiGateway:
    """Thin: every decision is made by gateway.Gateway; this class only translates."""

    def __init__(self, gateway: Gateway | None = None) -> None:
        self.gateway = gateway
        # host:port → the address we judged and will connect to (DNS-rebinding guard).
        self._pins: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._restore: dict[str, tuple[str, int]] = {}
        # host:port → addresses of open upstream connections mitmproxy may reuse.
        self._live: dict[tuple[str, int], dict[str, int]] = {}

    # -- configuration ------------------------------------------------------------------------
    def load(self, loader: Loader) -> None:
        loader.add_option(
            OPTION,
            str | None,  # type: ignore[arg-type]  # mitmproxy accepts Optional[str]
            None,
            "Path of the PHI gateway YAML config. A reload that fails keeps the last good policy.",
        )

    def configure(self, updated: set[str]) -> None:
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            raise exceptions.OptionsError(
                "phi gateway: stream_large_bodies must stay unset: streamed request bodies "
                "reach the server before they can be inspected"
            )
        if OPTION in updated and getattr(ctx.options, OPTION):
            path = Path(getattr(ctx.options, OPTION))
            self.reload(lambda: load_config(path), str(path))

    def reload(self, load: Callable[[], GatewayConfig], source: str) -> GatewayConfig:
        """Load a config and swap it in; on any error keep the running policy and raise."""
        try:
            config = load()
        except ConfigError as exc:
            metrics.CONFIG_RELOADS.labels("failure").inc()
            if self.gateway is not None:
                log.error("policy reload failed; the last good policy stays in force:\n%s", exc)
            raise exceptions.OptionsError(str(exc)) from None
        self.apply(config, source)
        return config

    def apply(self, config: GatewayConfig, source: str) -> None:
        """Build a gateway for a validated config and swap it in only if that succeeds."""
        old = self.gateway
        try:
            audit = old.audit if old is not None else None
            self.gateway = Gateway.from_config(config, audit=audit)
        except GatewayStartError as exc:
            metrics.CONFIG_RELOADS.labels("failure").inc()
            if old is not None:
                log.error("policy reload failed; the last good policy stays in force:\n%s", exc)
            raise exceptions.OptionsError(str(exc)) from None
        # The old gateway's readers are left to the garbage collector: in-flight requests
        # (some in worker threads) may still be using them.
        self.gateway.publish_metrics()
        metrics.CONFIG_RELOADS.labels("success").inc()
        log.info(
            "policy %s loaded from %s (mode %s)",
            self.gateway.policy_version,
            source,
            config.policy.mode.value,
        )

    # -- HTTP -----------------------------------------------------------------------------------
    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        gateway = self.gateway
        if gateway is None:
            flow.response = http.Response.make(
                503, b"PHI gateway has no policy loaded", {"content-type": "text/plain"}
            )
            return
        host, port = flow.request.host, flow.request.port
        live = tuple(self._live.get((host, port), {}))
        destination = await gateway.locate(host, port, live)
        self._pin(host, port, destination)
        message = to_message(flow)
        try:
            if message.raw_body_size > _THREAD_THRESHOLD:
                decision = await asyncio.to_thread(gateway.evaluate, message, destination)
            else:
                decision = gateway.evaluate(message, destination)
        except Exception as exc:  # a bug in an inspector must not crash or open the proxy
            self._internal_error(flow, destination, exc)
            return
        answer = gateway.respond(decision)
        if answer is not None:
            flow.response = http.Response.make(
                answer.status,
                answer.body,
                {"content-type": answer.content_type, **dict(answer.headers)},
            )
        if decision.incident_id:
            flow.metadata["phi_gateway_incident"] = decision.incident_id

    def _internal_error(
        self, flow: http.HTTPFlow, destination: Destination, exc: Exception
    ) -> None:
        # Log the exception type only: messages of parser errors may quote payload bytes.
        log.error(
            "inspection failed with %s; failing closed for non-domestic traffic", type(exc).__name__
        )
        metrics.NOT_INSPECTED.labels("internal-error").inc()
        assert self.gateway is not None
        if effective_location(destination, self.gateway.config) is not Location.DOMESTIC:
            flow.response = http.Response.make(
                451,
                b'{"error": "blocked", "rule": "internal-error"}',
                {"content-type": "application/json"},
            )

    # -- upstream connections: pin the judged address -------------------------------------------
    def _pin(self, host: str, port: int, destination: Destination) -> None:
        if destination.addresses and destination.addresses[0].ip != host:
            self._pins[(host, port)] = destination.addresses[0].ip
            self._pins.move_to_end((host, port))
            while len(self._pins) > _PIN_MEMORY:
                self._pins.popitem(last=False)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None or self.gateway is None:
            return
        host, port = server.address
        pinned = self._pins.get((host, port))
        if pinned is None:
            destination = await self.gateway.locate(host, port)
            if not destination.addresses:
                return  # mitmproxy's own lookup will fail the same way
            pinned = destination.addresses[0].ip
        if pinned != host:
            self._restore[server.id] = (host, port)
            server.address = (pinned, port)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        original = self._restore.pop(server.id, None)
        if original is not None:
            # Restore the name so mitmproxy keeps reusing this connection for the same host.
            server.address = original
        if server.address and server.peername:
            key = (server.address[0], server.address[1])
            live = self._live.setdefault(key, {})
            live[server.peername[0]] = live.get(server.peername[0], 0) + 1

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        self._restore.pop(server.id, None)
        if not server.address or not server.peername:
            return
        key = (server.address[0], server.address[1])
        live = self._live.get(key)
        if live and server.peername[0] in live:
            live[server.peername[0]] -= 1
            if live[server.peername[0]] <= 0:
                del live[server.peername[0]]
            if not live:
                del self._live[key]

    # -- WebSocket and raw TCP --------------------------------------------------------------
    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        ws_message: websocket.WebSocketMessage = flow.websocket.messages[-1]
        if not ws_message.from_client or self.gateway is None:
            return
        host, port = flow.request.host, flow.request.port
        destination = await self.gateway.locate(host, port, tuple(self._live.get((host, port), {})))
        message = Message(
            Protocol.WEBSOCKET,
            _client(flow),
            host,
            port,
            body=ws_message.content,
            raw_body_size=len(ws_message.content),
        )
        decision = self.gateway.evaluate(message, destination)
        if decision.verdict.blocks:
            ws_message.drop()

    async def tcp_message(self, flow: tcp.TCPFlow) -> None:
        """Raw TCP is not inspected yet: to a non-domestic destination it fails closed."""
        tcp_message = flow.messages[-1]
        if not tcp_message.from_client or self.gateway is None:
            return
        server = flow.server_conn
        ip = server.peername[0] if server.peername else (server.address or ("", 0))[0]
        port = server.address[1] if server.address else 0
        destination = self.gateway.judge(
            str(server.address[0] if server.address else ip), port, (ip,) if ip else ()
        )
        if effective_location(destination, self.gateway.config) is Location.DOMESTIC:
            return
        metrics.NOT_INSPECTED.labels("raw-tcp").inc()
        tcp_message.content = b""
        flow.messages.clear()
        self._close_client(flow)

    @staticmethod
    def _close_client(flow: tcp.TCPFlow) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
        transport = handler.transports.get(flow.client_conn) if handler else None
        if transport is not None and transport.handler is not None:
            transport.handler.cancel("PHI gateway: uninspectable TCP to a foreign destination")


addons = [PhiGateway()]
