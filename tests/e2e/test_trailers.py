"""Request trailers through the real gateway. HTTP/2: trailers carrying a patient (a note, an
id_token) are refused abroad with nothing reaching the receiver and recorded; clean ones (a
checksum) are forwarded abroad; at home everything arrives as sent, trailers included.
HTTP/1.1 trailers, which mitmproxy 12 cannot forward, are answered at once instead of holding
the client until a deadline: 451 for PHI abroad, else 501; ordinary chunked uploads pass."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Upstreams, trusting, trusting_both
from tests.support.gateway_process import GatewayProcess
from tests.support.h2client import H2Client, H2Response
from tests.support.h2server import H2RecordingServer
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP
from tests.support.patients import make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
PATIENT = make_patient(1804)
BODY = b'{"invoice": "2026-11", "amount": 120.5}'
CHECKSUM = "sha256=" + hashlib.sha256(BODY).hexdigest()
# A clear answer arrives in well under this; the hang it replaces lasted until a deadline.
PROMPT_SECONDS = 3.0


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


NOTE = f"Patient: {PATIENT.given} {PATIENT.family} MRN {PATIENT.mrn}"
ID_TOKEN = _jwt(
    {"sub": "1", "name": f"{PATIENT.given} {PATIENT.family}", "birthdate": PATIENT.birth_date_iso}
)
PHI_TRAILERS = {"note": ("x-note", NOTE), "id-token": ("x-id-token", ID_TOKEN)}
CLEAN_TRAILERS = [("x-checksum", CHECKSUM), ("x-record-count", "1")]


class H2Upstreams:
    def __init__(self, pki: Pki) -> None:
        self.domestic = H2RecordingServer(DOMESTIC_IP, pki.server_pem)
        self.foreign = H2RecordingServer(FOREIGN_IP, pki.server_pem)


@pytest.fixture(scope="module")
def h2_upstreams(pki: Pki) -> Iterator[H2Upstreams]:
    servers = H2Upstreams(pki)
    yield servers
    servers.domestic.close()
    servers.foreign.close()


def _h2_post(
    gateway: GatewayProcess,
    server: H2RecordingServer | tuple[str, int],
    path: str,
    trailers: list[tuple[str, str]],
    verify: ssl.SSLContext | None = None,
) -> tuple[H2Response, float]:
    host, port = (server.host, server.port) if isinstance(server, H2RecordingServer) else server
    h2 = H2Client(gateway.port, host, port, verify or trusting(gateway))
    try:
        start = time.perf_counter()
        answer = h2.post(path, BODY, [("content-type", "application/json")], trailers)
        return answer, time.perf_counter() - start
    finally:
        h2.close()


def _seen(*servers: object) -> str:
    return " ".join(
        f"{r.path} {r.headers} {r.trailers} {r.body!r}"
        for server in servers
        for r in getattr(server, "received", [])
    )


@pytest.mark.parametrize("case", sorted(PHI_TRAILERS))
def test_http2_trailers_holding_a_patient_are_refused_abroad_and_recorded(
    gateway: GatewayProcess, h2_upstreams: H2Upstreams, case: str
) -> None:
    answer, _ = _h2_post(gateway, h2_upstreams.foreign, f"/h2trailers/{case}", [PHI_TRAILERS[case]])
    assert answer.status == 451
    assert f"/h2trailers/{case}" not in h2_upstreams.foreign.paths()
    leaked = _seen(h2_upstreams.foreign)
    assert PATIENT.family not in leaked and PATIENT.mrn not in leaked
    row = gateway.audit_row(answer.headers["x-phi-gateway-incident"])
    assert row["action"] == "block" and row["location"] == "foreign"
    locations = json.loads(row["locations"])
    assert locations and all(w.startswith("trailer") for w in locations), locations
    assert PATIENT.family not in json.dumps(row) and PATIENT.mrn not in json.dumps(row)


def test_http2_clean_trailers_are_forwarded_abroad_as_sent(
    gateway: GatewayProcess, h2_upstreams: H2Upstreams
) -> None:
    answer, _ = _h2_post(gateway, h2_upstreams.foreign, "/h2trailers/clean", CLEAN_TRAILERS)
    assert answer.status == 200
    arrived = h2_upstreams.foreign.first_at("/h2trailers/clean")
    assert arrived.body == BODY and arrived.trailers == dict(CLEAN_TRAILERS)


@pytest.mark.parametrize("way", ["relayed", "decrypted"])
def test_http2_trailers_arrive_at_home_as_sent(
    request: pytest.FixtureRequest, h2_upstreams: H2Upstreams, way: str
) -> None:
    """Relayed (the default: the gateway never sees them) and decrypted
    (relay_domestic_tls: false: forwarded uninspected) alike."""
    if way == "relayed":
        gateway: GatewayProcess = request.getfixturevalue("gateway")
        verify = trusting_both(gateway)
    else:
        gateway = request.getfixturevalue("decrypting_gateway")
        verify = trusting(gateway)
    sent = [PHI_TRAILERS["note"], PHI_TRAILERS["id-token"], *CLEAN_TRAILERS]
    path = f"/h2trailers/home/{way}"
    answer, _ = _h2_post(gateway, h2_upstreams.domestic, path, sent, verify)
    assert answer.status == 200
    arrived = h2_upstreams.domestic.first_at(path)
    assert arrived.body == BODY and arrived.trailers == dict(sent)


def test_http2_trailers_bound_for_an_http1_server_are_answered_502(
    gateway: GatewayProcess, decrypting_gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    # At home only where the gateway decrypts domestic TLS (relayed, it is not in the way).
    for proxy, server in (
        (decrypting_gateway, upstreams.domestic_tls),
        (gateway, upstreams.foreign_tls),
    ):
        before = proxy.metric(
            "phi_gateway_requests_unforwardable_total", reason="trailers-to-http1-server"
        )
        target = (server.host, server.port)
        answer, took = _h2_post(proxy, target, "/h2trailers/to-http1", CLEAN_TRAILERS)
        assert answer.status == 502 and took < PROMPT_SECONDS, (answer.status, took)
        assert b"trailers cannot be forwarded" in answer.body
        assert "/h2trailers/to-http1" not in server.paths()  # refused before a byte was sent
        after = proxy.metric(
            "phi_gateway_requests_unforwardable_total", reason="trailers-to-http1-server"
        )
        assert after == before + 1


def _raw_http1(
    gateway: GatewayProcess, url: str, chunks: bytes, announce: str = "X-Note"
) -> tuple[bytes, float]:
    """A chunked POST through the proxy; ``chunks``: the body as sent, last chunk included."""
    head = (
        f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n"
        + (f"Trailer: {announce}\r\n" if announce else "")
        + "Connection: close\r\n\r\n"
    )
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(head.encode() + chunks)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply, time.perf_counter() - start


def _chunked(trailers: list[tuple[str, str]]) -> bytes:
    section = "".join(f"{name}: {value}\r\n" for name, value in trailers)
    return f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n" + section.encode() + b"\r\n"


def test_http1_trailers_with_a_patient_are_refused_abroad_at_once(
    gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    url = f"{upstreams.foreign.url}/h1trailers/phi"
    reply, took = _raw_http1(gateway, url, _chunked([("X-Note", NOTE)]))
    assert reply.startswith(b"HTTP/1.1 451") and took < PROMPT_SECONDS, (reply[:12], took)
    assert "/h1trailers/phi" not in upstreams.foreign.paths()
    head = reply.split(b"\r\n\r\n", 1)[0].decode()
    incident = next(
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("x-phi-gateway-incident:")
    )
    row = gateway.audit_row(incident)
    assert row["action"] == "block" and json.loads(row["locations"])
    assert all(w.startswith("trailer") for w in json.loads(row["locations"]))


def test_http1_trailers_are_answered_501_at_once_at_home_and_clean_abroad(
    gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    before = gateway.metric("phi_gateway_requests_unforwardable_total", reason="http1-trailers")
    cases = [
        (upstreams.domestic, [("X-Note", NOTE)], "X-Note"),
        (upstreams.domestic, [("X-Checksum", CHECKSUM)], "X-Checksum"),
        (upstreams.foreign, [("X-Checksum", CHECKSUM)], "X-Checksum"),
    ]
    for n, (server, trailers, announce) in enumerate(cases):
        path = f"/h1trailers/unforwardable-{n}"
        reply, took = _raw_http1(gateway, server.url + path, _chunked(trailers), announce)
        assert reply.startswith(b"HTTP/1.1 501") and took < PROMPT_SECONDS, (reply[:12], took)
        assert b"trailers cannot be forwarded" in reply
        assert path not in server.paths()  # announced: held, so nothing of it left
    after = gateway.metric("phi_gateway_requests_unforwardable_total", reason="http1-trailers")
    assert after == before + len(cases)


def test_unannounced_http1_trailers_after_a_streamed_body_get_a_prompt_502(
    gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    # Unannounced at home: the body streams on before the trailers show; the server's
    # connection is cut and the client answered.
    url = f"{upstreams.domestic.url}/h1trailers/unannounced"
    reply, took = _raw_http1(gateway, url, _chunked([("X-Checksum", CHECKSUM)]), announce="")
    assert reply.startswith(b"HTTP/1.1 502") and took < PROMPT_SECONDS, (reply[:12], took)
    assert all(not r.trailers for r in upstreams.domestic.received)


def test_chunked_uploads_without_trailers_still_pass(
    client: httpx.Client, gateway: GatewayProcess, upstreams: Upstreams
) -> None:
    def chunks() -> Iterator[bytes]:
        yield BODY[:10]
        yield BODY[10:]

    for server in (upstreams.foreign, upstreams.domestic):
        answer = client.post(f"{server.url}/chunked-plain", content=chunks())
        assert answer.status_code == 200
        assert server.received[-1].path == "/chunked-plain" and server.received[-1].body == BODY
    # Announced trailers that never come: forwarded abroad, held and forwarded at home.
    for server in (upstreams.foreign, upstreams.domestic):
        url = f"{server.url}/chunked-announced"
        reply, _ = _raw_http1(gateway, url, _chunked([]), announce="X-Checksum")
        assert reply.startswith(b"HTTP/1.1 200"), reply[:12]
        assert server.received[-1].path == "/chunked-announced"
        assert server.received[-1].body == BODY
    # A large domestic chunked upload is still streamed, and arrives whole.
    large = b"x" * (3 * 1024 * 1024)
    answer = client.post(
        f"{upstreams.domestic.url}/chunked-large",
        content=iter([large[: len(large) // 2], large[len(large) // 2 :]]),
    )
    assert answer.status_code == 200 and upstreams.domestic.received[-1].body == large
