"""Request trailers through mitmproxy 12's HTTP/1 layers.

mitmproxy 12.3 reads HTTP/2 request trailers into ``flow.request.trailers`` (the ``request``
hook sees them, and an HTTP/2 server gets them), but its HTTP/1 layers have none:

- a chunked request with a trailer section raises ``NotImplementedError`` in
  ``Http1Connection.read_body`` when the section arrives (logged as "mitmproxy has crashed!"):
  no ``request`` hook, no answer, the connection held open until a deadline closes it;
- trailers handed to the HTTP/1 client (an HTTP/2 request bound for an HTTP/1.1 server, or a
  streamed HTTP/1.1 body whose trailers come after it left) raise ``AssertionError`` in
  ``Http1Client.send``, with the same hang.

``install()`` wraps both, once. The HTTP/1 server reads a trailer section the way the HTTP/2
layer does (``RequestTrailers`` before the end of the message), so the ``request`` hook sees
the trailers and the addon inspects them and refuses what it cannot forward. The HTTP/1
client, handed trailers it cannot write, closes its upstream connection and answers the
stream 502 with a reason, before it writes anything when the trailers are known that early.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import h11
from h11._readers import ChunkedReader
from h11._receivebuffer import ReceiveBuffer
from mitmproxy import http
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    ErrorCode,
    HttpEvent,
    RequestEndOfMessage,
    RequestHeaders,
    RequestTrailers,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.http._http1 import Http1Client, Http1Server

from gateway import metrics

TO_HTTP1_SERVER = "PHI gateway: request trailers cannot be forwarded to an HTTP/1.1 server"
_REFUSED = "_phi_gateway_trailers_refused"  # on an Http1Client: its stream was refused
_Handler = Callable[[Any, events.Event], Generator[commands.Command, Any, None]]


class _TrailerReader:
    """mitmproxy's chunked body reader, with the trailer section kept aside for the layer to
    hand on (mitmproxy raises on it)."""

    def __init__(self, inner: ChunkedReader) -> None:
        self.inner = inner
        self.trailers: list[tuple[bytes, bytes]] = []

    def __call__(self, buf: ReceiveBuffer) -> h11.Data | h11.EndOfMessage | None:
        event = self.inner(buf)
        if isinstance(event, h11.EndOfMessage) and event.headers:
            self.trailers = list(event.headers.raw_items())
            return h11.EndOfMessage()
        return event

    def read_eof(self) -> h11.EndOfMessage:
        return self.inner.read_eof()


def _unwritable(event: events.Event) -> bool:
    """Trailers the HTTP/1 client would be asked to write (it has no way to)."""
    return isinstance(event, RequestTrailers) or (
        isinstance(event, RequestHeaders) and bool(event.request.trailers)
    )


def install() -> None:
    """Wrap mitmproxy's HTTP/1 body reader and client once (idempotent)."""
    read_body: _Handler = Http1Server.read_body
    if not getattr(read_body, "phi_gateway", False):

        def reading(self: Http1Server, event: events.Event) -> Generator[Any, Any, None]:
            reader = self.body_reader
            if isinstance(reader, ChunkedReader):
                reader = self.body_reader = _TrailerReader(reader)  # type: ignore[assignment]
            for command in read_body(self, event):
                if (
                    isinstance(reader, _TrailerReader)
                    and reader.trailers
                    and isinstance(command, ReceiveHttp)
                    and isinstance(command.event, RequestEndOfMessage)
                ):
                    trailers = http.Headers(reader.trailers)
                    reader.trailers = []
                    yield ReceiveHttp(RequestTrailers(self.stream_id, trailers))
                yield command

        reading.phi_gateway = True  # type: ignore[attr-defined]
        Http1Server.read_body = reading  # type: ignore[method-assign, assignment]

    handle: _Handler = Http1Client._handle_event
    if not getattr(handle, "phi_gateway", False):

        def handling(self: Http1Client, event: events.Event) -> Generator[Any, Any, None]:
            if getattr(self, _REFUSED, False):
                return  # its connection is closed: nothing more goes out or comes in
            if not _unwritable(event):
                yield from handle(self, event)
                return
            assert isinstance(event, HttpEvent)
            setattr(self, _REFUSED, True)
            metrics.UNFORWARDABLE.labels("trailers-to-http1-server").inc()
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(
                ResponseProtocolError(
                    event.stream_id, TO_HTTP1_SERVER, ErrorCode.GENERIC_SERVER_ERROR
                )
            )

        handling.phi_gateway = True  # type: ignore[attr-defined]
        Http1Client._handle_event = handling  # type: ignore[method-assign, assignment]
