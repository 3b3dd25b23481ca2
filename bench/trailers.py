"""``python -m bench.trailers``: how long an HTTP/1.1 client waits for an answer to a chunked
request with a trailer section, at home and abroad.

Issue 18's case: a fresh ``phi-gateway run`` and two loopback receivers (domestic 127.0.0.1,
foreign 127.0.0.2 by a test MaxMind database); raw-socket chunked POSTs without trailers, with
an announced clean trailer (``Trailer: X-Checksum``), with an announced trailer holding a
synthetic patient's name and MRN, and with an unannounced one. Each line shows the status line
the client read (or that it read none) and the time from sending to reading it, ``--repeat``
times (default 3), each with a client timeout of ``--timeout`` seconds (default 40, above the
gateway's body deadline). No payload content is printed.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from pathlib import Path

from tests.support.gateway_process import GatewayProcess
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP, build_test_mmdb
from tests.support.patients import make_patient
from tests.support.upstream import RecordingServer

PATIENT = make_patient(1805)
BODY = b'{"invoice": "2026-11", "amount": 120.5}'
CASES = {
    "no trailer": ("", ""),
    "clean trailer": ("X-Checksum", "sha256=5f1e"),
    "PHI trailer": ("X-Note", f"Patient: {PATIENT.given} {PATIENT.family} MRN {PATIENT.mrn}"),
    "unannounced": ("", "sha256=5f1e"),
}


def request(name: str, value: str, url: str) -> bytes:
    head = (
        f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n" + (f"Trailer: {name}\r\n" if name else "") + "\r\n"
    )
    trailer = f"{name or 'X-Checksum'}: {value}\r\n" if value else ""
    chunks = f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n" + trailer.encode() + b"\r\n"
    return head.encode() + chunks


def timed(port: int, data: bytes, timeout: float) -> tuple[str, float]:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while b"\r\n" not in reply and (chunk := sock.recv(4096)):
                reply += chunk
        except TimeoutError:
            return f"no answer within {timeout:g} s", time.perf_counter() - start
    status = reply.split(b"\r\n", 1)[0].decode(errors="replace")
    return status or "closed without an answer", time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=40.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    receivers = {"home": RecordingServer(DOMESTIC_IP), "abroad": RecordingServer(FOREIGN_IP)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mmdb = build_test_mmdb(work / "world.mmdb")
        config = {"geo": {"databases": [{"path": str(mmdb), "answers_reserved": True}]}}
        gateway = GatewayProcess(work / "gateway", config)
        try:
            for case, (name, value) in CASES.items():
                for where, receiver in receivers.items():
                    data = request(name, value, f"{receiver.url}/bench/trailers")
                    for _ in range(args.repeat):
                        status, took = timed(gateway.port, data, args.timeout)
                        print(f"{case:14} {where:7} {status:44} {took * 1000:10.1f} ms")
        finally:
            gateway.stop()
            for receiver in receivers.values():
                receiver.close()


if __name__ == "__main__":
    main()
