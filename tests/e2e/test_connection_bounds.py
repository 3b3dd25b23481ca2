"""Bounded connections through the real gateway: slow and silent clients are cut by their
deadlines, a hung upstream gets the client a 504, one client cannot take every connection,
and running out of descriptors never takes down /healthz (connections.* in the config)."""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams, gateway_config, trusting
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.h2client import H2Client
from tests.support.mllp import MllpReceiver, MllpSender, mllp, msa, run
from tests.support.mmdb import DOMESTIC_IP
from tests.support.patients import hl7_adt, make_patient
from tests.support.tcpsink import SilentServer
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
HEADER, IDLE, BODY, UPSTREAM = 1.0, 1.5, 1.0, 1.5
# The watch checks every quarter of the shortest timeout; a loaded 2-core machine adds more.
SLACK = 1.5
MESSAGE = hl7_adt(make_patient(900), control_id="CTL900").encode()


class Tight:
    """A gateway with second-long deadlines, an MLLP listener to a receiver that answers and
    one to a receiver that never does."""

    def __init__(self, workdir: Path, test_mmdb: Path, pki: Pki) -> None:
        self.silent = SilentServer(DOMESTIC_IP)
        self.silent_tls = SilentServer(DOMESTIC_IP, tls=pki.server_context)
        # mitmproxy offers the client what the upstream negotiated: h2 here, so the client too.
        self.silent_h2 = SilentServer(DOMESTIC_IP, tls=server_context(pki, ["h2", "http/1.1"]))
        self.slow = SilentServer(
            DOMESTIC_IP,
            reply_after=UPSTREAM * 0.6,
            reply=b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow",
        )
        self.receiver = MllpReceiver(DOMESTIC_IP)
        self.hung_receiver = SilentServer(DOMESTIC_IP)
        self.mllp_listener, self.hung_listener = free_port(), free_port()
        # The deadlines below are those of decrypted connections: the TLS upstreams are listed
        # so that the gateway decrypts their domestic TLS (a relayed stream has none).
        decrypted = [
            {"cidr": f"{DOMESTIC_IP}/32", "port": s.port, "reason": "deadlines are tested"}
            for s in (self.silent, self.silent_tls, self.silent_h2)
        ]
        config = gateway_config(
            test_mmdb,
            pki,
            proxy={"inspect_domestic": decrypted},
            connections={
                "header_seconds": HEADER,
                "idle_seconds": IDLE,
                "body_seconds": BODY,
                "min_body_bytes_per_second": 4096,
                "upstream_seconds": UPSTREAM,
            },
        )
        modes = [
            "regular",
            f"reverse:tcp://{DOMESTIC_IP}:{self.receiver.port}@{self.mllp_listener}",
            f"reverse:tcp://{DOMESTIC_IP}:{self.hung_receiver.port}@{self.hung_listener}",
        ]
        self.gateway = GatewayProcess(
            workdir, config, [arg for mode in modes for arg in ("--mode", mode)]
        )

    def timeouts(self, phase: str) -> float:
        return self.gateway.metric("phi_gateway_connection_timeouts_total", phase=phase)

    def close(self) -> None:
        self.gateway.stop()
        for server in (self.silent, self.silent_tls, self.silent_h2, self.slow, self.hung_receiver):
            server.close()
        self.receiver.close()


def server_context(pki: Pki, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.ca_pem.parent / "upstream.pem")
    context.set_alpn_protocols(alpn)
    return context


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki) -> Iterator[Tight]:
    world = Tight(tmp_path_factory.mktemp("tight"), test_mmdb, pki)
    yield world
    world.close()


