"""The connection watch: ``connections.*`` (gateway/connections.py) carried out in mitmproxy.

mitmproxy 12.3 ends a connection only after ``tcp_timeout`` of silence (any byte resets it)
and takes every connection it can accept. The watch admits or refuses each client connection
at ``client_connected`` (refused ones never reach a layer, let alone an upstream), counts the
bytes each client sends (its reader is wrapped there), follows the phases through the hooks
the addon forwards, and a periodic task closes what is overdue by cancelling the client's
connection handler (mitmproxy's own way of closing one).

A request whose upstream has not begun to answer in time gets a 504 from the gateway: the
upstream connection is closed, and the layer that reads it (HTTP/1 or HTTP/2) reports the
close to the request as our 504 instead of mitmproxy's 502 "server closed connection". That
answer takes the normal path back (responseheaders and response hooks, then the client's
own protocol and TLS). Where no such layer is there yet (connect or TLS handshake to the
upstream still pending) mitmproxy's 502 stands. This reaches into mitmproxy's layers
(``HttpLayer.connections``, ``Http1Client``, ``Http2Client``), checked against 12.3.1.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from mitmproxy import connection, ctx, http, tcp
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import GetHttpConnection, HttpLayer, HttpStream
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
)
from mitmproxy.proxy.layers.http._http1 import Http1Client
from mitmproxy.proxy.layers.http._http2 import Http2Client, StreamState
from mitmproxy.proxy.mode_specs import ReverseMode

from gateway import metrics
from gateway.config import Connections
from gateway.connections import (
    Caps,
    ConnectionTable,
    DescriptorBudget,
    Overdue,
    Phase,
    Refusal,
    Timeouts,
    open_descriptors,
    per_client_cap,
    soft_nofile_limit,
    tick_seconds,
    total_cap,
)
from gateway.connections import Connection as Clock
from gateway.logfilter import RepeatFilter
from gateway.mllp import starts_like_mllp

log = logging.getLogger("phi_gateway")
TIMEOUT_METADATA = "phi_gateway_timeout"
UPSTREAM_TIMEOUT_BODY = (
    b'{"error": "upstream-timeout", "detail": "the destination did not begin to answer '
    b'within connections.upstream_seconds"}'
)
_STREAM_SCHEMES = ("tcp", "tls")
# The descriptor count is read at most this often (a directory listing of them all).
_SAMPLE_SECONDS = 1.0


class _CountingReader:
    """The client's reader, counting what it delivers into the connection's clock."""

    __slots__ = ("_clock", "_reader")

    def __init__(self, reader: asyncio.StreamReader, clock: Clock) -> None:
        self._reader = reader
        self._clock = clock

    async def read(self, n: int = -1) -> bytes:
        data = await self._reader.read(n)
        if data:
            self._clock.read(len(data), time.monotonic())
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _contained[**P](method: Callable[P, None]) -> Callable[P, None]:
    """Bookkeeping never disturbs the hook it runs in: a failure is counted and logged by type."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:
            metrics.HOOK_ERRORS.labels("connection-watch").inc()
            log.error("connection watch failed with %s", type(exc).__name__)

    return run


