"""Build a block report in a child process, for the admin API.

A report is CPU-bound Python for seconds to minutes (the whole chain is verified; fpdf2 lays out
every listed row). Inside the gateway's interpreter it would hold the GIL and slow the proxy's
event loop; in a child (``python -m gateway.report``, lower CPU priority) it costs the proxy
only a share of the machine's cores. The child gets the gateway's effective configuration as
JSON on standard input (the secret stays in the environment it inherits), writes the report to
a private temporary file and exits 0 (chain intact), 1 (report written, chain not intact) or 2
(no report). The parent answers with the file, read in chunks, never whole in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.audit.factory import checkpoint_key, checkpoint_log_path, open_backend
from gateway.audit.query import Period, parse_period
from gateway.config import GatewayConfig, parse_config
from gateway.errors import (
    AuditError,
    ConfigError,
    QueryError,
    ReportBusy,
    ReportFailed,
    ReportTimeout,
)
from gateway.report.build import BlockReport, build_report
from gateway.report.render import FORMATS, render

log = logging.getLogger(__name__)
EXIT_INTACT, EXIT_TAMPERED, EXIT_FAILED = 0, 1, 2
# The report without its incident list, as JSON: the console's overview.
SUMMARY = "summary"
_CHUNK = 256 * 1024
_NICENESS = 10  # the proxy comes first when both want a core


@dataclass(slots=True)
class ReportFile:
    """A finished report: an open, already unlinked file (gone when closed)."""

    file: BinaryIO
    size: int
    intact: bool

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self.file.read(_CHUNK):
                yield chunk
        finally:
            self.file.close()


def build_in_child(config: GatewayConfig, period: Period, fmt: str, timeout: float) -> ReportFile:
    """Run ``python -m gateway.report`` and return its report; raises ReportFailed."""
    fd, name = tempfile.mkstemp(prefix="phi-gateway-report-", suffix=f".{fmt}")
    path = Path(name)
    try:
        argv = [
            sys.executable, "-m", "gateway.report", "--from", period.since,
            "--to", period.last.isoformat(), "--format", fmt, "--out", name,
        ]  # fmt: skip
        try:
            result = subprocess.run(
                argv,
                input=config.model_dump_json().encode(),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ReportTimeout(f"the report took longer than {timeout:.0f} s") from None
        if result.returncode not in (EXIT_INTACT, EXIT_TAMPERED):
            problem = result.stderr.decode(errors="replace").strip()[-500:]
            log.error("report process exited %d: %s", result.returncode, problem)
            raise ReportFailed("the report could not be built: see the gateway log")
        file = os.fdopen(fd, "rb")
        fd = -1
        size = os.fstat(file.fileno()).st_size
        return ReportFile(file, size, intact=result.returncode == EXIT_INTACT)
    finally:
        if fd >= 0:
            os.close(fd)
        path.unlink(missing_ok=True)  # the open file stays readable until closed


class ReportJobs:
    """The reports the admin API and the console build at once: at most ``max_concurrent``
    children, one more is refused (ReportBusy) rather than queued behind them."""

    def __init__(self, max_concurrent: int, timeout: float) -> None:
        self._max = max_concurrent
        self._timeout = timeout
        self._lock = threading.Lock()
        self._running = 0

    @classmethod
    def from_config(cls, config: GatewayConfig) -> ReportJobs:
        return cls(config.report.api_max_concurrent, config.report.api_timeout_seconds)

    def run(self, config: GatewayConfig, period: Period, fmt: str) -> ReportFile:
        with self._lock:
            if self._running >= self._max:
                raise ReportBusy("reports are being built: retry later")
            self._running += 1
        try:
            return build_in_child(config, period, fmt, self._timeout)
        finally:
            with self._lock:
                self._running -= 1


def write_report(config: GatewayConfig, period: Period, fmt: str, out: BinaryIO) -> BlockReport:
    """Build the report the config asks for (checked against the checkpoint log when there is
    one) and write it. Raises AuditError when the trail cannot be read, OSError when the log
    cannot."""
    log = checkpoint_log_path(config.audit)
    report = build_report(
        open_backend(config.audit),
        period,
        checkpoint_key(config.audit),
        max_listed=config.report.max_listed_incidents,
        checkpoint_logs=[log] if log.is_file() else [],
    )
    if fmt == SUMMARY:
        out.write(json.dumps(report.as_dict(incidents=False)).encode())
    else:
        out.write(render(report, fmt))
    return report


def child_main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.report``: the config as JSON on standard input."""
    parser = argparse.ArgumentParser(prog="python -m gateway.report")
    parser.add_argument("--from", dest="first", required=True)
    parser.add_argument("--to", dest="last", required=True)
    parser.add_argument("--format", choices=(*FORMATS, SUMMARY), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)
    try:
        config = parse_config(json.load(sys.stdin), "<config from the gateway>")
        period = parse_period(args.first, args.last)
        with args.out.open("wb") as out:
            intact = write_report(config, period, args.format, out).verification.intact
    except (ConfigError, AuditError, QueryError, ValueError, OSError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a driver error while reading: no report (never exit 1 here)
        print(f"report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INTACT if intact else EXIT_TAMPERED
