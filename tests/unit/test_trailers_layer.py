"""mitmproxy's HTTP/1 layers with addons/trailers.py installed: the server reads a trailer
section as trailers (mitmproxy 12 raises there), ordinary chunked bodies read as before, and
the client refuses trailers it cannot write with a 502 instead of raising."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.options import Options
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    RequestData,
    RequestEndOfMessage,
    RequestHeaders,
    RequestTrailers,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.http._http1 import Http1Client, Http1Server
from mitmproxy.test import tflow, tutils

from addons import trailers
from gateway import metrics

trailers.install()
trailers.install()  # idempotent: wrapping twice would hand each trailer on twice


def _server_events(data: bytes) -> list[object]:
    client = tflow.tclient_conn()
    server = Http1Server(Context(client, Options()))
    list(server.handle_event(events.Start()))
    received = list(server.handle_event(events.DataReceived(client, data)))
    return [c.event for c in received if isinstance(c, ReceiveHttp)]


HEAD = b"POST /upload HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n"


def test_a_trailer_section_arrives_as_trailers_before_the_end() -> None:
    got = _server_events(HEAD + b"\r\n5\r\nhello\r\n0\r\nX-Checksum: sha256=ab\r\nX-B: 2\r\n\r\n")
    kinds = [type(e) for e in got]
    assert kinds == [RequestHeaders, RequestData, RequestTrailers, RequestEndOfMessage]
    trailer = got[2]
    assert isinstance(trailer, RequestTrailers)
    assert trailer.trailers.fields == ((b"X-Checksum", b"sha256=ab"), (b"X-B", b"2"))


def test_chunked_bodies_without_trailers_and_keep_alive_read_as_before() -> None:
    second = b"POST /next HTTP/1.1\r\nHost: example.test\r\nContent-Length: 2\r\n\r\nok"
    got = _server_events(HEAD + b"\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n" + second)
    assert [type(e) for e in got] == [
        RequestHeaders,
        RequestData,
        RequestData,
        RequestEndOfMessage,
    ]  # the second request waits for the first one's response, as in mitmproxy
    assert b"".join(e.data for e in got if isinstance(e, RequestData)) == b"hello!!!"


def _client() -> Http1Client:
    server = tflow.tserver_conn()
    client = Http1Client(Context(tflow.tclient_conn(), Options()))
    client.conn = server
    list(client.handle_event(events.Start()))
    return client


def _refused(got: list[commands.Command]) -> bool:
    closes = [c for c in got if isinstance(c, commands.CloseConnection)]
    errors = [c.event for c in got if isinstance(c, ReceiveHttp)]
    return (
        len(closes) == 1
        and len(errors) == 1
        and isinstance(errors[0], ResponseProtocolError)
        and errors[0].code.http_status_code() == 502
        and errors[0].message == trailers.TO_HTTP1_SERVER
    )


def _count() -> float:
    value: float = metrics.UNFORWARDABLE.labels("trailers-to-http1-server")._value.get()
    return value


def test_the_client_refuses_known_trailers_before_writing_anything() -> None:
    before = _count()
    request = tutils.treq()
    request.trailers = http.Headers(x_checksum="sha256=ab")
    client = _client()
    got = list(client.handle_event(RequestHeaders(1, request, end_stream=False)))
    assert _refused(got) and not any(isinstance(c, commands.SendData) for c in got)
    later = list(client.handle_event(RequestData(1, b"body")))
    later += list(client.handle_event(RequestEndOfMessage(1)))
    assert later == []  # the rest of the refused stream goes nowhere
    assert _count() == before + 1


def test_the_client_refuses_trailers_that_follow_a_streamed_body() -> None:
    request = tutils.treq()
    request.headers["transfer-encoding"] = "chunked"
    client = _client()
    sent = list(client.handle_event(RequestHeaders(1, request, end_stream=False)))
    sent += list(client.handle_event(RequestData(1, b"hello")))
    assert [c for c in sent if isinstance(c, commands.SendData)]  # written as they came
    got = list(client.handle_event(RequestTrailers(1, http.Headers(x_checksum="sha256=ab"))))
    assert _refused(got)
    assert list(client.handle_event(RequestEndOfMessage(1))) == []


def test_the_client_writes_requests_without_trailers() -> None:
    client = _client()
    got = list(client.handle_event(RequestHeaders(1, tutils.treq(), end_stream=False)))
    got += list(client.handle_event(RequestData(1, b"hello")))
    got += list(client.handle_event(RequestEndOfMessage(1)))
    written = b"".join(c.data for c in got if isinstance(c, commands.SendData))
    assert written.startswith(b"GET /path HTTP/1.1\r\n") and written.endswith(b"hello")
    assert not any(isinstance(c, ReceiveHttp) for c in got)