class ConnectionWatch:
    """``settings`` gives the connections section in force (it follows reloads)."""

    def __init__(self, settings: Callable[[], Connections], repeats: RepeatFilter) -> None:
        self._settings = settings
        self._repeats = repeats
        self.table = ConnectionTable()
        self._limit: int | None = None
        self._at_start: int | None = None
        self._in_use: int | None = None
        self._sampled = 0.0
        self._flushed = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- start and stop ---------------------------------------------------------------------
    def start(self) -> None:
        """Once the proxy listens: the descriptor budget is measured from what is open now."""
        self._limit = soft_nofile_limit()
        self._at_start = open_descriptors()
        self._publish_cap()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="conn-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def budget(self) -> DescriptorBudget | None:
        if self._at_start is None:
            return None
        return DescriptorBudget(self._limit, self._at_start, self._settings().reserved_descriptors)

    def total_cap(self) -> int | None:
        budget = self.budget()
        configured = self._settings().max_total
        return configured if budget is None else total_cap(configured, budget)

    def describe(self) -> str:
        """For the start banner."""
        settings = self._settings()
        cap = self.total_cap()
        budget = self.budget()
        source = ""
        if budget is not None and budget.limit is not None and cap == budget.connection_cap():
            source = (
                f" (from RLIMIT_NOFILE {budget.limit}, {budget.at_start} open, "
                f"{budget.reserved} reserved)"
            )
        total = "no global cap" if cap is None else f"at most {cap}{source}"
        return (
            f"{total}, {per_client_cap(settings.max_per_client, cap)} per client; "
            f"timeouts: headers "
            f"{settings.header_seconds:g} s, idle {settings.idle_seconds:g} s, body "
            f"{settings.body_seconds:g} s + 1 s per {settings.min_body_bytes_per_second} B, "
            f"upstream {settings.upstream_seconds:g} s"
        )

    def _publish_cap(self) -> None:
        metrics.CLIENT_CONNECTIONS_LIMIT.set(self.total_cap() or 0)

    # -- connections ------------------------------------------------------------------------
    @_contained
    def connected(self, client: connection.Client) -> None:
        """Admit the connection, or close it before any layer (or upstream) sees it."""
        if client.transport_protocol != "tcp" or not client.peername:
            return
        settings = self._settings()
        budget = self.budget()
        total = self.total_cap()
        admitted = self.table.admit(
            client.id,
            str(client.peername[0]),
            time.monotonic(),
            Caps(per_client_cap(settings.max_per_client, total), total),
            descriptors_short=budget is not None and budget.short(self._in_use),
            stream=_stream_mode(client),
        )
        if isinstance(admitted, Refusal):
            client.error = f"PHI gateway: connection refused ({admitted.value} cap)"
            metrics.CONNECTIONS_REFUSED.labels(admitted.value).inc()
            if admitted is Refusal.PER_CLIENT:
                log.warning(
                    "refused a connection from %s: its cap (%s connections) reached",
                    client.peername[0],
                    per_client_cap(settings.max_per_client, total),
                )
            else:
                log.warning("refused a connection: %s cap reached", admitted.value)
            return
        metrics.CLIENT_CONNECTIONS.set(len(self.table))
        handler = _handler(client)
        io = handler.transports.get(client) if handler is not None else None
        if io is not None and isinstance(io.reader, asyncio.StreamReader):
            io.reader = cast(asyncio.StreamReader, _CountingReader(io.reader, admitted))

    @_contained
    def disconnected(self, client: connection.Client) -> None:
        if self.table.release(client.id) is not None:
            metrics.CLIENT_CONNECTIONS.set(len(self.table))

    # -- what the hooks saw -----------------------------------------------------------------
    def _clock(self, client: connection.Client) -> Clock | None:
        return self.table.get(client.id)

    @_contained
    def headers(self, flow: http.HTTPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            clock.headers(flow.id, time.monotonic())

    @_contained
    def body(self, flow: http.HTTPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            clock.body(flow.id, time.monotonic())

    @_contained
    def judging(self, flow: http.HTTPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            clock.judging(flow.id)

    @_contained
    def forwarded(self, flow: http.HTTPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            if flow.response is not None or flow.error is not None:
                clock.answered(flow.id)
            else:
                clock.forwarded(flow.id, time.monotonic())

    @_contained
    def answered(self, flow: http.HTTPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            clock.answered(flow.id)

    @_contained
    def finished(self, flow: http.HTTPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            clock.finished(flow.id, time.monotonic())

    @_contained
    def tunnel(self, flow: http.HTTPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            clock.tunnel(time.monotonic())

    @_contained
    def streaming(self, client: connection.Client, *, mllp: bool = False) -> None:
        if (clock := self._clock(client)) is not None:
            clock.streaming(mllp=mllp)

    @_contained
    def stream_sent(self, flow: tcp.TCPFlow, arrived: bytes, forwarded: bool) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            if not clock.stream:
                clock.streaming()
            if starts_like_mllp(arrived):
                clock.mllp = True
            if forwarded:
                clock.sent(time.monotonic())

    @_contained
    def stream_replied(self, flow: tcp.TCPFlow) -> None:
        if (clock := self._clock(flow.client_conn)) is not None:
            clock.replied()

    # -- the periodic check -----------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            timeouts = Timeouts.of(self._settings())
            self.check(time.monotonic(), timeouts)
            await asyncio.sleep(tick_seconds(timeouts))

    @_contained
    def check(self, now: float, timeouts: Timeouts) -> None:
        for overdue in self.table.overdue(now, timeouts):
            self._act(overdue, now)
        if now - self._sampled >= _SAMPLE_SECONDS:
            self._sampled = now
            self._in_use = open_descriptors()
            self._publish_cap()
            self._repeats.flush()

    def _act(self, overdue: Overdue, now: float) -> None:
        clock = overdue.connection
        handler = _handler_by_id(clock.key)
        if handler is None:  # gone already; client_disconnected will tidy up
            return
        if overdue.phase in (Phase.IDLE, Phase.HEADERS) and _writing(handler):
            clock.writing(now)  # still sending the client its answer
            return
        if overdue.phase is Phase.UPSTREAM and overdue.flow is not None:
            cut = _cut_upstream(handler, overdue.flow)
            if cut is _Cut.WAITING:
                return  # try again at the next check
            clock.answered(overdue.flow)
            if cut is _Cut.GONE:
                return
            log.warning(
                "a destination did not begin to answer within connections.upstream_seconds: %s",
                cut.value,
            )
        else:
            clock.closing = True
            _close_client(handler, f"PHI gateway: {overdue.phase.value} timeout")
            if overdue.phase is Phase.UPSTREAM:
                log.warning("an MLLP receiver did not answer in time: connection closed")
            else:
                log.info("closed a client connection: %s timeout", overdue.phase.value)
        metrics.CONNECTION_TIMEOUTS.labels(overdue.phase.value).inc()


def _stream_mode(client: connection.Client) -> bool:
    """Reverse proxies to a TCP or TLS target carry streams from the first byte."""
    mode = client.proxy_mode
    return isinstance(mode, ReverseMode) and mode.scheme in _STREAM_SCHEMES


# -- mitmproxy's connection handlers --------------------------------------------------------
def _handler_by_id(key: str) -> Any:
    proxyserver = ctx.master.addons.get("proxyserver")
    return proxyserver.connections.get(key) if proxyserver is not None else None


def _handler(client: connection.Client) -> Any:
    return _handler_by_id(client.id)


def _close_client(handler: Any, reason: str) -> None:
    io = handler.transports.get(handler.client)
    if io is not None and io.handler is not None:
        io.handler.cancel(reason)


def _writing(handler: Any) -> bool:
    io = handler.transports.get(handler.client)
    writer = io.writer if io is not None else None
    transport = getattr(writer, "transport", None)
    return transport is not None and transport.get_write_buffer_size() > 0


def _layers(root: layer.Layer) -> Iterator[layer.Layer]:
    """Every layer below ``root``: mode and TLS layers hand over through ``child_layer`` or
    by replacing their ``_handle_event`` with the child's; HTTP layers hold their
    connections' layers and streams."""
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        current = stack.pop()
        if not isinstance(current, layer.Layer) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [getattr(current, "layer", None), getattr(current, "child_layer", None)]
        handover = current.__dict__.get("_handle_event")
        stack.append(getattr(handover, "__self__", None))
        if isinstance(current, HttpLayer):
            stack += list(current.connections.values()) + list(current.streams.values())


class _Cut(enum.Enum):
    """What became of a request whose upstream did not answer in time."""

    ANSWERED = "answered 504"
    CLOSED = "its upstream connection closed (mitmproxy answers 502)"
    WAITING = "waiting: its HTTP/2 upstream connection carries other requests"
    GONE = "gone already"


def _cut_upstream(handler: Any, flow_id: str) -> _Cut:
    """Answer the request 504 and close its upstream connection. While that connection is
    still being opened (TCP connect, TLS handshake) there is no reader to answer for it:
    closing it makes mitmproxy answer 502. Never closes an HTTP/2 connection that carries
    other requests too."""
    for found in _layers(handler.layer):
        if not isinstance(found, HttpLayer):
            continue
        for stream_id, stream in found.streams.items():
            flow = getattr(stream, "flow", None)
            if flow is None or flow.id != flow_id:
                continue
            server = flow.server_conn
            top = found.connections.get(server)
            if isinstance(top, HttpStream):
                continue  # the CONNECT carrying the tunnel: the request is further down
            if top is None:  # flow.server_conn is set only once the connection is open
                server = _connection_opened_for(found, stream)
                top = found.connections.get(server) if server is not None else None
                if server is None or top is None:
                    return _Cut.GONE
            reader = top.context.layers[-1]
            if isinstance(reader, Http2Client) and len(reader.streams) > 1:
                return _Cut.WAITING
            flow.metadata[TIMEOUT_METADATA] = Phase.UPSTREAM.value
            armed = _answer_on_close(reader, stream_id, _timeout_response())
            io = handler.transports.get(server)
            if io is not None and io.handler is not None:
                io.handler.cancel("PHI gateway: upstream timeout")
            return _Cut.ANSWERED if armed else _Cut.CLOSED
    return _Cut.GONE


def _connection_opened_for(found: HttpLayer, stream: HttpStream) -> Any:
    """The upstream connection being opened for ``stream`` (its pending GetHttpConnection)."""
    for command, source in found.command_sources.items():
        if source is stream and isinstance(command, GetHttpConnection):
            for server, waiting in found.waiting_for_establishment.items():
                if command in waiting:
                    return server
    return None


def _timeout_response() -> http.Response:
    return http.Response.make(504, UPSTREAM_TIMEOUT_BODY, {"content-type": "application/json"})


def _answer_on_close(reader: layer.Layer, stream_id: int, response: http.Response) -> bool:
    """Make the upstream connection's reader report its close as ``response`` to the stream
    (when that stream has had no answer yet); every other stream hears what it would have.
    False for layers other than HTTP/1 and HTTP/2 readers (still connecting, TLS handshake):
    they keep mitmproxy's own answer."""
    if isinstance(reader, Http1Client):

        def unanswered() -> bool:
            return reader.stream_id == stream_id and reader.response is None
    elif isinstance(reader, Http2Client):

        def unanswered() -> bool:
            ours = reader.our_stream_id.get(stream_id)
            return reader.streams.get(ours or -1) is StreamState.EXPECTING_HEADERS
    else:
        return False
    original = reader._handle_event

    def reporting(event: events.Event) -> layer.CommandGenerator[None]:
        if not isinstance(event, events.ConnectionClosed) or not unanswered():
            return (yield from original(event))
        reader._handle_event = original  # type: ignore[method-assign]  # answer once
        yield ReceiveHttp(ResponseHeaders(stream_id, response, False))
        if response.raw_content:
            yield ReceiveHttp(ResponseData(stream_id, response.raw_content))
        yield ReceiveHttp(ResponseEndOfMessage(stream_id))
        for command in original(event):
            if isinstance(command, ReceiveHttp) and command.event.stream_id == stream_id:
                continue  # mitmproxy's "server closed connection" for the answered stream
            if isinstance(command, commands.Command):
                yield command

    reader._handle_event = reporting  # type: ignore[method-assign]
    return True
