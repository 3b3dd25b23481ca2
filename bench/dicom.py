"""``python -m bench.dicom``: DICOM header inspection in process, and DIMSE C-STORE through
the proxy against bare mitmdump ``reverse:tcp`` in the same run.

In process (no proxy), as the engine pays it: the header of a 50 MB multi-frame CT file
inspected (target well under 10 ms: the pixels are never read), a 0.5 MB CT slice inspected
and redacted (Basic Profile, pydicom); pydicom's own header read of the 50 MB file beside
ours (why the header is walked by our code). Each figure beside hl7apy's parse as the yardstick
(bench/redaction.py).

Through the proxy: a receiver process answers every C-STORE with success; for each
scenario a fresh bare ``mitmdump --mode reverse:tcp://…`` and then a fresh ``phi-gateway
run`` with the same mode relay ``--connections`` associations, each sending 0.5 MB CT
slices one C-STORE at a time. ``foreign``: the receiver on 127.0.0.2 (India), the gateway in
monitor mode, so every data set is reassembled, inspected, found to be PHI, audited and
still forwarded (the worst case); ``domestic``: relayed without reading.
Run: .venv/bin/python -m bench.dicom"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread

from bench.mllp import Result, drive, receiver, start_receiver
from bench.procs import (
    Processes,
    start_bare,
    start_gateway,
    write_gateway_config,
)
from bench.redaction import paired, print_header, report, yardstick
from gateway.config import parse_config
from gateway.dimse.pdu import fragments
from gateway.formats.dicom import DICOM
from gateway.formats.dicom.walk import WalkLimits, read_header
from gateway.inspector import Inspector
from tests.support.dicom import CT, bare, dataset, part10
from tests.support.dimse import associate, c_store_rq, c_store_rsp, p_data
from tests.support.patients import make_patient
from tests.support.redaction import InspectingRedactor

IMPLICIT = "1.2.840.10008.1.2"
TARGETS = {"foreign": "127.0.0.2", "domestic": "127.0.0.1"}
RELEASE_RQ = struct.pack(">BBI", 5, 0, 4) + bytes(4)
RELEASE_RP = struct.pack(">BBI", 6, 0, 4) + bytes(4)


def ct_series_file() -> bytes:
    """One 50 MB enhanced-CT style file: 100 frames of 512 x 512 x 16 bit."""
    return part10(dataset(make_patient(1), frames=100, rows=512))


def in_process() -> None:
    config = parse_config({"limits": {"max_body_bytes": 64 << 20}})
    inspector = Inspector(config.limits)
    redactor = InspectingRedactor(config, b"bench-secret-0123456789abcdef")
    big, slice_ = ct_series_file(), part10(dataset(make_patient(2), rows=512))
    for body in (big, slice_):
        inspection = inspector.inspect(body)
        assert inspection.format == DICOM and inspection.contains_phi, inspection
    assert not redactor.redact(slice_, "", DICOM).error
    walk_limits = WalkLimits(200_000, 12, 64 << 20, lambda: None)
    parse = yardstick()
    print_header()
    cases: list[tuple[str, Callable[[], object], float | None]] = [
        (f"inspect CT file ({len(big) / 1e6:.0f} MB)", lambda: inspector.inspect(big), 10.0),
        ("  our header walk alone", lambda: read_header(big, walk_limits), None),
        (
            "  pydicom dcmread, header only",
            lambda: dcmread(io.BytesIO(big), stop_before_pixels=True),
            None,
        ),
        (f"inspect CT slice ({len(slice_) / 1e6:.1f} MB)", lambda: inspector.inspect(slice_), None),
        (
            f"redact CT slice ({len(slice_) / 1e6:.1f} MB)",
            lambda: redactor.redact(slice_, "", DICOM),
            None,
        ),
    ]
    for name, run, target in cases:
        report(name, paired(run, parse), target)


# -- through the proxy ------------------------------------------------------------------


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the association; answer each whole data set with a successful C-STORE-RSP."""
    accept = associate(2, CT, IMPLICIT)
    ok = p_data(True, c_store_rsp(1, CT))
    buffer = b""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while chunk := await reader.read(1 << 20):
            buffer += chunk
            while len(buffer) >= 6:
                length = struct.unpack_from(">I", buffer, 2)[0]
                if len(buffer) < 6 + length:
                    break
                kind, body, buffer = buffer[0], buffer[6 : 6 + length], buffer[6 + length :]
                if kind == 1:
                    writer.write(accept)
                elif kind == 5:
                    writer.write(RELEASE_RP)
                elif kind == 4 and body[5] == 2:  # the last fragment of a data set
                    writer.write(ok)
            await writer.drain()
    writer.close()


