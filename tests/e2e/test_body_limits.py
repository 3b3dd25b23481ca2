"""Bodies bound abroad are bounded while they arrive: one past limits.max_body_bytes is refused
at its first bytes (declared length) or as soon as its arriving bytes pass it (chunked), and
all bodies held for inspection together stay under limits.max_buffered_body_bytes, so the
gateway's memory does not grow with the number of concurrent uploads abroad. Domestic bulk is
streamed and never limited. Every refusal is a counted, audited block; no PHI leaves."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import GatewayProcess
from tests.support.patients import hl7_adt, make_patient
from tests.support.upstream import Pki

pytestmark = pytest.mark.e2e
MB = 1024 * 1024


@pytest.fixture(scope="module")
def bounded(
    tmp_path_factory: pytest.TempPathFactory, test_mmdb: Path, pki: Pki
) -> Iterator[GatewayProcess]:
    config = gateway_config(
        test_mmdb,
        pki,
        limits={"max_body_bytes": 32 * MB, "max_buffered_body_bytes": 64 * MB},
    )
    process = GatewayProcess(tmp_path_factory.mktemp("bounded"), config)
    yield process
    process.stop()


def _memory(pid: int, field: str) -> int:
    """VmRSS or VmHWM (the peak) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _phi_body(size: int) -> bytes:
    message = hl7_adt(make_patient(2101)).encode()
    return message + b"\r" + b"NTE|1||" + b"x" * (size - len(message) - 8)


def test_a_declared_length_past_the_limit_is_refused_before_the_body_arrives(
    bounded: GatewayProcess, upstreams: Upstreams
) -> None:
    host, port = upstreams.foreign.url.removeprefix("http://").split(":")
    with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as sock:
        sock.sendall(
            f"POST http://{host}:{port}/huge HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {400 * MB}\r\n\r\n".encode()
        )
        sock.sendall(b"MSH|" + b"\0" * 65536)  # the first bytes of 400 MB
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "limits.max_body_bytes" in answer and "incident INC-" in answer
    assert not any(r.path == "/huge" for r in upstreams.foreign.received)
    incident = answer.split("incident ")[1].split(")")[0]
    row = bounded.audit_row(incident)
    assert row["action"] == "block" and "max_body_bytes" in row["error"]
    assert bounded.metric("phi_gateway_limit_exceeded_total", limit="max_body_bytes") >= 1


def test_a_chunked_body_is_cut_when_its_bytes_pass_the_limit(
    bounded: GatewayProcess, upstreams: Upstreams
) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 64 MB in 1 MB chunks, no Content-Length
            sent += MB
            yield b"y" * MB

    with httpx.Client(proxy=bounded.proxy_url, timeout=30) as client:
        try:
            answer = client.post(f"{upstreams.foreign.url}/chunked", content=chunks())
            status = answer.status_code
        except httpx.HTTPError:
            status = 0  # the gateway answered and closed while we were still sending
    assert status in (413, 0)
    assert sent < 64 * MB, "the whole body was taken in"
    assert not any(r.path == "/chunked" for r in upstreams.foreign.received)


def test_memory_does_not_grow_with_concurrent_uploads_abroad(
    bounded: GatewayProcess, upstreams: Upstreams
) -> None:
    body = _phi_body(25 * MB)
    before = _memory(bounded.proc.pid, "VmRSS")
    statuses: list[int] = []
    home: list[int] = []

    def upload(number: int) -> None:
        with httpx.Client(proxy=bounded.proxy_url, timeout=120) as client:
            try:
                answer = client.post(f"{upstreams.foreign.url}/up{number}", content=body)
                statuses.append(answer.status_code)
            except httpx.HTTPError:
                statuses.append(0)  # cut while sending: refused all the same

    def domestic() -> None:
        with httpx.Client(proxy=bounded.proxy_url, timeout=30) as client:
            for number in range(10):
                home.append(
                    client.post(f"{upstreams.domestic.url}/h{number}", content=b"ok").status_code
                )
                time.sleep(0.2)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(32)]
    threads.append(threading.Thread(target=domestic))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    peak = _memory(bounded.proc.pid, "VmHWM")
    assert len(statuses) == 32 and set(statuses) <= {413, 451, 0}, statuses
    assert statuses.count(413) > 0  # the budget did its work
    assert home == [200] * 10
    assert not any(r.path.startswith("/up") for r in upstreams.foreign.received)
    # Unbounded, 32 bodies of 25 MB held at ~2.4x their size would take ~1.9 GB.
    assert peak - before < 400 * MB, f"peak {peak / MB:.0f} MB, before {before / MB:.0f} MB"
    # Domestic bulk is streamed, not limited.
    with httpx.Client(proxy=bounded.proxy_url, timeout=60) as client:
        big = client.post(f"{upstreams.domestic.url}/bulk", content=b"z" * (40 * MB))
    assert big.status_code == 200
