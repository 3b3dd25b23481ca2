"""Every hook of the addon, in process, with mitmproxy's own test helpers: once on its normal
path and once with a bug inside it. A bug fails closed toward foreign and unknown destinations,
leaves domestic traffic alone, is counted, and never writes its text to the log."""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from mitmproxy import connection, hooks, http, tcp, tls, udp, websocket
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.connection import ConnectionState
from mitmproxy.options import Options
from mitmproxy.proxy import context, events, layer, layers, server_hooks
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils
from prometheus_client import REGISTRY
from wsproto.frame_protocol import Opcode  # mitmproxy's own WebSocket dependency

from addons import phi_gateway
from addons.phi_gateway import DESTINATION_METADATA, PIN_METADATA, PhiGateway
from gateway.config import parse_config
from gateway.engine import Gateway
from gateway.geo.pinning import ConnectionPins
from gateway.mllp import MllpSession, frame
from gateway.model import Location
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP, build_test_mmdb
from tests.support.patients import hl7_adt, make_patient

SECRET = "SECRET-PAYLOAD-TEXT"
ADT = hl7_adt(make_patient(7), control_id="CTL-7").encode()
PASSTHROUGH = "passthrough.test"
REFUSAL = b'{"error": "blocked", "rule": "internal-error"}'


# -- the world: a real Gateway over a test MaxMind database ------------------------------------
@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("hooks")
    mmdb = build_test_mmdb(tmp / "world.mmdb")
    config = parse_config(
        {
            "geo": {"databases": [{"path": str(mmdb), "answers_reserved": True}]},
            "audit": {"database": str(tmp / "audit.db")},
            "proxy": {"tls_passthrough": [{"host": PASSTHROUGH, "reason": "pinned client"}]},
        }
    )
    gw = Gateway.from_config(config)
    yield gw
    gw.close()


class Client:
    """Stands in for mitmproxy's handler of one client connection: records what is injected
    into it and whether it was cancelled (how the addon closes a connection)."""

    def __init__(self, client: connection.Client) -> None:
        self.injected: list[bytes] = []
        self.cancelled: list[str] = []
        self.transports = {client: _Transport(self.cancelled.append)}

    async def server_event(self, event: events.MessageInjected[Any]) -> None:
        self.injected.append(event.message.content)


class _Transport:
    def __init__(self, cancel: Callable[[str], object]) -> None:
        self.handler = _Task(cancel)


class _Task:
    def __init__(self, cancel: Callable[[str], object]) -> None:
        self.cancel = cancel


class Proxy:
    """The addon inside one mitmproxy master (``taddons.context``, with its own event loop)
    with the real proxyserver addon, whose connections are our stand-ins. Hooks are invoked
    the way mitmproxy invokes them, without its ``safecall``: an exception that escapes the
    addon fails the test."""

    def __init__(self, gateway: Gateway) -> None:
        self.addon = PhiGateway(gateway)
        self.proxyserver = Proxyserver()  # type: ignore[no-untyped-call]
        self._context = taddons.context(self.proxyserver, self.addon)  # type: ignore[no-untyped-call]
        self.master = self._context.master

    def connect(self, client: connection.Client) -> Client:
        handler = Client(client)
        self.proxyserver.connections[client.id] = handler  # type: ignore[assignment]
        return handler

    def fire(self, hook: str, data: object) -> None:
        """Invoke the named hook (mitmproxy's own registry of hooks builds the event)."""
        event = hooks.all_hooks[hook](data)

        async def run() -> None:
            await self.master.addons.invoke_addon(self.addon, event)
            await asyncio.sleep(0)  # let injected messages arrive

        self.master.event_loop.run_until_complete(run())

    def close(self) -> None:
        # The master's log handler would outlive its closed loop and fail later records.
        self.master._legacy_log_events.uninstall()
        self._context.__exit__(None, None, None)  # type: ignore[no-untyped-call]


