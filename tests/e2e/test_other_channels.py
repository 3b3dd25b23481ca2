"""Paths around the plain HTTP body: transfer codings, WebSocket, raw TCP and the deny-list."""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import GatewayProcess
from tests.support.mllp import MllpSender, msa, run
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP
from tests.support.patients import hl7_adt, make_patient
from tests.support.tcpsink import TcpSink, send_through_tunnel
from tests.support.upstream import Pki
from tests.support.wsserver import WebSocketSink, websocket_exchange

pytestmark = pytest.mark.e2e
ADT = hl7_adt(make_patient(21))


def raw_post(gateway: GatewayProcess, url: str, headers: str, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(
            f"POST {url} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode() + body
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def test_transfer_coding_gzip_is_undone(gateway: GatewayProcess, upstreams: Upstreams) -> None:
    packed = gzip.compress(ADT.encode())
    chunked = f"{len(packed):x}\r\n".encode() + packed + b"\r\n0\r\n\r\n"
    reply = raw_post(
        gateway, f"{upstreams.foreign.url}/te-gzip", "Transfer-Encoding: gzip, chunked\r\n", chunked
    )
    assert reply.startswith(b"HTTP/1.1 451")
    assert "/te-gzip" not in upstreams.foreign.paths()


def test_websocket_messages_are_inspected(gateway: GatewayProcess) -> None:
    abroad = WebSocketSink(FOREIGN_IP)
    home = WebSocketSink(DOMESTIC_IP)
    try:
        replies = websocket_exchange(
            gateway.port, FOREIGN_IP, abroad.port, ["hello, no patients here", ADT, "still fine"]
        )
        assert abroad.messages == [b"hello, no patients here", b"still fine"]
        assert len(replies) == 2
        websocket_exchange(gateway.port, DOMESTIC_IP, home.port, [ADT])
        assert home.messages == [ADT.encode()]
    finally:
        abroad.close()
        home.close()


def test_deny_list_applies_to_mllp_and_raw_tcp(tmp_path: Path, test_mmdb: Path, pki: Pki) -> None:
    process = GatewayProcess(
        tmp_path,
        gateway_config(
            test_mmdb,
            pki,
            policy={
                "deny_destinations": [{"cidr": f"{DOMESTIC_IP}/32", "reason": "contract ended"}]
            },
        ),
    )
    sink = TcpSink(DOMESTIC_IP)
    try:

        async def talk() -> bytes:
            sender = await MllpSender.open(process.port, tunnel_to=(DOMESTIC_IP, sink.port))
            ack = await sender.exchange(ADT)
            await sender.close()
            return ack

        assert msa(run(talk()))[1] == b"AR"
        send_through_tunnel(process.port, DOMESTIC_IP, sink.port, b"\x00raw " + ADT.encode())
        time.sleep(0.2)
        assert b"PID" not in sink.data
        rows = process.audit_rows(wait_for=2)
        assert [(r["rule"], r["protocol"]) for r in rows] == [
            ("deny-list", "mllp"),
            ("deny-list", "tcp"),
        ]
    finally:
        sink.sock.close()
        process.stop()
