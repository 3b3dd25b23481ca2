"""``python -m bench`` (``make bench``): the gateway against bare mitmdump, same traffic, same run.

For each scenario (foreign: every payload inspected and audited in monitor mode; domestic:
forwarded without inspection) and each payload, a fresh bare mitmdump and then a fresh
phi-gateway, both in reverse mode in front of the same nginx, get the same wrk load. The
scenario domestic-tls (issue 19) runs both as the explicit proxy instead: HTTPS to nginx
through CONNECT, with a new connection per request and with keep-alive, from the same
client (``load.run_connect``); bare mitmdump decrypts it, the gateway relays it. The table
shows req/s of each, the ratio gateway/bare and latency percentiles.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import load, report
from bench.payloads import Payload, build_payloads
from bench.procs import (
    REPO,
    Child,
    CpuWindow,
    Processes,
    Proxy,
    Upstream,
    code_fingerprint,
    cpu_seconds,
    http_request,
    machine_busy,
    start_bare,
    start_gateway,
    start_nginx,
    tree_cpu_seconds,
    write_gateway_config,
)
from bench.report import Comparison
from bench.tools import Tools, ensure_tools, version
from gateway import native

RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_SECONDS = 2
SCENARIOS = ["foreign", "foreign-block", "latency", "domestic", "domestic-tls", "workers"]
# latency: one connection, one request at a time, so p99 is the time added to a request
# rather than queueing behind the others.
LATENCY_CONNECTIONS = 1
# domestic-tls: the two ways a client uses a tunnel, in the table's payload column.
TLS_WAYS = {"new-connection": False, "keep-alive": True}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of measured load per run (default 10)"
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs (overrides --duration)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="bare/gateway pairs per payload, each on fresh processes; medians are reported",
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        action="append",
        help="run only this scenario (repeatable; default all)",
    )
    parser.add_argument(
        "--payload", action="append", help="run only this payload (repeatable; default all)"
    )
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        metavar="SLICES",
        help="foreign, foreign-block, latency and domestic: start both proxies once per round "
        "and alternate SLICES wrk slices between them (bare, gateway, bare, ...), so a machine "
        "that slows down mid-run slows both alike",
    )
    parser.add_argument(
        "--workers",
        default="1,2,4",
        help="scenario workers: the worker counts to measure behind HAProxy, against one "
        f"gateway, on foreign {report.TARGET_PAYLOAD} (default 1,2,4)",
    )
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        type=Path,
        help="py-spy binary: sample the gateway during its measured foreign run of "
        "--profile-payload and print the top functions by self time",
    )
    parser.add_argument(
        "--profile-payload",
        default=report.TARGET_PAYLOAD,
        help=f"the payload --profile samples (default {report.TARGET_PAYLOAD})",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (default: every thread "
        "that is not idle, e.g. the audit writer in sqlite too)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (configs, logs, audit db)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3
    if args.duration < 1 or args.rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    try:
        args.workers = sorted({int(n) for n in args.workers.split(",")})
    except ValueError:
        parser.error("--workers takes worker counts separated by commas, e.g. 1,2,4")
    if not args.workers or args.workers[0] < 1:
        parser.error("--workers counts must be at least 1")
    return args


def audit_count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT count(*) FROM audit_events").fetchone()
        return int(row[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def gateway_decisions(proxy: Proxy, settle: float = 0.5, timeout: float = 30) -> dict[str, float]:
    """phi_gateway_decisions_total by action/rule/format/country, once it stops changing.

    wrk stops with requests still in flight; the gateway finishes them after wrk exits.
    """
    deadline = time.monotonic() + timeout
    last = _decisions(proxy)
    while time.monotonic() < deadline:
        time.sleep(settle)
        now = _decisions(proxy)
        if now == last:
            break
        last = now
    return last


def gateway_metric(proxy: Proxy, name: str) -> float:
    """Sum of one metric's samples at the gateway's /metrics."""
    status, text = http_request(f"http://127.0.0.1:{proxy.admin_port}/metrics")
    if status != 200:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == name
    )


def _decisions(proxy: Proxy) -> dict[str, float]:
    status, text = http_request(f"http://127.0.0.1:{proxy.admin_port}/metrics")
    if status != 200:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "phi_gateway_decisions_total":
                lb = sample.labels
                key = f"{lb['action']}/{lb['rule']}/{lb['format']}/{lb['country']}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, tools: Tools, tmp: Path) -> None:
        self.args = args
        self.tools = tools
        self.tmp = tmp
        self.procs = Processes(tmp)
        self.wrk_log = tmp / "wrk.log"
        self.fingerprints: dict[str, int] = {}  # gateway source hash -> gateway starts with it
        self.profile: list[tuple[str, float]] = []
        self.profile_inclusive: list[tuple[str, float]] = []

    def run(self, payloads: list[Payload], scenarios: list[str]) -> list[Comparison]:
        upstream = start_nginx(self.procs, self.tools.nginx, self.tmp)
        print(
            f"nginx upstream: foreign http://{upstream.foreign[0]}:{upstream.foreign[1]} (IN), "
            f"domestic http://{upstream.domestic[0]}:{upstream.domestic[1]} (US)",
            flush=True,
        )
        config = write_gateway_config(self.tmp, upstream.ca_pem)
        enforcing = write_gateway_config(self.tmp, upstream.ca_pem, "enforce", "gateway-block")
        files = {p.name: p.write(self.tmp) for p in payloads}
        scripts = {
            p.name: load.write_script(self.tmp, p.name, files[p.name], p.content_type)
            for p in payloads
        }
        comparisons = []
        for scenario in scenarios:
            if scenario == "domestic-tls":
                comparisons += self._run_tls(upstream, config)
                continue
            if scenario == "workers":
                comparisons += self._run_workers(upstream, config, payloads, scripts)
                continue
            target = self._target(upstream, scenario)
            refused = scenario == "foreign-block"
            for payload in payloads:
                if refused and not payload.phi:
                    continue
                if scenario == "latency" and payload.name != report.TARGET_PAYLOAD:
                    continue  # nothing to block: the clean payload's forward is in "foreign"
                comparison = Comparison(
                    scenario, payload.name, len(payload.body), refused=refused, phi=payload.phi
                )
                for n in range(self.args.rounds):
                    if self.args.interleave > 1:
                        self._measure_interleaved(
                            comparison=comparison,
                            target=target,
                            config=enforcing if refused else config,
                            payload=payload,
                            script=scripts[payload.name],
                            round_no=n,
                        )
                        continue
                    for kind in ("bare", "gateway"):
                        self._measure(
                            comparison=comparison,
                            kind=kind,
                            target=target,
                            config=enforcing if refused else config,
                            payload=payload,
                            script=scripts[payload.name],
                            round_no=n,
                        )
                comparisons.append(comparison)
        return comparisons

    def _run_workers(
        self,
        upstream: Upstream,
        config: Path,
        payloads: list[Payload],
        scripts: dict[str, Path],
    ) -> list[Comparison]:
        """One gateway, then N workers behind HAProxy, on the same foreign traffic: each
        count's comparison has the one-gateway runs of the same rounds as its "bare"."""
        chosen = [p for p in payloads if p.name == report.TARGET_PAYLOAD] or payloads[:1]
        target = self._target(upstream, "foreign")
        comparisons: list[Comparison] = []
        for payload in chosen:
            counts = [n for n in self.args.workers if n > 1]
            by_count = {
                n: Comparison("workers", f"{payload.name} x{n}", len(payload.body), workers=n)
                for n in counts
            }
            for n in range(self.args.rounds):
                single = Comparison("workers", payload.name, len(payload.body), workers=1)
                self._measure(
                    comparison=single,
                    kind="gateway",
                    target=target,
                    config=config,
                    payload=payload,
                    script=scripts[payload.name],
                    round_no=n,
                )
                for count, comparison in by_count.items():
                    comparison.bare.append(single.gateway[-1])
                    self._measure(
                        comparison=comparison,
                        kind="gateway",
                        target=target,
                        config=config,
                        payload=payload,
                        script=scripts[payload.name],
                        round_no=n,
                        workers=count,
                    )
            comparisons += by_count.values()
        return comparisons

    def _run_tls(self, upstream: Upstream, config: Path) -> list[Comparison]:
        comparisons = []
        for way, keepalive in TLS_WAYS.items():
            comparison = Comparison("domestic-tls", way, 0)
            for n in range(self.args.rounds):
                for kind in ("bare", "gateway"):
                    self._measure_tls(
                        comparison=comparison,
                        kind=kind,
                        upstream=upstream,
                        config=config,
                        keepalive=keepalive,
                        round_no=n,
                    )
            comparisons.append(comparison)
        return comparisons

    def _measure_tls(
        self,
        *,
        comparison: Comparison,
        kind: str,
        upstream: Upstream,
        config: Path,
        keepalive: bool,
        round_no: int,
    ) -> None:
        """HTTPS through CONNECT to nginx's TLS listener (127.0.0.1: domestic)."""
        audit_db = self.tmp / "audit.db"
        before = audit_count(audit_db)
        if kind == "bare":
            confdir = self.tmp / "mitmproxy-bare-tls"
            proxy = start_bare(self.procs, None, confdir, upstream.ca_pem)
        else:
            fingerprint = code_fingerprint()
            self.fingerprints[fingerprint] = self.fingerprints.get(fingerprint, 0) + 1
            confdir = self.tmp / "mitmproxy"  # write_gateway_config's proxy.confdir
            proxy = start_gateway(self.procs, config, None)
        host, port = upstream.domestic_tls
        # The proxy's CA for what it decrypts, the server's for what it relays.
        cafiles = [confdir / "mitmproxy-ca-cert.pem", upstream.ca_pem]
        relayed_before = 0.0
        try:
            warm = load.run_connect(
                proxy.port, host, port, cafiles, WARMUP_SECONDS, keepalive=keepalive
            )
            if warm.requests == 0 or warm.bad:
                raise RuntimeError(
                    f"{kind} proxy: HTTPS through CONNECT failed in the warm-up "
                    f"({warm.requests} answered, {warm.bad} errors)\n{proxy.child.tail()}"
                )
            if kind == "gateway":
                relayed_before = gateway_metric(proxy, "phi_gateway_tls_relayed_total")
            cpu_before = cpu_seconds(proxy.child.pid)
            result = load.run_connect(
                proxy.port, host, port, cafiles, self.args.duration, keepalive=keepalive
            )
            result = replace(result, proxy_cpu_s=cpu_seconds(proxy.child.pid) - cpu_before)
            if kind == "gateway":
                relayed = gateway_metric(proxy, "phi_gateway_tls_relayed_total")
                comparison.relayed.append(round(relayed - relayed_before))
                comparison.decisions = gateway_decisions(proxy)
        finally:
            code = self.procs.stop(proxy.child)
        if kind == "bare":
            comparison.bare.append(result)
        else:
            comparison.gateway.append(result)
            comparison.gateway_requests.append(result.requests)
            comparison.audit_events.append(audit_count(audit_db) - before)
        flag = f"  non-2xx/socket errors: {result.bad}" if result.bad else ""
        relays = f"  relayed {comparison.relayed[-1]} conn" if kind == "gateway" else ""
        print(
            f"  {comparison.scenario:12} {comparison.payload:14} round {round_no + 1} {kind:7} "
            f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
            f"  cpu {result.cpu_ms_per_request:6.2f} ms/req ({result.proxy_cpu_share:4.0%})"
            f"  client cpu {result.client_cpu_s / result.duration_s:4.0%}"
            f"  (exit {code}){relays}{flag}",
            flush=True,
        )

    @staticmethod
    def _target(upstream: Upstream, scenario: str) -> str:
        abroad = scenario.startswith("foreign") or scenario == "latency"
        host, port = upstream.foreign if abroad else upstream.domestic
        return f"http://{host}:{port}"

    def _measure(
        self,
        *,
        comparison: Comparison,
        kind: str,
        target: str,
        config: Path,
        payload: Payload,
        script: Path,
        round_no: int,
        workers: int = 1,
    ) -> None:
        audit_db = self.tmp / "audit.db"
        before = audit_count(audit_db)
        if kind == "bare":
            proxy = start_bare(self.procs, target, self.tmp / "mitmproxy-bare")
        else:
            fingerprint = code_fingerprint()
            self.fingerprints[fingerprint] = self.fingerprints.get(fingerprint, 0) + 1
            proxy = start_gateway(self.procs, config, target, workers)
        cpu = tree_cpu_seconds if workers > 1 else cpu_seconds
        try:
            status, body = http_request(proxy.url + "/bench", payload.body, payload.content_type)
            refusing = comparison.refused and kind == "gateway"
            if (status, body == b"ok") != ((451, False) if refusing else (200, True)):
                raise RuntimeError(
                    f"{kind} proxy answered the {payload.name} check with {status} {body[:200]!r}"
                    f"\n{proxy.child.tail()}"
                )
            connections = (
                LATENCY_CONNECTIONS if comparison.scenario == "latency" else load.CONNECTIONS
            )
            load.run_wrk(
                self.tools.wrk,
                proxy.url + "/",
                script,
                WARMUP_SECONDS,
                self.wrk_log,
                connections=connections,
            )
            profiler = self._start_profiler(comparison, kind, proxy)
            cpu_before = cpu(proxy.child.pid)
            result = load.run_wrk(
                self.tools.wrk,
                proxy.url + "/",
                script,
                self.args.duration,
                self.wrk_log,
                connections=connections,
            )
            result = replace(result, proxy_cpu_s=cpu(proxy.child.pid) - cpu_before)
            if profiler is not None:
                self._finish_profiler(*profiler)
            if kind == "gateway":
                comparison.decisions = gateway_decisions(proxy)
        finally:
            code = self.procs.stop(proxy.child)
        if kind == "bare":
            comparison.bare.append(result)
        else:
            comparison.gateway.append(result)
            comparison.gateway_requests.append(round(sum(comparison.decisions.values())))
            comparison.audit_events.append(audit_count(audit_db) - before)
        flag = f"  non-2xx/socket errors: {result.bad}" if result.bad else ""
        label = f"{kind} x{workers}" if comparison.scenario == "workers" else kind
        print(
            f"  {comparison.scenario:8} {payload.name:17} round {round_no + 1} {label:7} "
            f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
            f"  cpu {result.cpu_ms_per_request:6.2f} ms/req ({result.proxy_cpu_share:4.0%})"
            f"  (exit {code}){flag}",
            flush=True,
        )

    def _measure_interleaved(
        self,
        *,
        comparison: Comparison,
        target: str,
        config: Path,
        payload: Payload,
        script: Path,
        round_no: int,
    ) -> None:
        """Both proxies up at once, measured in alternating slices (``--interleave``)."""
        audit_db = self.tmp / "audit.db"
        before = audit_count(audit_db)
        fingerprint = code_fingerprint()
        self.fingerprints[fingerprint] = self.fingerprints.get(fingerprint, 0) + 1
        proxies = {"bare": start_bare(self.procs, target, self.tmp / "mitmproxy-bare")}
        connections = LATENCY_CONNECTIONS if comparison.scenario == "latency" else load.CONNECTIONS
        slices = self.args.interleave
        seconds = max(1.0, self.args.duration / slices)
        parts: dict[str, list[load.WrkResult]] = {"bare": [], "gateway": []}
        try:
            proxies["gateway"] = start_gateway(self.procs, config, target)
            for kind, proxy in proxies.items():
                status, body = http_request(
                    proxy.url + "/bench", payload.body, payload.content_type
                )
                refusing = comparison.refused and kind == "gateway"
                if (status, body == b"ok") != ((451, False) if refusing else (200, True)):
                    raise RuntimeError(
                        f"{kind} proxy answered the {payload.name} check with {status} "
                        f"{body[:200]!r}\n{proxy.child.tail()}"
                    )
                load.run_wrk(
                    self.tools.wrk,
                    proxy.url + "/",
                    script,
                    WARMUP_SECONDS,
                    self.wrk_log,
                    connections=connections,
                )
            for _ in range(slices):
                for kind, proxy in proxies.items():
                    cpu_before = cpu_seconds(proxy.child.pid)
                    result = load.run_wrk(
                        self.tools.wrk,
                        proxy.url + "/",
                        script,
                        seconds,
                        self.wrk_log,
                        connections=connections,
                    )
                    used = cpu_seconds(proxy.child.pid) - cpu_before
                    parts[kind].append(replace(result, proxy_cpu_s=used))
            comparison.decisions = gateway_decisions(proxies["gateway"])
        finally:
            for proxy in proxies.values():
                self.procs.stop(proxy.child)
        bare, gateway = load.merge(parts["bare"]), load.merge(parts["gateway"])
        comparison.bare.append(bare)
        comparison.gateway.append(gateway)
        comparison.gateway_requests.append(round(sum(comparison.decisions.values())))
        comparison.audit_events.append(audit_count(audit_db) - before)
        for kind, result in (("bare", bare), ("gateway", gateway)):
            print(
                f"  {comparison.scenario:8} {payload.name:17} round {round_no + 1} {kind:7} "
                f"{result.rps:8.0f} req/s  p99 {result.p99_ms:7.2f} ms"
                f"  cpu {result.cpu_ms_per_request:6.2f} ms/req ({slices} slices)",
                flush=True,
            )

    # -- optional py-spy sampling of the gateway -------------------------------------------------
    def _start_profiler(
        self, comparison: Comparison, kind: str, proxy: Proxy
    ) -> tuple[Child, Path] | None:
        if (
            self.args.profile is None
            or kind != "gateway"
            or comparison.payload != self.args.profile_payload
            or comparison.scenario != "foreign"
            or self.profile
        ):
            return None
        out = self.tmp / "py-spy.txt"
        argv = [
            str(self.args.profile),
            "record",
            "--pid",
            str(proxy.child.pid),
            "--duration",
            str(max(1, self.args.duration - 1)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--nolineno",
            *(["--gil"] if self.args.profile_gil else []),
            "--output",
            str(out),
        ]
        return self.procs.start("py-spy", argv), out

    def _finish_profiler(self, child: Child, out: Path) -> None:
        child.proc.wait(30)
        self.procs.stop(child)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile:\n{child.tail()}")
        self.profile = self_time(out)
        self.profile_inclusive = inclusive_time(out)


def self_time(collapsed: Path) -> list[tuple[str, float]]:
    """Share of samples whose innermost frame is each function (py-spy --format raw)."""
    return _top(collapsed, inclusive=False)


def inclusive_time(collapsed: Path) -> list[tuple[str, float]]:
    """Share of samples with each of the gateway's own functions anywhere on the stack."""
    return _top(collapsed, inclusive=True, only=("(gateway/", "(addons/phi_gateway"))


def _top(
    collapsed: Path, inclusive: bool, n: int = 25, only: tuple[str, ...] = ()
) -> list[tuple[str, float]]:
    totals: dict[str, int] = {}
    all_samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        names = set(frames) if inclusive else set(frames[-1:])
        if only:
            names = {
                name
                for name in names
                if any(o in name for o in only) and "(gateway/cli.py)" not in name
            }
        for name in names:
            totals[name] = totals.get(name, 0) + int(count)
        all_samples += int(count)
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)
    return [(name, c / all_samples) for name, c in ranked[:n]] if all_samples else []


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"


