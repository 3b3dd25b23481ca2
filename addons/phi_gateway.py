"""PHI egress gateway as a mitmproxy addon: hooks → gateway.Gateway → protocol-correct answers.

Standalone use (see README for the fail-open trap of ``mitmdump -s``):

    mitmdump -s addons/phi_gateway.py --set phi_gateway_config=configs/gateway.yaml \
             --set connection_strategy=lazy
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from mitmproxy import connection, ctx, exceptions, http, tcp, tls, udp, websocket
from mitmproxy.addonmanager import Loader
from mitmproxy.flow import Flow
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import layer, layers, mode_specs, server_hooks
from mitmproxy.proxy.layers.http import HTTPMode

from addons import body_limits, proxy_protocol, trailers
from addons.connection_watch import ConnectionWatch
from gateway import metrics
from gateway.config import Connections, GatewayConfig, load_config
from gateway.dimse import DimseSession, starts_like_associate_rq
from gateway.enforce import Act, act
from gateway.engine import Gateway
from gateway.errors import ConfigError, StartError
from gateway.geo.pinning import ConnectionPins, Key
from gateway.logfilter import RepeatFilter
from gateway.mllp import MllpSession
from gateway.model import Destination, Format, Inspection, Location, Message, Protocol
from gateway.policy import effective_location, needs_inspection, relay_tls

log = logging.getLogger("phi_gateway")
OPTION = "phi_gateway_config"
PIN_METADATA = "phi_gateway_pin"
DESTINATION_METADATA = "phi_gateway_destination"
TLS_PASSTHROUGH = Inspection(Format.BINARY, error="TLS passthrough: payload not decrypted")
UDP_PAYLOAD = Inspection(Format.BINARY, error="UDP (QUIC) payloads are not inspected")
SESSION_METADATA = "phi_gateway_mllp"
UDP_VERDICT = "phi_gateway_udp_blocked"
# Domestic bodies above this are streamed (never inspected anyway): no need to buffer them.
_STREAM_DOMESTIC_ABOVE = 1024 * 1024
# Bodies above this are inspected in a worker thread so the event loop keeps serving others.
_THREAD_THRESHOLD = 256 * 1024
_INTERNAL_ERROR_BODY = b'{"error": "blocked", "rule": "internal-error"}'
_HTTP1_TRAILERS_BODY = (
    b"PHI gateway: HTTP/1.1 request trailers cannot be forwarded (not implemented); send these "
    b"fields as headers, or the request over HTTP/2"
)
# A request cut for its size is answered 413; its connection is dropped this much later.
_ABORT_AFTER_REFUSAL_SECONDS = 0.5
# Repeated records of these loggers are written once a minute with their count (gateway/
# logfilter.py): our hook failures, mitmproxy's connection errors and the event loop's
# accept() errors are what repeats per connection under load.
REPEATS = RepeatFilter()
_REPEATING_LOGGERS = ("phi_gateway", "mitmproxy.master", "mitmproxy.proxy.server", "asyncio")
_DEFAULT_BOUNDS = Connections()


def _protocol(flow: http.HTTPFlow) -> Protocol:
    version = flow.request.http_version
    if version.startswith("HTTP/2"):
        return Protocol.HTTP2
    if version.startswith("HTTP/3"):
        return Protocol.HTTP3
    return Protocol.HTTP1


def _client(flow: http.HTTPFlow | tcp.TCPFlow | udp.UDPFlow) -> str:
    return _client_of(flow.client_conn)


def _client_of(client: connection.Client) -> str:
    peer = client.peername
    return f"{peer[0]}:{peer[1]}" if peer else ""


def _key(address: tuple[str, int] | None) -> Key | None:
    return (str(address[0]), address[1]) if address else None


def _codings(headers: http.Headers) -> str:
    """Content codings, then transfer codings other than chunked (mitmproxy undoes chunked,
    but passes ``Transfer-Encoding: gzip, chunked`` bodies on still compressed)."""
    transfer = [
        t.strip()
        for t in headers.get("transfer-encoding", "").split(",")
        if t.strip() and t.strip().lower() != "chunked"
    ]
    return ", ".join(filter(None, [headers.get("content-encoding", ""), *transfer]))


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
        query=request.path.split("?", 1)[1] if "?" in request.path else "",
        headers=tuple(request.headers.items(multi=True)),
        trailers=tuple(request.trailers.items(multi=True)) if request.trailers else (),
        content_type=request.headers.get("content-type", ""),
        content_encoding=_codings(request.headers),
        accept=request.headers.get("accept", ""),
        body=body,
        raw_body_size=len(body),
    )


def _declared_length(headers: http.Headers) -> int | None:
    """Content-Length when given and valid; None for chunked or unknown lengths."""
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _trailers_announced(request: http.Request) -> bool:
    """An HTTP/1.1 chunked request that says a trailer section follows its body."""
    return (
        request.http_version.startswith("HTTP/1")
        and "trailer" in request.headers
        and "chunked" in request.headers.get("transfer-encoding", "").lower()
    )


def _http1_trailers(flow: http.HTTPFlow) -> bool:
    return bool(flow.request.trailers) and _protocol(flow) is Protocol.HTTP1


def _replace_body(flow: http.HTTPFlow, body: bytes) -> None:
    """Forward the redacted payload: decoded, so the codings it arrived with no longer apply."""
    request = flow.request
    request.headers.pop("content-encoding", None)
    if "transfer-encoding" in request.headers:
        del request.headers["transfer-encoding"]
    request.content = body  # also sets Content-Length


def _respond(
    flow: http.HTTPFlow,
    status: int,
    body: bytes,
    content_type: str,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    trailers: tuple[tuple[str, str], ...] = (),
) -> None:
    if trailers and flow.request.http_version.startswith("HTTP/1"):
        headers, trailers = headers + trailers, ()  # HTTP/1.1 answers carry no trailers here
    flow.response = http.Response.make(
        status, body, {"content-type": content_type, **dict(headers)}
    )
    if trailers:  # gRPC's status (gateway/formats/grpc.py)
        flow.response.trailers = http.Headers([(k.encode(), v.encode()) for k, v in trailers])


# -- the guard around every hook --------------------------------------------------------------
# A fail-closed action: what a failed hook does instead, given the hook's argument; returns a
# few words for the log saying what it did.
type FailClosed = Callable[[PhiGateway, Any], str]


def _hook[H: Callable[..., Any]](fail_closed: FailClosed | None = None) -> Callable[[H], H]:
    """The one guard every proxy hook goes through (sync or async alike).

    An exception is counted by hook, logged with the hook's name and the exception's type
    only — its text may quote payload bytes — and answered by ``fail_closed``: the refusal
    the hook's protocol allows toward foreign and unknown destinations (domestic traffic goes
    on). Without ``fail_closed`` mitmproxy's default carries on. Either way the exception never
    reaches mitmproxy, which would log its text and traceback and let the traffic through.
    """

    def decorate(method: H) -> H:
        name = method.__name__
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def guarded_async(addon: PhiGateway, *args: Any) -> None:
                try:
                    await method(addon, *args)
                except Exception as exc:
                    _hook_failed(addon, name, exc, fail_closed, args[0] if args else None)

            return cast(H, guarded_async)

        @functools.wraps(method)
        def guarded(addon: PhiGateway, *args: Any) -> None:
            try:
                method(addon, *args)
            except Exception as exc:
                _hook_failed(addon, name, exc, fail_closed, args[0] if args else None)

        return cast(H, guarded)

    return decorate


def _hook_failed(
    addon: PhiGateway, hook: str, exc: Exception, fail_closed: FailClosed | None, arg: Any
) -> None:
    metrics.HOOK_ERRORS.labels(hook).inc()
    outcome = "mitmproxy's default applies"
    if fail_closed is not None:
        try:
            outcome = fail_closed(addon, arg)
        except Exception as again:  # still never the text
            outcome = f"failing closed failed too, with {type(again).__name__}"
            outcome += _kill(arg)
    # Type only: exception messages (parsers, decoders) may quote payload bytes.
    log.error("%s hook failed with %s: %s", hook, type(exc).__name__, outcome)


def _kill(arg: Any) -> str:
    """Last resort when a fail-closed action fails: kill the flow (this stops HTTP; mitmproxy
    12.3 ignores it for TCP and still forwards WebSocket messages)."""
    if not isinstance(arg, Flow):
        return ""
    try:
        if arg.killable:
            arg.kill()
            return "; flow killed"
    except Exception:
        return "; killing the flow failed too"
    return ""


def _known_domestic(addon: PhiGateway, find: Callable[[Gateway], object]) -> bool:
    """Whether a failed hook's traffic is known to be domestic, the one case it may go on.
    ``find`` names the destination; anything unknown or failing again counts as abroad."""
    gateway = addon.gateway
    if gateway is None:
        return False
    try:
        destination = find(gateway)
        return (
            isinstance(destination, Destination)
            and effective_location(destination, gateway.config) is Location.DOMESTIC
        )
    except Exception:
        return False


def _decide_in_request(addon: PhiGateway, flow: http.HTTPFlow) -> str:
    """requestheaders: nothing may be streamed; request() locates and decides afresh."""
    flow.request.stream = False
    flow.metadata.pop(DESTINATION_METADATA, None)
    addon._release(flow)
    return "body buffered, the request hook decides"


def _refuse_request(addon: PhiGateway, flow: http.HTTPFlow) -> str:
    if flow.response is not None:
        addon._release(flow)
        return "already answered"
    metrics.NOT_INSPECTED.labels("internal-error").inc()
    if _known_domestic(addon, lambda _: flow.metadata.get(DESTINATION_METADATA)):
        return "forwarded: domestic"
    _respond(flow, 451, _INTERNAL_ERROR_BODY, "application/json")
    addon._release(flow)
    return "refused with 451"


def _drop_websocket_message(addon: PhiGateway, flow: http.HTTPFlow) -> str:
    metrics.NOT_INSPECTED.labels("internal-error").inc()
    if _known_domestic(addon, lambda gateway: _websocket_destination(gateway, flow)):
        return "forwarded: domestic"
    assert flow.websocket is not None
    flow.websocket.messages[-1].drop()
    return "message dropped"


def _close_stream(addon: PhiGateway, flow: tcp.TCPFlow) -> str:
    # The messages were not cleared (that is the hook's last step): empty every one.
    messages = list(flow.messages)
    flow.messages.clear()
    if any(m.from_client for m in messages):
        metrics.NOT_INSPECTED.labels("internal-error").inc()
    session = flow.metadata.get(SESSION_METADATA)

    def destination(gateway: Gateway) -> Destination:
        if isinstance(session, MllpSession | DimseSession):
            return session.destination
        return _stream_destination(gateway, flow)

    if _known_domestic(addon, destination):
        return "forwarded: domestic"
    for message in messages:
        message.content = b""
    addon._close_client(flow, "PHI gateway: stream could not be judged")
    return "stream emptied and closed"


def _intercept_tls(addon: PhiGateway, data: tls.ClientHelloData) -> str:
    # Never pass an unjudged connection through: intercepted, its requests are judged.
    data.ignore_connection = False
    return "connection intercepted, not passed through"


def _may_relay(client: connection.Client) -> bool:
    """Domestic TLS is relayed only where the client asked for the server itself (explicit
    proxy, SOCKS5, transparent) over TCP. In reverse mode the client talks TLS to the
    gateway's own name; QUIC goes to udp_message."""
    return client.transport_protocol == "tcp" and not isinstance(
        client.proxy_mode, mode_specs.ReverseMode
    )