@pytest.fixture
def proxy(gateway: Gateway) -> Iterator[Proxy]:
    running = Proxy(gateway)
    yield running
    running.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """Hook errors and undecided payloads, counted from the moment the test starts."""

    def __init__(self, hook: str) -> None:
        self.hook = hook
        self._errors = self.errors
        self._undecided = self.undecided

    @property
    def errors(self) -> float:
        return _sample("phi_gateway_hook_errors_total", hook=self.hook)

    @property
    def undecided(self) -> float:
        return _sample("phi_gateway_flows_not_inspected_total", reason="internal-error")

    def new_errors(self) -> float:
        return self.errors - self._errors

    def new_undecided(self) -> float:
        return self.undecided - self._undecided


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def boom(*args: object, **kwargs: object) -> NoReturn:
    raise RuntimeError(SECRET)


async def aboom(*args: object, **kwargs: object) -> NoReturn:
    raise RuntimeError(SECRET)


def assert_logged_safely(logs: pytest.LogCaptureFixture, hook: str) -> None:
    assert f"{hook} hook failed with RuntimeError" in logs.text
    assert SECRET not in logs.text
    assert all(record.exc_info is None for record in logs.records)


def stub_dns(monkeypatch: pytest.MonkeyPatch, gateway: Gateway, zone: dict[str, str]) -> None:
    async def resolve(host: str) -> tuple[str, ...]:
        return (zone[host],) if host in zone else (host,)

    monkeypatch.setattr(gateway.resolver, "resolve", resolve)


def test_every_hook_goes_through_the_guard() -> None:
    names = [n for n in vars(PhiGateway) if n in hooks.all_hooks]
    assert {"request", "tls_clienthello", "udp_message", "next_layer"} <= set(names)
    for name in names:
        method = getattr(PhiGateway, name)
        if name in ("load", "configure"):  # start-up: their OptionsError must reach mitmproxy
            assert not hasattr(method, "__wrapped__"), name
            continue
        assert hasattr(method, "__wrapped__"), f"{name} is not guarded"
        # mitmproxy awaits what is async; a sync hook must stay sync (next_layer is sync).
        assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(
            method.__wrapped__
        ), name


# -- HTTP -------------------------------------------------------------------------------------
def http_flow(ip: str, body: bytes = ADT, *, length: bool = True) -> http.HTTPFlow:
    headers = http.Headers(content_type="application/hl7-v2")
    if length:
        headers["content-length"] = str(len(body))
    request = tutils.treq(host=ip, port=80, method=b"POST", headers=headers, content=body)
    return tflow.tflow(req=request)


def test_requestheaders_streams_domestic_bulk_and_buffers_foreign(proxy: Proxy) -> None:
    home, abroad = http_flow(DOMESTIC_IP, length=False), http_flow(FOREIGN_IP, length=False)
    proxy.fire("requestheaders", home)
    proxy.fire("requestheaders", abroad)
    assert home.request.stream is True
    assert abroad.request.stream is False
    assert abroad.metadata[DESTINATION_METADATA].verdict.location is Location.FOREIGN
    assert abroad.metadata[PIN_METADATA] == (FOREIGN_IP, 80)