async def _associate(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(associate(1, CT, IMPLICIT))
    await writer.drain()
    head = await reader.readexactly(6)
    await reader.readexactly(struct.unpack_from(">I", head, 2)[0])
    if head[0] != 2:
        raise ConnectionError("association not accepted")
    return reader, writer


async def _sender(port: int, until: float, warm_until: float, out: Result, data: bytes) -> None:
    reader, writer = await _associate(port)
    message = 0
    try:
        while (now := time.perf_counter()) < until:
            message += 1
            command = p_data(True, c_store_rq(message & 0xFFFF, CT, f"2.25.{message}"))
            writer.write(command + data)
            await writer.drain()
            head = await reader.readexactly(6)
            await reader.readexactly(struct.unpack_from(">I", head, 2)[0])
            if now >= warm_until:
                out.messages += 1
                out.latencies.append(time.perf_counter() - now)
        writer.write(RELEASE_RQ)
        await writer.drain()
    finally:
        writer.close()


def through_proxy(args: argparse.Namespace, procs: Processes, tmp: Path) -> None:
    port = start_receiver(procs, "bench.dicom", list(TARGETS.values()))
    config = write_gateway_config(tmp)
    data = fragments(1, bare(dataset(make_patient(3), rows=512), IMPLICIT), 65536)
    print(
        f"\nDIMSE: C-STORE of {len(data) / 1e6:.2f} MB CT slices in 64 KB PDUs, "
        f"{args.connections} associations, one C-STORE in flight each, {args.duration:g} s"
    )
    print(
        f"{'scenario':<9} {'bare st/s':>10} {'gw st/s':>9} {'gw/bare':>8} "
        f"{'p50 ms b/g':>11} {'p99 ms b/g':>11} {'cpu ms/st b/g':>14}"
    )
    for scenario in args.scenario or ["foreign", "domestic"]:
        target = f"tcp://{TARGETS[scenario]}:{port}"
        results = {}
        for kind in ("bare", "gateway"):
            if kind == "bare":
                proxy = start_bare(procs, target, tmp / "mitmproxy-bare")
            else:
                proxy = start_gateway(procs, config, target)
            try:
                sender = functools.partial(_sender, data=data)
                results[kind] = drive(proxy, sender, args.connections, args.duration, 1.0)
            finally:
                procs.stop(proxy.child)
        bare_r, gw = results["bare"], results["gateway"]
        cpu = f"{1000 * bare_r.cpu / max(bare_r.messages, 1):.2f}/"
        cpu += f"{1000 * gw.cpu / max(gw.messages, 1):.2f}"
        print(
            f"{scenario:<9} {bare_r.rate:>10.0f} {gw.rate:>9.0f} {gw.rate / bare_r.rate:>8.2f} "
            f"{bare_r.percentile(0.5):>5.2f}/{gw.percentile(0.5):<5.2f} "
            f"{bare_r.percentile(0.99):>5.2f}/{gw.percentile(0.99):<5.2f} {cpu:>14}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dicom", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=8, help="measured seconds per run")
    parser.add_argument("--connections", type=int, default=4, help="associations")
    parser.add_argument("--scenario", choices=sorted(TARGETS), action="append")
    parser.add_argument("--no-proxy", action="store_true", help="only the in-process figures")
    parser.add_argument("--receiver", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver:
        asyncio.run(receiver(args.receiver, _serve))
        return 0
    in_process()
    if args.no_proxy:
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp_name:
        procs = Processes(Path(tmp_name))
        try:
            through_proxy(args, procs, Path(tmp_name))
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