def _drop_datagram(addon: PhiGateway, flow: udp.UDPFlow) -> str:
    messages = list(flow.messages)
    flow.messages.clear()
    if any(m.from_client for m in messages):
        metrics.NOT_INSPECTED.labels("internal-error").inc()
    if _known_domestic(addon, lambda gateway: _datagram_destination(gateway, flow)):
        return "forwarded: domestic"
    for message in messages:
        message.content = b""
    return "datagram dropped"


def _websocket_destination(gateway: Gateway, flow: http.HTTPFlow) -> Destination:
    """The WebSocket rides on the connection the upgrade request was judged for."""
    addresses = [flow.server_conn.peername[0]] if flow.server_conn.peername else []
    return gateway.judge(flow.request.host, flow.request.port, addresses)


def _stream_destination(gateway: Gateway, flow: tcp.TCPFlow) -> Destination:
    """A stream is judged by the address it is connected to (already open at its first read)."""
    server = flow.server_conn
    host, port = server.address or ("", 0)
    addresses = [server.peername[0]] if server.peername else []
    return gateway.judge(str(host), port, addresses)


def _datagram_destination(gateway: Gateway, flow: udp.UDPFlow) -> Destination:
    server = flow.server_conn
    host, port = server.address or ("", 0)
    addresses = [server.peername[0]] if server.peername else [str(host)]
    return gateway.judge(str(host), port, addresses)


