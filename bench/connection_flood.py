"""``python -m bench.connection_flood``: one client floods the gateway with idle sockets.

The case of issue 15: a fresh ``phi-gateway run`` under a lowered ``RLIMIT_NOFILE``
(``--nofile``, default 1,024), one client (127.0.0.9) opening ``--sockets`` idle connections
(default 1,100), then, from another address, ten domestic requests on new connections and
``/healthz``; the gateway's descriptors, the refusals it counted and how much it logged in
the next five seconds are printed. Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.mmdb import build_test_mmdb
from tests.support.upstream import RecordingServer

HOG = "127.0.0.9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--sockets", type=int, default=1100)
    args = parser.parse_args()
    upstream = RecordingServer("127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mmdb = build_test_mmdb(work / "world.mmdb")
        config = {"geo": {"databases": [{"path": str(mmdb), "answers_reserved": True}]}}
        gateway = GatewayProcess(work / "gateway", config, nofile=args.nofile)
        try:
            run(gateway, upstream, args.sockets)
        finally:
            gateway.stop()
            upstream.close()


def run(gateway: GatewayProcess, upstream: RecordingServer, count: int) -> None:
    descriptors = f"/proc/{gateway.proc.pid}/fd"
    print(f"RLIMIT_NOFILE {gateway_limit(gateway.proc.pid)}; {len(os.listdir(descriptors))} open")
    hog: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((HOG, 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", gateway.port))
        except OSError as exc:
            print(f"the client's connect failed after {len(hog)} sockets: {exc}")
            sock.close()
            break
        hog.append(sock)
    time.sleep(2)
    print(f"{len(hog)} idle sockets from {HOG}; gateway descriptors {len(os.listdir(descriptors))}")
    served, start = 0, time.monotonic()
    for n in range(10):
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(proxy=gateway.proxy_url, timeout=3) as client,
        ):
            served += client.get(f"{upstream.url}/flood-{n}").status_code == 200
    print(f"domestic requests from 127.0.0.1: {served}/10 in {time.monotonic() - start:.1f} s")
    try:
        print(f"/healthz: {gateway.admin_get('/healthz')[0]}")
    except OSError as exc:
        print(f"/healthz: failed ({exc})")
    with contextlib.suppress(OSError):
        for reason in ("per-client", "global", "descriptors"):
            refused = gateway.metric("phi_gateway_connections_refused_total", reason=reason)
            print(f"refused ({reason}): {refused:.0f}")
    size = gateway.log_path.stat().st_size
    time.sleep(5)
    grown = gateway.log_path.stat().st_size - size
    print(f"log: {grown} bytes in the next 5 s, {gateway.log_path.stat().st_size} in all")
    for sock in hog:
        sock.close()


def gateway_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3]
    return "?"


if __name__ == "__main__":
    main()