def metadata(args: argparse.Namespace, tools: Tools, payloads: list[Payload]) -> dict[str, Any]:
    return {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "nproc_available": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mitmproxy": importlib.metadata.version("mitmproxy"),
        "nginx": version(tools.nginx),
        "wrk": version(tools.wrk),
        "commit": git_commit(),
        "gateway_code": native.STATE.describe(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": WARMUP_SECONDS,
            "rounds": args.rounds,
            "wrk_threads": load.THREADS,
            "wrk_connections": load.CONNECTIONS,
            "connect_client_connections": load.CONNECTIONS,
            "method": "POST",
            "connection_strategy": "lazy",
        },
        "payloads": {
            p.name: {"bytes": len(p.body), "content_type": p.content_type} for p in payloads
        },
        "targets": dict(report.TARGETS),
    }


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    tools = ensure_tools()
    payloads = build_payloads()
    if args.payload:
        unknown = set(args.payload) - {p.name for p in payloads}
        if unknown:
            raise SystemExit(
                f"unknown payload(s) {sorted(unknown)}; have {[p.name for p in payloads]}"
            )
        payloads = [p for p in payloads if p.name in args.payload]
    scenarios = args.scenario or SCENARIOS
    meta = metadata(args, tools, payloads)
    busy = machine_busy()
    meta["cpu_busy_before"] = round(busy, 3)
    meta["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    if busy > 0.15:
        print(
            f"bench: WARNING {busy:.0%} of the CPUs are busy before starting: other processes "
            "compete for the CPU and the numbers will be noisy",
            flush=True,
        )
    cpu_window = CpuWindow()
    print(
        f"phi-gateway vs bare mitmdump {meta['mitmproxy']} | {meta['nginx']} | {meta['wrk']}\n"
        f"gateway code: {meta['gateway_code']}\n"
        f"nproc {meta['nproc']} | wrk -t{load.THREADS} -c{load.CONNECTIONS} POST, "
        f"{WARMUP_SECONDS}s warm-up + {args.duration}s measured, {args.rounds} round(s)\n"
        + "\n".join(f"payload {p.name}: {p.description}" for p in payloads),
        flush=True,
    )
    # Ctrl-C and SIGTERM both end in the cleanup below (SIGINT explicitly: a shell that
    # starts us in the background would otherwise leave it ignored).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous: Callable[[int, FrameType | None], Any] | int | None = signal.signal(
        signal.SIGTERM, _raise_interrupt
    )
    tmp = Path(tempfile.mkdtemp(prefix="phi-bench-"))
    bench = Bench(args, tools, tmp)
    comparisons: list[Comparison] = []
    try:
        comparisons = bench.run(payloads, scenarios)
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping everything it started", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"bench: failed: {exc}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        bench.procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if args.keep:
            print(f"bench: temp dir kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - started
    meta["elapsed_s"] = round(elapsed, 1)
    meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["cpu_steal_share"] = round(cpu_window.steal_share(), 4)
    meta["gateway_code_fingerprints"] = bench.fingerprints
    meta["profile_self_time"] = [{"function": f, "share": round(s, 4)} for f, s in bench.profile]
    meta["profile_inclusive_time"] = [
        {"function": f, "share": round(s, 4)} for f, s in bench.profile_inclusive
    ]
    print()
    print(report.table(comparisons))
    print()
    print(
        "req/s: wrk median over rounds; gw/bare: gateway req/s / bare req/s (range over rounds); "
        "p50/p99 in ms;\np99 added: gateway p99 - bare p99 (ms); "
        "non-2xx b/g: non-2xx/3xx responses + socket errors (bare/gateway); "
        "audited: gateway audit rows / requests it decided.\nworkers: bare = one gateway "
        "process, gw = N workers behind HAProxy (CPU: supervisor, workers and HAProxy)."
    )
    for line in report.verdicts(comparisons):
        print(line)
    if meta["cpu_steal_share"] > 0.05:
        print(f"WARNING the hypervisor stole {meta['cpu_steal_share']:.0%} of CPU time: noisy")
    if len(bench.fingerprints) > 1:
        print(
            f"WARNING the gateway's sources changed during the run ({len(bench.fingerprints)} "
            "versions were started): the gateway numbers mix code versions"
        )
    if args.rounds == 1:
        print(
            "note: one round per pair; single runs vary by 10-20% on a 2-core VM, so decide "
            "on --rounds 3 (median and range per pair) and the cpu ratio."
        )
    if bench.profile:
        scope = "GIL holder only" if args.profile_gil else "all non-idle threads"
        for title, rows in (
            ("self time", bench.profile),
            ("inclusive time, gateway code only", bench.profile_inclusive),
        ):
            print(f"\npy-spy, gateway during foreign/hl7-adt-2k ({scope}), top by {title}:")
            for name, share in rows:
                print(f"  {share * 100:5.1f}%  {name}")
    path = report.save(RESULTS, meta, comparisons)
    print(f"\nsaved {path.relative_to(REPO)}; whole run {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