def raw(port: int, source: str = DOMESTIC_IP) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the gateway closed ``sock`` (whatever it sent first), None if it did not."""
    start = time.monotonic()
    while (left := seconds - (time.monotonic() - start)) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - start
            except ConnectionError:
                return time.monotonic() - start
    return None


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head


# -- slow clients ---------------------------------------------------------------------------
def test_slowloris_headers_are_cut(tight: Tight, upstreams: Upstreams) -> None:
    before = tight.timeouts("headers")
    sock = raw(tight.gateway.port)
    sock.sendall(f"GET {upstreams.domestic.url}/slowloris HTTP/1.1\r\n".encode())
    start = time.monotonic()
    closed = None
    for n in range(30):  # a header line every 0.3 s: each byte is activity to mitmproxy
        if closed_within(sock, 0.3) is not None:
            closed = time.monotonic() - start
            break
        try:
            sock.sendall(b"X-Trickle-%d: a\r\n" % n)
        except ConnectionError:
            closed = time.monotonic() - start
            break
    sock.close()
    assert closed is not None and closed < HEADER + SLACK, closed
    assert tight.timeouts("headers") == before + 1
    assert "/slowloris" not in upstreams.domestic.paths()


def test_a_silent_new_connection_is_cut_as_idle(tight: Tight) -> None:
    before = tight.timeouts("idle")
    sock = raw(tight.gateway.port)
    took = closed_within(sock, HEADER + SLACK)
    sock.close()
    assert took is not None and took > HEADER * 0.8, took
    assert tight.timeouts("idle") == before + 1


def test_a_trickled_body_is_cut_before_it_reaches_the_server(
    tight: Tight, upstreams: Upstreams
) -> None:
    before = tight.timeouts("body")
    sock = raw(tight.gateway.port)
    sock.sendall(
        f"POST {upstreams.domestic.url}/trickle HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n".encode()
    )
    start = time.monotonic()
    closed = None
    for _ in range(30):  # a byte every 0.2 s: far below min_body_bytes_per_second
        if closed_within(sock, 0.2) is not None:
            closed = time.monotonic() - start
            break
        try:
            sock.sendall(b"x")
        except ConnectionError:
            closed = time.monotonic() - start
            break
    sock.close()
    assert closed is not None and closed < BODY + SLACK, closed
    assert tight.timeouts("body") == before + 1
    assert "/trickle" not in upstreams.domestic.paths()


def test_a_long_domestic_upload_that_keeps_moving_is_never_cut(
    tight: Tight, upstreams: Upstreams
) -> None:
    size = 2 * 1024 * 1024  # streamed: domestic and over 1 MiB
    chunks = 32

    def body() -> Iterator[bytes]:
        for _ in range(chunks):  # about 2.5 s in all: longer than body_seconds, never stalled
            time.sleep(2.5 / chunks)
            yield b"a" * (size // chunks)

    before = tight.timeouts("body")
    start = time.monotonic()
    with httpx.Client(proxy=tight.gateway.proxy_url, timeout=10) as client:
        response = client.post(
            f"{upstreams.domestic.url}/upload",
            content=body(),
            headers={"content-length": str(size), "content-type": "application/octet-stream"},
        )
    assert response.status_code == 200
    assert time.monotonic() - start > BODY * 2
    assert [len(r.body) for r in upstreams.domestic.received if r.path == "/upload"] == [size]
    assert tight.timeouts("body") == before


def test_keep_alive_serves_within_the_idle_time_then_closes(
    tight: Tight, upstreams: Upstreams
) -> None:
    before = tight.timeouts("idle")
    sock = raw(tight.gateway.port)
    request = f"GET {upstreams.domestic.url}/kept HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    sock.sendall(request)
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    time.sleep(IDLE * 0.5)
    sock.sendall(request)  # reused within the idle time: served
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    answered = time.monotonic()
    took = closed_within(sock, IDLE + SLACK)
    sock.close()
    assert took is not None, "an idle kept-alive connection stayed open"
    assert time.monotonic() - answered > IDLE * 0.8
    assert tight.timeouts("idle") == before + 1


# -- upstreams ------------------------------------------------------------------------------
def test_a_hung_upstream_gets_the_client_a_504(tight: Tight) -> None:
    before = tight.timeouts("upstream")
    start = time.monotonic()
    with httpx.Client(proxy=tight.gateway.proxy_url, timeout=10) as client:
        response = client.post(
            f"http://{DOMESTIC_IP}:{tight.silent.port}/hang", content=b'{"resourceType": "X"}'
        )
    took = time.monotonic() - start
    assert response.status_code == 504
    assert json.loads(response.content)["error"] == "upstream-timeout"
    assert UPSTREAM * 0.8 < took < UPSTREAM + SLACK, took
    assert b"POST /hang" in bytes(tight.silent.data)  # it had the request
    assert tight.timeouts("upstream") == before + 1


def test_a_hung_https_upstream_gets_a_504(tight: Tight) -> None:
    before = tight.timeouts("upstream")
    with httpx.Client(
        proxy=tight.gateway.proxy_url, verify=trusting(tight.gateway), timeout=10
    ) as client:
        response = client.get(f"https://{DOMESTIC_IP}:{tight.silent_tls.port}/hang-tls")
    assert response.status_code == 504
    assert json.loads(response.content)["error"] == "upstream-timeout"
    assert tight.timeouts("upstream") == before + 1


@pytest.mark.parametrize("upstream_h2", [False, True], ids=["to-http1", "to-http2"])
def test_an_http2_client_gets_its_504_over_http2(tight: Tight, upstream_h2: bool) -> None:
    before = tight.timeouts("upstream")
    upstream = tight.silent_h2 if upstream_h2 else tight.silent_tls
    client = H2Client(tight.gateway.port, DOMESTIC_IP, upstream.port, trusting(tight.gateway))
    try:
        response = client.post("/hang-h2", b"{}")
    finally:
        client.close()
    assert response.status == 504
    assert json.loads(response.body)["error"] == "upstream-timeout"
    assert tight.timeouts("upstream") == before + 1


def test_an_upstream_stuck_in_its_tls_handshake_is_cut_with_a_502(tight: Tight) -> None:
    """Before the connection is open there is nothing to answer for: mitmproxy's 502 stands,
    at the same deadline."""
    before = tight.timeouts("upstream")
    start = time.monotonic()
    with httpx.Client(
        proxy=tight.gateway.proxy_url, verify=trusting(tight.gateway), timeout=10
    ) as client:
        response = client.get(f"https://{DOMESTIC_IP}:{tight.silent.port}/no-handshake")
    assert response.status_code == 502
    assert time.monotonic() - start < UPSTREAM + SLACK
    assert tight.timeouts("upstream") == before + 1


def test_a_slow_upstream_within_its_time_is_answered(tight: Tight) -> None:
    before = tight.timeouts("upstream")
    with httpx.Client(proxy=tight.gateway.proxy_url, timeout=10) as client:
        response = client.get(f"http://{DOMESTIC_IP}:{tight.slow.port}/slow")
    assert (response.status_code, response.content) == (200, b"slow")
    assert tight.timeouts("upstream") == before


# -- MLLP -----------------------------------------------------------------------------------
def test_an_mllp_sender_may_wait_before_its_first_message(tight: Tight) -> None:
    async def talk() -> bytes:
        sender = await MllpSender.open(tight.mllp_listener)
        time.sleep(HEADER + IDLE)  # past every HTTP deadline: a stream has none
        ack = await sender.exchange(MESSAGE)
        await sender.close()
        return ack

    assert msa(run(talk()))[1] == b"AA"
    assert mllp(MESSAGE) in bytes(tight.receiver.data)


def test_an_mllp_receiver_that_never_acks_is_closed(tight: Tight) -> None:
    before = tight.timeouts("upstream")
    sock = raw(tight.hung_listener)
    sock.sendall(mllp(MESSAGE))
    took = closed_within(sock, UPSTREAM + SLACK + 1)
    sock.close()
    assert took is not None and took > UPSTREAM * 0.8, took
    assert tight.timeouts("upstream") == before + 1
    assert b"CTL900" in bytes(tight.hung_receiver.data)


# -- caps and descriptors -------------------------------------------------------------------
PER_CLIENT = 20
NOFILE = 256


@pytest.fixture(scope="module")
def capped(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    """A gateway under RLIMIT_NOFILE 256 (global cap derived: about 88 connections)."""
    config = gateway_config(
        test_mmdb,
        pki,
        connections={"max_per_client": PER_CLIENT, "header_seconds": 30, "idle_seconds": 30},
    )
    process = GatewayProcess(tmp_path_factory.mktemp("capped"), config, nofile=NOFILE)
    yield process
    process.stop()


def hold(port: int, sources: list[str], each: int) -> list[socket.socket]:
    held = []
    for source in sources:
        for _ in range(each):
            held.append(raw(port, source))
    return held


def closed_by_gateway(sockets: list[socket.socket], wait: float) -> int:
    """How many of ``sockets`` the gateway closed within ``wait`` seconds (they send nothing)."""
    deadline = time.monotonic() + wait
    closed: set[int] = set()
    while time.monotonic() < deadline and len(closed) < len(sockets):
        ready, _, _ = select.select([s for s in sockets if s.fileno() not in closed], [], [], 0.2)
        for sock in ready:
            try:
                data = sock.recv(1)
            except ConnectionError:
                data = b""
            if not data:
                closed.add(sock.fileno())
    return len(closed)


def refused(gateway: GatewayProcess, reason: str) -> float:
    return gateway.metric("phi_gateway_connections_refused_total", reason=reason)


def domestic_requests(gateway: GatewayProcess, upstreams: Upstreams, count: int) -> list[int]:
    codes = []
    for n in range(count):  # a new connection each time, from another client
        with httpx.Client(proxy=gateway.proxy_url, timeout=5) as client:
            codes.append(client.get(f"{upstreams.domestic.url}/served-{n}").status_code)
    return codes


def test_one_client_is_capped_while_another_is_served(
    capped: GatewayProcess, upstreams: Upstreams
) -> None:
    before = refused(capped, "per-client")
    hog = hold(capped.port, ["127.0.0.9"], 60)
    try:
        assert closed_by_gateway(hog, 3) == 60 - PER_CLIENT
        assert refused(capped, "per-client") == before + 60 - PER_CLIENT
        assert domestic_requests(capped, upstreams, 10) == [200] * 10
        assert capped.admin_get("/healthz") == (200, "ok\n")
        assert capped.metric("phi_gateway_client_connections") >= PER_CLIENT
    finally:
        for sock in hog:
            sock.close()


def test_descriptors_never_run_out_and_health_stays_up(
    capped: GatewayProcess, upstreams: Upstreams
) -> None:
    limit = capped.metric("phi_gateway_client_connections_limit")
    assert 0 < limit < NOFILE / 2  # derived from RLIMIT_NOFILE, less the reserve
    log_before = capped.log_path.stat().st_size
    before = refused(capped, "global")
    sources = [f"127.0.0.{n}" for n in range(10, 30)]  # twenty clients, 15 sockets each
    hogs = hold(capped.port, sources, 15)
    try:
        closed = closed_by_gateway(hogs, 3)
        assert closed >= len(hogs) - limit
        assert refused(capped, "global") >= before + len(hogs) - limit
        open_descriptors = len(os.listdir(f"/proc/{capped.proc.pid}/fd"))
        assert open_descriptors < NOFILE - 16, open_descriptors
        for path in ("/healthz", "/readyz", "/metrics"):
            assert capped.admin_get(path)[0] == 200, path
    finally:
        for sock in hogs:
            sock.close()
    deadline = time.monotonic() + 5
    while capped.metric("phi_gateway_client_connections") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert domestic_requests(capped, upstreams, 5) == [200] * 5
    grown = capped.output()[log_before:]
    assert "Traceback" not in grown
    assert len(grown) < 2000, grown  # one line per kind, not one per refusal