class PhiGateway:
    """Thin: every decision is made by gateway.Gateway; this class only translates. Every
    proxy hook goes through ``_hook`` (load and configure do not: they run at start-up and on
    reload, and their OptionsError must reach mitmproxy to reject a bad policy)."""

    def __init__(self, gateway: Gateway | None = None) -> None:
        self.gateway = gateway
        # Which address each host's connections go to (DNS-rebinding guard).
        self.pins = ConnectionPins()
        body_limits.install()
        trailers.install()
        proxy_protocol.install(self._balancers)
        # Caps and deadlines of client connections (connections.* of the policy in force).
        self.watch = ConnectionWatch(self._connection_settings, REPEATS)

    def _balancers(self) -> tuple[proxy_protocol.Networks, float]:
        """Who sends PROXY v2 headers, and how long one may take (the policy in force)."""
        if self.gateway is None:
            return (), 0.0
        config = self.gateway.config
        return config.proxy.proxy_protocol_from, config.connections.header_seconds

    def _connection_settings(self) -> Connections:
        return self.gateway.config.connections if self.gateway is not None else _DEFAULT_BOUNDS

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
        for name in ("ignore_hosts", "allow_hosts"):
            if name in updated and getattr(ctx.options, name):
                raise exceptions.OptionsError(
                    f"phi gateway: {name} relays connections past every hook, unjudged; "
                    "list TLS passthrough hosts in the config's proxy.tls_passthrough instead"
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
            workers = old.workers if old is not None else None
            self.gateway = Gateway.from_config(config, audit=audit, workers=workers)
        except StartError as exc:
            metrics.CONFIG_RELOADS.labels("failure").inc()
            if old is not None:
                log.error("policy reload failed; the last good policy stays in force:\n%s", exc)
            raise exceptions.OptionsError(str(exc)) from None
        # The old gateway's readers are left to the garbage collector: in-flight requests
        # (some in worker threads) may still be using them. Its document workers are shut
        # down when the new policy sizes them differently (a document still being read on
        # them is then refused abroad, as any unreadable payload).
        if old is not None and old.workers is not self.gateway.workers:
            old.workers.close()
        self.pins.ttl = config.geo.dns_cache_seconds
        self.gateway.publish_metrics()
        metrics.CONFIG_RELOADS.labels("success").inc()
        log.info(
            "policy %s loaded from %s (mode %s)",
            self.gateway.policy_version,
            source,
            config.policy.mode.value,
        )

    # -- locate ---------------------------------------------------------------------------------
    async def _locate(self, gateway: Gateway, host: str, port: int) -> tuple[Destination, Key]:
        """Judge a host by the address its connection will use, pinning it for this flow."""
        key = (host, port)
        pinned = self.pins.pinned(key)
        resolved = (pinned,) if pinned else await gateway.resolver.resolve(host)
        return gateway.judge(host, port, self.pins.acquire(key, resolved)), key

    def _release(self, flow: http.HTTPFlow) -> None:
        key = flow.metadata.pop(PIN_METADATA, None)
        if key is not None:
            self.pins.release(key)

    # -- HTTP -----------------------------------------------------------------------------------
    @_hook(_decide_in_request)
    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Locate as soon as the headers arrive: decides whether the body must be buffered."""
        self.watch.headers(flow)
        try:
            await self._requestheaders(flow)
        finally:
            self.watch.body(flow)  # the body's deadline runs from here, not from the headers

    async def _requestheaders(self, flow: http.HTTPFlow) -> None:
        gateway = self.gateway
        if flow.response or flow.error or not flow.live or gateway is None:
            return
        destination, key = await self._locate(gateway, flow.request.host, flow.request.port)
        flow.metadata[PIN_METADATA] = key
        flow.metadata[DESTINATION_METADATA] = destination
        if not destination.addresses:
            return  # answered in request()
        declared = _declared_length(flow.request.headers)
        if needs_inspection(destination, gateway.config):
            # Buffered in full, then inspected: cut as soon as it passes a limit.
            limits = gateway.config.limits
            body_limits.BUDGET.watch(flow, limits.max_body_bytes, limits.max_buffered_body_bytes)
        elif _trailers_announced(flow.request):
            # Refused in request() once its trailers arrive: held (bounded like a body bound
            # abroad), not streamed, so no part of it reaches the server.
            limits = gateway.config.limits
            body_limits.BUDGET.watch(flow, limits.max_body_bytes, limits.max_buffered_body_bytes)
        elif declared is None or declared > _STREAM_DOMESTIC_ABOVE:
            # Domestic bulk is never inspected: forward it as it arrives instead of buffering.
            flow.request.stream = True

    @_hook(_refuse_request)
    async def request(self, flow: http.HTTPFlow) -> None:
        self.watch.judging(flow)
        try:
            await self._request(flow)
        finally:
            self.watch.forwarded(flow)  # the upstream's deadline runs from here (if it is sent)

    async def _request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        gateway = self.gateway
        if gateway is None:
            _respond(flow, 503, b"PHI gateway has no policy loaded", "text/plain")
            return
        destination = flow.metadata.get(DESTINATION_METADATA)
        if not isinstance(destination, Destination):  # e.g. the policy arrived mid-request
            destination, key = await self._locate(gateway, flow.request.host, flow.request.port)
            flow.metadata[PIN_METADATA] = key
            flow.metadata[DESTINATION_METADATA] = destination
        if not destination.addresses:
            # Nothing judged, nothing to connect to: answer rather than let mitmproxy resolve
            # (and connect to) an address nobody looked at.
            self._release(flow)
            metrics.NOT_INSPECTED.labels("resolution-failed").inc()
            _respond(flow, 502, b"destination host does not resolve", "text/plain")
            return
        message = to_message(flow)
        heavy = (
            message.raw_body_size > _THREAD_THRESHOLD
            or bool(message.content_encoding)
            or gateway.inspector.slow(message.body)
        )
        if heavy and needs_inspection(destination, gateway.config):
            # Large or compressed bodies (which may expand a lot) are inspected in a worker
            # thread so the event loop keeps serving everyone else.
            decision = await asyncio.to_thread(gateway.evaluate, message, destination)
        else:
            decision = gateway.evaluate(message, destination)
        what = act(decision)
        if what is Act.REFUSE:
            answer = gateway.refusal(decision)
            _respond(
                flow,
                answer.status,
                answer.body,
                answer.content_type,
                answer.headers,
                trailers=answer.trailers,
            )
            self._release(flow)
        elif _http1_trailers(flow) and not flow.request.stream:
            # mitmproxy 12 cannot write HTTP/1.1 trailers (addons/trailers.py): a clear answer
            # now, at home too, instead of a request cut short upstream. PHI abroad was refused
            # and recorded above; a streamed body's trailers get the 502 of addons/trailers.py.
            metrics.UNFORWARDABLE.labels("http1-trailers").inc()
            _respond(flow, 501, _HTTP1_TRAILERS_BODY, "text/plain")
            self._release(flow)
        elif what is Act.FORWARD_REDACTED and decision.redaction is not None:
            _replace_body(flow, decision.redaction.body)
        if decision.incident_id:
            flow.metadata["phi_gateway_incident"] = decision.incident_id

    @_hook()
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.watch.answered(flow)

    @_hook()
    def response(self, flow: http.HTTPFlow) -> None:
        self.watch.finished(flow)
        self._release(flow)
        body_limits.BUDGET.release(flow)

    @_hook()
    def error(self, flow: http.HTTPFlow) -> None:
        self.watch.finished(flow)
        self._release(flow)
        limit = flow.metadata.get(body_limits.REFUSED)
        if isinstance(limit, str) and self.gateway is not None:
            self._refuse_body(self.gateway, flow, limit)
            if flow.request.http_version.startswith("HTTP/1"):
                # mitmproxy answers 413 but leaves the socket open, unread, with the sender
                # blocked mid-body: cut it once the answer is out (HTTP/2 resets the stream).
                writer = self._client_writer(flow.client_conn)
                if writer is not None:
                    asyncio.get_running_loop().call_later(
                        _ABORT_AFTER_REFUSAL_SECONDS, writer.transport.abort
                    )
        body_limits.BUDGET.release(flow)

    @staticmethod
    def _refuse_body(gateway: Gateway, flow: http.HTTPFlow, limit: str) -> None:
        """A body cut while it arrived (body_limits): decided and recorded like any payload
        too large to read; the refusal names the incident."""
        destination = flow.metadata.get(DESTINATION_METADATA)
        if not isinstance(destination, Destination):
            return
        preset = Inspection(Format.BINARY, error=f"body exceeds {limit}", limit=limit)
        decision = gateway.evaluate(to_message(flow), destination, preset=preset)
        if decision.incident_id:
            flow.metadata[body_limits.INCIDENT] = decision.incident_id

    @_hook()
    def http_connect(self, flow: http.HTTPFlow) -> None:
        self.watch.tunnel(flow)

    # -- client connections: caps and deadlines (addons/connection_watch.py) ----------------
    @_hook()
    def running(self) -> None:
        REPEATS.attach(*_REPEATING_LOGGERS)
        self.watch.start()

    @_hook()
    def done(self) -> None:
        self.watch.stop()
        REPEATS.detach(*_REPEATING_LOGGERS)  # a reloaded script brings its own

    @_hook()
    def client_connected(self, client: connection.Client) -> None:
        self.watch.connected(client)

    @_hook()
    def client_disconnected(self, client: connection.Client) -> None:
        self.watch.disconnected(client)

    @_hook()
    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self.watch.streaming(flow.client_conn)

    @_hook()
    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self.watch.streaming(flow.client_conn)

    # -- upstream connections: connect to the judged address --------------------------------
    @_hook()
    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None or self.gateway is None:
            return
        key: Key = (server.address[0], server.address[1])
        pinned = self.pins.pinned(key)
        if pinned is None:
            # No HTTP request judged this connection (raw TCP, TLS passthrough): pin what we
            # resolve now; the stream is judged by its connected address (tcp_message).
            addresses = await self.gateway.resolver.resolve(key[0])
            if not addresses:
                return  # mitmproxy's own lookup fails the same way
            pinned = addresses[0]
        target = self.pins.redirect(server.id, key, pinned)
        if target != key:
            server.address = target

    @_hook()
    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.pins.failed(data.server.id)

    @_hook()
    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        peer = server.peername[0] if server.peername else None
        address = self.pins.connected(server.id, _key(server.address), peer)
        if address != server.address:
            # The name again, so mitmproxy keeps reusing this connection for the same host.
            server.address = address

    @_hook()
    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        peer = server.peername[0] if server.peername else None
        self.pins.disconnected(server.id, _key(server.address), peer)

    # -- WebSocket ----------------------------------------------------------------------------
    @_hook(_drop_websocket_message)
    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        ws_message: websocket.WebSocketMessage = flow.websocket.messages[-1]
        gateway = self.gateway
        if not ws_message.from_client or gateway is None:
            return
        destination = _websocket_destination(gateway, flow)
        message = Message(
            Protocol.WEBSOCKET,
            _client(flow),
            destination.host,
            destination.port,
            body=ws_message.content,
            raw_body_size=len(ws_message.content),
        )
        decision = await asyncio.to_thread(gateway.evaluate, message, destination)
        what = act(decision)
        if what is Act.REFUSE:
            ws_message.drop()
        elif what is Act.FORWARD_REDACTED and decision.redaction is not None:
            ws_message.content = decision.redaction.body

    # -- raw TCP and MLLP ------------------------------------------------------------------
    @_hook()
    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """Streams to configured MLLP and DICOM ports are raw TCP from the first byte (never
        parsed as HTTP); TLS on those ports is still decrypted first and decided again
        inside."""
        gateway = self.gateway
        context = nextlayer.context
        server = context.server.address
        if gateway is None or server is None or context.client.transport_protocol != "tcp":
            return
        proxy = gateway.config.proxy
        if server[1] not in proxy.mllp_ports and server[1] not in proxy.dicom_ports:
            return
        current = nextlayer.layer
        if isinstance(current, layers.TCPLayer) or (
            current is not None and not isinstance(current, layers.HttpLayer)
        ):
            return  # already raw TCP, or TLS / a proxy layer that decides again later
        if isinstance(current, layers.HttpLayer) and current.mode is not HTTPMode.transparent:
            return  # the explicit proxy itself (its CONNECT carries the real destination)
        # An interface engine may connect and wait before its first message: a stream, not an
        # idle HTTP connection.
        self.watch.streaming(context.client, mllp=server[1] in proxy.mllp_ports)
        data = nextlayer.data_client()
        if not data or starts_like_tls_record(data) or (data[:1] == b"\x16" and len(data) < 3):
            return  # wait for the first bytes, or let TLS be decrypted first
        nextlayer.layer = layers.TCPLayer(context)

    @_hook(_close_stream)
    async def tcp_message(self, flow: tcp.TCPFlow) -> None:
        """Each read from the sender goes through the connection's MLLP session: complete
        frames are judged one by one (forwarded, redacted or refused with an ACK), partial
        frames are held, and streams that are not MLLP follow the fail-closed rules. Replies
        from the receiver pass untouched. ``flow.messages`` is emptied after every read so
        long-lived interface connections stay flat in memory."""
        message = flow.messages[-1]
        if message.from_client:
            arrived = message.content
            await self._judge_stream(flow, message)
            self.watch.stream_sent(flow, arrived, forwarded=bool(message.content))
        else:
            session = flow.metadata.get(SESSION_METADATA)
            if isinstance(session, DimseSession):
                session.observe_reply(message.content)
            self.watch.stream_replied(flow)
        # Last, not in a finally: after an error the guard still finds the message to empty.
        flow.messages.clear()

    async def _judge_stream(self, flow: tcp.TCPFlow, message: tcp.TCPMessage) -> None:
        gateway = self.gateway
        if gateway is None:
            message.content = b""  # no policy, no traffic
            self._close_client(flow, "PHI gateway: no policy loaded")
            return
        data = message.content
        session = flow.metadata.get(SESSION_METADATA)
        if not isinstance(session, MllpSession | DimseSession):
            session = flow.metadata[SESSION_METADATA] = self._start_session(gateway, flow)
        if session.pending + len(data) > _THREAD_THRESHOLD:
            output = await asyncio.to_thread(session.feed, gateway, data)
        else:
            output = session.feed(gateway, data)
        message.content = output.forward
        if output.reply:
            ctx.master.commands.call("inject.tcp", flow, True, output.reply)
        if output.close:
            self._close_client(flow, "PHI gateway: unreadable stream to a foreign destination")

    @staticmethod
    def _start_session(gateway: Gateway, flow: tcp.TCPFlow) -> MllpSession | DimseSession:
        """DICOM when the stream opens an association or goes to a DICOM port, else MLLP
        (which also judges streams that turn out to be neither)."""
        destination = _stream_destination(gateway, flow)
        first = flow.messages[-1].content
        proxy = gateway.config.proxy
        if starts_like_associate_rq(first) or (
            destination.port in proxy.dicom_ports and first[:1] != b"\x0b"
        ):
            return DimseSession(gateway, destination, _client(flow))
        mllp_port = destination.port in proxy.mllp_ports
        return MllpSession(gateway, destination, _client(flow), first, mllp_port)

    # -- TLS relayed encrypted: listed passthrough, and domestic (issue 19) ------------------
    @_hook(_intercept_tls)
    async def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """Decide at the ClientHello whether a TLS connection is decrypted or relayed
        encrypted: hosts in ``proxy.tls_passthrough`` are judged as an unreadable payload;
        other TLS is relayed when ``policy.relay_tls`` says so (every address domestic, no
        list names it). Both are judged by the addresses the connection will use and pinned
        to the one judged now: no later hook sees a relayed connection."""
        gateway = self.gateway
        server = data.context.server
        if gateway is None or server.address is None:
            return
        proxy = gateway.config.proxy
        relay_domestic = proxy.relay_domestic_tls and _may_relay(data.context.client)
        if not proxy.tls_passthrough and not relay_domestic:
            return
        host, port = str(server.address[0]), server.address[1]
        sni = data.client_hello.sni
        addresses = await self._tls_addresses(gateway, server, host, port)
        names = {host, sni or host}
        rules = proxy.tls_passthrough
        if any(r.matches(n, port, addresses) for r in rules for n in names):
            self._listed_passthrough(gateway, data, host, port, addresses)
            return
        if not relay_domestic or not addresses:
            return
        if reason := relay_tls(gateway.judge(host, port, addresses), sni, gateway.config):
            self._relay(data, addresses[0], reason)

    async def _tls_addresses(
        self, gateway: Gateway, server: connection.Server, host: str, port: int
    ) -> tuple[str, ...]:
        """Every address a TLS connection may use: its peer when already connected (eager
        strategy), else the host's pin (another flow's judged address) or all it resolves to."""
        if server.peername:
            return (str(server.peername[0]),)
        pinned = self.pins.pinned((host, port))
        return (pinned,) if pinned else await gateway.resolver.resolve(host)

    def _listed_passthrough(
        self,
        gateway: Gateway,
        data: tls.ClientHelloData,
        host: str,
        port: int,
        addresses: tuple[str, ...],
    ) -> None:
        destination = gateway.judge(host, port, addresses)
        message = Message(Protocol.TLS_PASSTHROUGH, _client_of(data.context.client), host, port)
        decision = gateway.evaluate(message, destination, TLS_PASSTHROUGH)
        if decision.verdict.blocks or not addresses:
            self._close_connection(data.context.client, "PHI gateway: TLS passthrough refused")
            return
        self._relay(data, addresses[0], "listed")

    def _relay(self, data: tls.ClientHelloData, address: str, reason: str) -> None:
        """Relay the connection encrypted to ``address``. The address is pinned first: if
        that fails (the connection is already open), the guard intercepts instead."""
        server = data.context.server
        assert server.address is not None
        if server.peername is None and address != server.address[0]:
            server.address = (address, server.address[1])
        data.ignore_connection = True
        # A relayed connection is a stream: no HTTP deadlines (mitmproxy's tcp_timeout).
        self.watch.streaming(data.context.client)
        metrics.child(metrics.TLS_RELAYED, reason).inc()

    # -- UDP (QUIC) -------------------------------------------------------------------------
    @_hook(_drop_datagram)
    def udp_message(self, flow: udp.UDPFlow) -> None:
        """UDP is never inspected: datagrams to foreign or unknown destinations are dropped
        (only modes the gateway refuses carry UDP; this guards ``mitmdump -s`` set-ups)."""
        message = flow.messages[-1]
        gateway = self.gateway
        if message.from_client:
            blocked = flow.metadata.get(UDP_VERDICT)
            if gateway is None:
                blocked = True
            elif blocked is None:
                destination = _datagram_destination(gateway, flow)
                udp_message = Message(
                    Protocol.UDP, _client(flow), destination.host, destination.port
                )
                decision = gateway.evaluate(udp_message, destination, UDP_PAYLOAD)
                blocked = flow.metadata[UDP_VERDICT] = decision.verdict.blocks
            if blocked:
                message.content = b""
        # Last, not in a finally: after an error the guard still finds the datagram to drop.
        flow.messages.clear()

    def _close_client(self, flow: tcp.TCPFlow, reason: str) -> None:
        self._close_connection(flow.client_conn, reason)

    @staticmethod
    def _client_writer(client: connection.Client) -> asyncio.StreamWriter | None:
        """The client's socket writer while mitmproxy still holds its connection."""
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(client.id) if proxyserver else None
        transport = handler.transports.get(client) if handler else None
        writer = transport.writer if transport is not None else None
        return writer if isinstance(writer, asyncio.StreamWriter) else None

    @staticmethod
    def _close_connection(client: connection.Client, reason: str) -> None:
        """Cancel the client's connection handler (``flow.kill()`` does nothing to TCP)."""
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(client.id) if proxyserver else None
        transport = handler.transports.get(client) if handler else None
        if transport is not None and transport.handler is not None:
            transport.handler.cancel(reason)


addons = [PhiGateway()]