def test_requestheaders_error_streams_nothing_and_request_refuses(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts, refusals = Counts("requestheaders"), Counts("request")
    monkeypatch.setattr(gateway.resolver, "resolve", aboom)
    flow = http_flow(FOREIGN_IP, length=False)
    flow.request.stream = True  # as if set before the error: must not survive it
    proxy.fire("requestheaders", flow)
    assert flow.request.stream is False
    assert DESTINATION_METADATA not in flow.metadata and PIN_METADATA not in flow.metadata
    assert counts.new_errors() == 1
    proxy.fire("request", flow)  # locating fails again: refused
    assert flow.response is not None and flow.response.status_code == 451
    assert flow.response.content == REFUSAL
    assert refusals.new_errors() == 1 and refusals.new_undecided() == 1
    assert_logged_safely(logs, "requestheaders")
    assert_logged_safely(logs, "request")


def test_requestheaders_error_leaves_domestic_traffic_to_request(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("requestheaders")
    # Fails after locating (a domestic destination is known by then).
    monkeypatch.setattr(phi_gateway, "needs_inspection", boom)
    flow = http_flow(DOMESTIC_IP, length=False)
    proxy.fire("requestheaders", flow)
    assert flow.request.stream is False  # buffered rather than streamed unjudged
    assert counts.new_errors() == 1
    proxy.fire("request", flow)  # request() decides afresh: domestic goes
    assert flow.response is None
    assert flow.metadata[DESTINATION_METADATA].verdict.location is Location.DOMESTIC
    assert_logged_safely(logs, "requestheaders")


def test_request_refuses_foreign_phi_and_forwards_domestic(proxy: Proxy) -> None:
    home, abroad = http_flow(DOMESTIC_IP), http_flow(FOREIGN_IP)
    for flow in (home, abroad):
        proxy.fire("requestheaders", flow)
        proxy.fire("request", flow)
    assert home.response is None
    assert abroad.response is not None and abroad.response.status_code == 451
    assert abroad.response.content != REFUSAL  # the policy's refusal, not the guard's
    assert PIN_METADATA not in abroad.metadata  # released with the refusal


@pytest.mark.parametrize("headers_first", [True, False])
def test_request_error_refuses_foreign_and_forwards_domestic(
    proxy: Proxy,
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
    headers_first: bool,
) -> None:
    counts = Counts("request")
    monkeypatch.setattr(gateway, "evaluate", boom)
    home, abroad = http_flow(DOMESTIC_IP), http_flow(FOREIGN_IP)
    for flow in (home, abroad):
        if headers_first:  # else request() locates by itself (e.g. a policy arrived mid-way)
            proxy.fire("requestheaders", flow)
        proxy.fire("request", flow)
    assert abroad.response is not None and abroad.response.status_code == 451
    assert abroad.response.content == REFUSAL
    assert abroad.response.headers["content-type"] == "application/json"
    assert PIN_METADATA not in abroad.metadata  # the pin is released with the refusal
    assert home.response is None  # domestic traffic is not broken by our bug
    assert PIN_METADATA in home.metadata  # still in flight: released by response/error
    assert counts.new_errors() == 2 and counts.new_undecided() == 2
    assert_logged_safely(logs, "request")


@pytest.mark.parametrize("hook", ["response", "error"])
def test_response_and_error_release_the_pin(proxy: Proxy, hook: str) -> None:
    clock = Clock()
    proxy.addon.pins = ConnectionPins(ttl=10, clock=clock)
    flow = http_flow(FOREIGN_IP)
    proxy.fire("requestheaders", flow)
    clock.now = 100
    assert proxy.addon.pins.pinned((FOREIGN_IP, 80)) == FOREIGN_IP  # in flight
    proxy.fire(hook, flow)
    clock.now = 200
    assert proxy.addon.pins.pinned((FOREIGN_IP, 80)) is None  # released, then idle too long
    assert PIN_METADATA not in flow.metadata


@pytest.mark.parametrize("hook", ["response", "error"])
def test_response_and_error_errors_do_not_escape(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture, hook: str
) -> None:
    counts = Counts(hook)
    flow = http_flow(FOREIGN_IP, length=False)
    proxy.fire("requestheaders", flow)
    monkeypatch.setattr(proxy.addon.pins, "release", boom)
    flow.response = tutils.tresp()
    proxy.fire(hook, flow)
    assert flow.response.status_code == 200  # mitmproxy's default: the answer goes on
    assert counts.new_errors() == 1
    assert_logged_safely(logs, hook)


# -- upstream connections -----------------------------------------------------------------------
def server_data(host: str, port: int = 80) -> server_hooks.ServerConnectionHookData:
    server = tflow.tserver_conn()
    server.address, server.peername = (host, port), None
    return server_hooks.ServerConnectionHookData(server, tflow.tclient_conn())


def test_server_connection_goes_to_the_pin_and_is_counted_live(proxy: Proxy) -> None:
    pins = proxy.addon.pins
    pins.acquire(("app.test", 80), (FOREIGN_IP,))  # what a judged request pinned
    data = server_data("app.test")
    proxy.fire("server_connect", data)
    assert data.server.address == (FOREIGN_IP, 80)
    data.server.peername = (FOREIGN_IP, 80)
    proxy.fire("server_connected", data)
    assert data.server.address == ("app.test", 80)  # the name again, for reuse
    assert pins.live(("app.test", 80)) == (FOREIGN_IP,)
    proxy.fire("server_disconnected", data)
    assert pins.live(("app.test", 80)) == ()


def test_server_connect_error_forgets_the_redirect(proxy: Proxy) -> None:
    proxy.addon.pins.acquire(("app.test", 80), (FOREIGN_IP,))
    data = server_data("app.test")
    proxy.fire("server_connect", data)
    proxy.fire("server_connect_error", data)
    data.server.peername = (FOREIGN_IP, 80)
    proxy.fire("server_connected", data)  # same id: nothing left to restore
    assert data.server.address == (FOREIGN_IP, 80)


def test_server_connect_error_keeps_mitmproxys_default(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("server_connect")
    monkeypatch.setattr(gateway.resolver, "resolve", aboom)
    data = server_data("unpinned.test")
    proxy.fire("server_connect", data)
    assert data.server.address == ("unpinned.test", 80)
    assert data.server.error is None
    assert counts.new_errors() == 1
    assert_logged_safely(logs, "server_connect")


@pytest.mark.parametrize(
    "case",
    [
        ("server_connected", "connected"),
        ("server_disconnected", "disconnected"),
        ("server_connect_error", "failed"),
    ],
)
def test_server_connection_bookkeeping_errors_do_not_escape(
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
    case: tuple[str, str],
) -> None:
    hook, method = case
    counts = Counts(hook)
    monkeypatch.setattr(proxy.addon.pins, method, boom)
    data = server_data(FOREIGN_IP)
    data.server.peername = (FOREIGN_IP, 80)
    proxy.fire(hook, data)
    assert data.server.address == (FOREIGN_IP, 80)
    assert counts.new_errors() == 1
    assert_logged_safely(logs, hook)


# -- WebSocket ----------------------------------------------------------------------------------
def ws_flow(ip: str, content: bytes = ADT) -> http.HTTPFlow:
    flow = tflow.twebsocketflow()
    flow.server_conn.peername = (ip, 80)
    assert flow.websocket is not None
    flow.websocket.messages.append(websocket.WebSocketMessage(Opcode.TEXT, True, content))
    return flow


def _dropped(flow: http.HTTPFlow) -> bool:
    assert flow.websocket is not None
    return flow.websocket.messages[-1].dropped


def test_websocket_phi_abroad_is_dropped_and_home_goes(proxy: Proxy) -> None:
    home, abroad, clean = ws_flow(DOMESTIC_IP), ws_flow(FOREIGN_IP), ws_flow(FOREIGN_IP, b"hi")
    for flow in (home, abroad, clean):
        proxy.fire("websocket_message", flow)
    assert (_dropped(home), _dropped(abroad), _dropped(clean)) == (False, True, False)


def test_websocket_error_drops_abroad_and_forwards_home(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("websocket_message")
    monkeypatch.setattr(gateway, "evaluate", boom)
    home, abroad = ws_flow(DOMESTIC_IP, b"hi"), ws_flow(FOREIGN_IP, b"hi")
    for flow in (home, abroad):
        proxy.fire("websocket_message", flow)
    assert _dropped(abroad) and not _dropped(home)
    assert counts.new_errors() == 2 and counts.new_undecided() == 2
    assert_logged_safely(logs, "websocket_message")


# -- raw TCP and MLLP ---------------------------------------------------------------------------
def next_layer(ip: str, data: bytes) -> layer.NextLayer:
    ctx = context.Context(tflow.tclient_conn(), Options())
    ctx.server.address = (ip, 2575)
    nextlayer = layer.NextLayer(ctx)
    nextlayer.events.append(events.DataReceived(ctx.client, data))
    return nextlayer


def test_next_layer_makes_mllp_ports_raw_tcp(proxy: Proxy) -> None:
    nextlayer = next_layer(FOREIGN_IP, frame(ADT))
    proxy.fire("next_layer", nextlayer)
    assert isinstance(nextlayer.layer, layers.TCPLayer)


def test_next_layer_error_keeps_mitmproxys_default(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("next_layer")
    nextlayer = next_layer(FOREIGN_IP, frame(ADT))
    monkeypatch.setattr(nextlayer, "data_client", boom)
    proxy.fire("next_layer", nextlayer)
    assert nextlayer.layer is None  # mitmproxy chooses the layer as it would without us
    assert counts.new_errors() == 1
    assert_logged_safely(logs, "next_layer")


def tcp_flow(
    proxy: Proxy, ip: str, content: bytes = b""
) -> tuple[tcp.TCPFlow, tcp.TCPMessage, Client]:
    message = tcp.TCPMessage(True, content or frame(ADT))  # type: ignore[no-untyped-call]
    flow = tflow.ttcpflow(messages=[message])
    flow.server_conn.address = flow.server_conn.peername = (ip, 2575)
    return flow, message, proxy.connect(flow.client_conn)


def test_tcp_phi_abroad_is_refused_with_an_ack_and_home_is_relayed(proxy: Proxy) -> None:
    home, home_message, home_client = tcp_flow(proxy, DOMESTIC_IP)
    abroad, abroad_message, abroad_client = tcp_flow(proxy, FOREIGN_IP)
    for flow in (home, abroad):
        proxy.fire("tcp_message", flow)
    assert home_message.content == frame(ADT) and not home_client.injected
    assert abroad_message.content == b""
    assert len(abroad_client.injected) == 1 and b"MSA|AR|CTL-7" in abroad_client.injected[0]
    assert not home_client.cancelled and not abroad_client.cancelled
    assert home.messages == [] and abroad.messages == []  # flat in memory


def test_tcp_unreadable_stream_abroad_is_closed(proxy: Proxy) -> None:
    flow, message, client = tcp_flow(proxy, FOREIGN_IP, b"\x00\x01 not a frame")
    proxy.fire("tcp_message", flow)
    assert message.content == b""
    assert client.cancelled


def test_tcp_error_empties_and_closes_abroad_and_relays_home(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("tcp_message")
    monkeypatch.setattr(MllpSession, "feed", boom)
    home, home_message, home_client = tcp_flow(proxy, DOMESTIC_IP)
    abroad, abroad_message, abroad_client = tcp_flow(proxy, FOREIGN_IP)
    for flow in (home, abroad):
        proxy.fire("tcp_message", flow)
    assert abroad_message.content == b"" and abroad_client.cancelled
    assert home_message.content == frame(ADT) and not home_client.cancelled
    assert home.messages == [] and abroad.messages == []
    assert counts.new_errors() == 2 and counts.new_undecided() == 2
    assert_logged_safely(logs, "tcp_message")


def test_tcp_error_before_judging_closes_the_stream(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("tcp_message")
    monkeypatch.setattr(gateway, "judge", boom)  # not even the destination is known
    flow, message, client = tcp_flow(proxy, DOMESTIC_IP)
    proxy.fire("tcp_message", flow)
    assert message.content == b"" and client.cancelled
    assert counts.new_errors() == 1
    assert_logged_safely(logs, "tcp_message")


# -- TLS passthrough ----------------------------------------------------------------------------
def client_hello(
    proxy: Proxy, ip: str | None, sni: str = PASSTHROUGH
) -> tuple[tls.ClientHelloData, Client]:
    """A real ClientHello (from Python's ssl) for a connection to ``sni``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls_client.do_handshake()
    hello = parse_client_hello(outgoing.read())
    assert hello is not None
    ctx = context.Context(tflow.tclient_conn(), Options())
    ctx.server.address = (sni, 443)
    if ip is not None:
        ctx.server.peername = (ip, 443)
    return tls.ClientHelloData(ctx, hello), proxy.connect(ctx.client)


def test_tls_passthrough_home_is_relayed_and_abroad_is_refused(proxy: Proxy) -> None:
    home, home_client = client_hello(proxy, DOMESTIC_IP)
    abroad, abroad_client = client_hello(proxy, FOREIGN_IP)
    other, _ = client_hello(proxy, FOREIGN_IP, sni="intercepted.test")
    for data in (home, abroad, other):
        proxy.fire("tls_clienthello", data)
    assert home.ignore_connection and not home_client.cancelled
    assert not abroad.ignore_connection and abroad_client.cancelled
    assert not other.ignore_connection  # not listed: intercepted, its requests judged


def test_tls_passthrough_pins_the_address_it_judged(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_dns(monkeypatch, gateway, {PASSTHROUGH: DOMESTIC_IP})
    data, _ = client_hello(proxy, None)  # lazy: not connected yet
    proxy.fire("tls_clienthello", data)
    assert data.ignore_connection
    assert data.context.server.address == (DOMESTIC_IP, 443)


def test_tls_error_intercepts_instead_of_passing_through(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("tls_clienthello")
    monkeypatch.setattr(gateway, "evaluate", boom)
    data, client = client_hello(proxy, DOMESTIC_IP)
    data.ignore_connection = True  # set before the error (e.g. by another addon): undone
    proxy.fire("tls_clienthello", data)
    assert not data.ignore_connection
    assert not client.cancelled  # intercepted, not refused: domestic requests still go
    assert counts.new_errors() == 1
    assert_logged_safely(logs, "tls_clienthello")


def test_tls_error_after_deciding_passthrough_still_intercepts(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = Counts("tls_clienthello")
    stub_dns(monkeypatch, gateway, {PASSTHROUGH: DOMESTIC_IP})
    data, _ = client_hello(proxy, None)
    data.context.server.state = ConnectionState.OPEN  # pinning the address now raises
    proxy.fire("tls_clienthello", data)
    assert not data.ignore_connection  # it had been set just before the error
    assert counts.new_errors() == 1


def relayed(reason: str) -> float:
    return _sample("phi_gateway_tls_relayed_total", reason=reason)


def test_domestic_tls_is_relayed_pinned_and_counted(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_dns(monkeypatch, gateway, {"home.test": DOMESTIC_IP, "abroad.test": FOREIGN_IP})
    before, listed = relayed("domestic"), relayed("listed")
    home, home_client = client_hello(proxy, None, sni="home.test")  # lazy: not connected
    abroad, _ = client_hello(proxy, None, sni="abroad.test")
    for data in (home, abroad):
        proxy.fire("tls_clienthello", data)
    assert home.ignore_connection and not home_client.cancelled
    assert home.context.server.address == (DOMESTIC_IP, 443)
    assert not abroad.ignore_connection  # intercepted: its requests are judged
    assert abroad.context.server.address == ("abroad.test", 443)
    assert relayed("domestic") == before + 1
    passthrough, _ = client_hello(proxy, DOMESTIC_IP)  # proxy.tls_passthrough: "listed"
    proxy.fire("tls_clienthello", passthrough)
    assert passthrough.ignore_connection and relayed("listed") == listed + 1


def test_domestic_tls_is_decrypted_in_reverse_mode_and_when_switched_off(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    reverse, _ = client_hello(proxy, DOMESTIC_IP, sni="home.test")
    reverse.context.client.proxy_mode = ProxyMode.parse("reverse:https://home.test")
    proxy.fire("tls_clienthello", reverse)
    assert not reverse.ignore_connection  # the client talks TLS to the gateway's own name
    off = gateway.config.model_copy(
        update={"proxy": gateway.config.proxy.model_copy(update={"relay_domestic_tls": False})}
    )
    monkeypatch.setattr(gateway, "config", off)
    data, _ = client_hello(proxy, DOMESTIC_IP, sni="home.test")
    proxy.fire("tls_clienthello", data)
    assert not data.ignore_connection


def test_domestic_tls_error_intercepts_instead_of_relaying(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("tls_clienthello")
    monkeypatch.setattr(phi_gateway, "relay_tls", boom)
    data, client = client_hello(proxy, DOMESTIC_IP, sni="home.test")
    proxy.fire("tls_clienthello", data)
    assert not data.ignore_connection and not client.cancelled
    assert data.context.server.address == ("home.test", 443)  # not re-pointed either
    assert counts.new_errors() == 1
    assert_logged_safely(logs, "tls_clienthello")


# -- UDP --------------------------------------------------------------------------------------
def udp_flow(ip: str) -> tuple[udp.UDPFlow, udp.UDPMessage]:
    message = udp.UDPMessage(True, b"\xc0quic initial")  # type: ignore[no-untyped-call]
    flow = tflow.tudpflow(messages=[message])
    flow.server_conn.address = flow.server_conn.peername = (ip, 443)
    return flow, message


def test_udp_abroad_is_dropped_and_home_goes(proxy: Proxy) -> None:
    (home, home_message), (abroad, abroad_message) = udp_flow(DOMESTIC_IP), udp_flow(FOREIGN_IP)
    for flow in (home, abroad):
        proxy.fire("udp_message", flow)
    assert home_message.content == b"\xc0quic initial"
    assert abroad_message.content == b""
    assert home.messages == [] and abroad.messages == []


def test_udp_error_drops_abroad_and_forwards_home(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("udp_message")
    monkeypatch.setattr(gateway, "evaluate", boom)
    (home, home_message), (abroad, abroad_message) = udp_flow(DOMESTIC_IP), udp_flow(FOREIGN_IP)
    for flow in (home, abroad):
        proxy.fire("udp_message", flow)
    assert abroad_message.content == b""
    assert home_message.content == b"\xc0quic initial"
    assert home.messages == [] and abroad.messages == []
    assert counts.new_errors() == 2 and counts.new_undecided() == 2
    assert_logged_safely(logs, "udp_message")


def test_udp_error_before_judging_drops_the_datagram(
    proxy: Proxy, gateway: Gateway, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    counts = Counts("udp_message")
    monkeypatch.setattr(gateway, "judge", boom)
    flow, message = udp_flow(DOMESTIC_IP)
    proxy.fire("udp_message", flow)
    assert message.content == b""  # not judged domestic: dropped
    assert counts.new_errors() == 1
    assert_logged_safely(logs, "udp_message")


# -- the guard itself -------------------------------------------------------------------------
def test_a_failing_fail_closed_action_is_logged_by_type_and_never_escapes(
    proxy: Proxy,
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
) -> None:
    counts = Counts("request")
    monkeypatch.setattr(gateway, "evaluate", boom)
    monkeypatch.setattr(phi_gateway, "_respond", boom)  # the refusal itself fails too
    flow = http_flow(FOREIGN_IP)
    proxy.fire("request", flow)
    assert flow.response is None
    assert flow.error is not None and not flow.killable  # killed: never forwarded
    assert counts.new_errors() == 1
    assert "failing closed failed too, with RuntimeError; flow killed" in logs.text
    assert_logged_safely(logs, "request")


def test_websocket_phi_abroad_is_redacted_where_the_policy_says_so(
    tmp_path: Path,
) -> None:
    """A redact verdict forwards the redacted message, never the one sent."""
    patient = make_patient(7)
    mmdb = build_test_mmdb(tmp_path / "world.mmdb")
    config = parse_config(
        {
            "geo": {"databases": [{"path": str(mmdb), "answers_reserved": True}]},
            "audit": {"database": str(tmp_path / "audit.db")},
            "policy": {"foreign_phi_action": "redact"},
        }
    )
    redacting = Gateway.from_config(config)
    running = Proxy(redacting)
    try:
        flow = ws_flow(FOREIGN_IP)
        running.fire("websocket_message", flow)
        assert flow.websocket is not None
        sent = flow.websocket.messages[-1]
        assert not sent.dropped
        assert sent.content != ADT and sent.content.startswith(b"MSH|")
        assert patient.family.encode() not in sent.content
        assert patient.ssn.encode() not in sent.content
    finally:
        running.close()
        redacting.close()
