"""``python -m bench.mllp``: HL7 v2 over MLLP, gateway vs bare mitmdump ``reverse:tcp``.

Same run, same receiver, same load: an MLLP receiver (its own process) ACKs every frame; for
each scenario a fresh bare ``mitmdump --mode reverse:tcp://…`` and then a fresh
``phi-gateway run`` with the same mode relay ``--connections`` long-lived sender connections,
each sending one ~2 KB ADT^A01 and waiting for its ACK before the next (as interface engines
do). Prints messages/s, round-trip latency (send → ACK) and CPU per message, and the ratio.

Scenarios: ``foreign`` (receiver on 127.0.0.2, placed in India; the gateway runs in monitor
mode, so every frame is framed, inspected, found to be PHI, audited and still forwarded: the
worst case) and ``domestic`` (127.0.0.1: relayed without framing or inspection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.payloads import hl7_adt_2k
from bench.procs import (
    REPO,
    Processes,
    Proxy,
    cpu_seconds,
    start_bare,
    start_gateway,
    write_gateway_config,
)

SB, EB = b"\x0b", b"\x1c\r"
ACK = SB + b"MSH|^~\\&|RECV|SITE|SEND|SITE|20240101000000||ACK|R1|P|2.5\rMSA|AA|BENCH0001\r" + EB
TARGETS = {"foreign": "127.0.0.2", "domestic": "127.0.0.1"}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pending = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            pending += chunk
            frames = pending.count(EB)
            if frames:
                pending = pending[pending.rfind(EB) + 2 :]
                writer.write(ACK * frames)
                await writer.drain()
    writer.close()


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# One sender connection: (proxy port, until, warm until, the result to count into).
Sender = Callable[[int, float, float, "Result"], Awaitable[None]]


async def receiver(hosts: list[str], serve: Serve = _serve) -> None:
    """The receiver process: ``serve`` every connection, on one port for all hosts (MLLP:
    ACK every frame); the port is printed for ``start_receiver``."""
    first = await asyncio.start_server(serve, hosts[0], 0)
    port = first.sockets[0].getsockname()[1]
    others = [await asyncio.start_server(serve, h, port) for h in hosts[1:]]
    print(port, flush=True)
    async with first:
        await first.serve_forever()
    del others


def start_receiver(procs: Processes, module: str, hosts: list[str]) -> int:
    """``python -m module --receiver hosts...`` as a process of its own: the port it serves."""
    child = procs.start(
        f"{module.rsplit('.', 1)[-1]}-receiver",
        [sys.executable, "-m", module, "--receiver", *hosts],
        cwd=REPO,
    )
    deadline = time.monotonic() + 10
    while not (text := child.log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(text.splitlines()[0])


@dataclass
class Result:
    messages: int
    seconds: float
    latencies: list[float]
    cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def _sender(port: int, until: float, warm_until: float, out: Result, frame: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    buffer = b""
    try:
        while (now := time.perf_counter()) < until:
            writer.write(frame)
            await writer.drain()
            while EB not in buffer:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("the proxy closed the connection")
                buffer += chunk
            buffer = buffer[buffer.find(EB) + 2 :]
            if now >= warm_until:
                out.messages += 1
                out.latencies.append(time.perf_counter() - now)
    finally:
        writer.close()


def drive(proxy: Proxy, sender: Sender, connections: int, seconds: float, warmup: float) -> Result:
    """``connections`` senders through the proxy for ``seconds`` after ``warmup``: messages,
    latencies and the proxy's CPU time over the measured window."""
    result = Result(0, seconds, [], 0.0)

    async def load() -> None:
        start = time.perf_counter()
        warm_until, until = start + warmup, start + warmup + seconds
        await asyncio.gather(
            *(sender(proxy.port, until, warm_until, result) for _ in range(connections))
        )

    cpu_before: float | None = None

    async def measure() -> None:
        nonlocal cpu_before
        await asyncio.sleep(warmup)
        cpu_before = cpu_seconds(proxy.child.pid)

    async def both() -> None:
        await asyncio.gather(load(), measure())

    asyncio.run(both())
    assert cpu_before is not None
    result.cpu = cpu_seconds(proxy.child.pid) - cpu_before
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mllp", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=8, help="measured seconds per run")
    parser.add_argument("--connections", type=int, default=4, help="sender connections")
    parser.add_argument("--scenario", choices=sorted(TARGETS), action="append")
    parser.add_argument("--receiver", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        asyncio.run(receiver(args.receiver))
        return 0
    frame = SB + hl7_adt_2k() + EB
    with tempfile.TemporaryDirectory(prefix="bench-mllp-") as tmp_name:
        tmp = Path(tmp_name)
        procs = Processes(tmp)
        try:
            return _run(args, procs, tmp, frame)
        finally:
            procs.stop_all()


def _run(args: argparse.Namespace, procs: Processes, tmp: Path, frame: bytes) -> int:
    port = start_receiver(procs, "bench.mllp", list(TARGETS.values()))
    config = write_gateway_config(tmp)
    print(
        f"MLLP: {len(frame)} B ADT^A01 frames, {args.connections} connections, one message "
        f"in flight per connection, {args.duration:g} s per run",
        flush=True,
    )
    header = (
        f"{'scenario':<9} {'bare msg/s':>10} {'gw msg/s':>9} {'gw/bare':>8} "
        f"{'p50 ms b/g':>11} {'p99 ms b/g':>11} {'cpu ms/msg b/g':>15}"
    )
    print(header)
    for scenario in args.scenario or ["foreign", "domestic"]:
        target = f"tcp://{TARGETS[scenario]}:{port}"
        results = {}
        for kind in ("bare", "gateway"):
            if kind == "bare":
                proxy = start_bare(procs, target, tmp / "mitmproxy-bare")
            else:
                proxy = start_gateway(procs, config, target)
            try:
                sender = functools.partial(_sender, frame=frame)
                results[kind] = drive(proxy, sender, args.connections, args.duration, 1.0)
            finally:
                procs.stop(proxy.child)
        bare, gw = results["bare"], results["gateway"]
        cpu_bare = 1000 * bare.cpu / max(bare.messages, 1)
        cpu = f"{cpu_bare:.2f}/{1000 * gw.cpu / max(gw.messages, 1):.2f}"
        print(
            f"{scenario:<9} {bare.rate:>10.0f} {gw.rate:>9.0f} {gw.rate / bare.rate:>8.2f} "
            f"{bare.percentile(0.5):>5.2f}/{gw.percentile(0.5):<5.2f} "
            f"{bare.percentile(0.99):>5.2f}/{gw.percentile(0.99):<5.2f} {cpu:>15}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
