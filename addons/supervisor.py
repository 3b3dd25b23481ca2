"""``phi-gateway run --workers N``: N proxy workers behind HAProxy, on one host.

One mitmproxy process uses one core, and mitmproxy cannot share a port between processes.
So the supervisor (this process) starts N workers (``phi-gateway run --worker K``), each
listening on loopback ports of its own, and HAProxy on the configured listen addresses in
front of them (``gateway/haproxy.py``: least connections, ``/readyz`` checks, PROXY v2 so
each worker sees the real client). The supervisor:

- restarts a worker that dies (after 1 s, doubling to 30 s while it keeps dying at once),
  and HAProxy too; HAProxy takes a dead or unready worker out within about two seconds;
- serves the admin API once, on the configured admin address, from its own gateway (the
  audit trail is read across every chain; its own chain records the API's use), and one
  ``/metrics`` merging every worker's under a ``worker`` label (``gateway/exposition.py``);
- on SIGHUP reloads its own policy and signals every worker to reload theirs (each keeps
  its last good policy when the file is bad, as a single gateway does);
- on SIGTERM drains: HAProxy stops accepting and lets open connections finish, then the
  workers stop.

Each worker writes its own audit chain (``<instance>-w<K>``) into the configured store, so
``audit verify``, ``report`` and the API see all chains as one trail.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy.certs import CertStore
from mitmproxy.proxy import mode_specs

from addons.startup import ReloadCheck, TrailServices, open_admin_servers
from gateway import cli, haproxy, metrics
from gateway.admin import ReadinessState, Routes, audited_reload
from gateway.api import Api
from gateway.config import GatewayConfig, split_host_port
from gateway.console.app import Console
from gateway.engine import Gateway
from gateway.entry_expiry import notices
from gateway.errors import ConfigError, StartError
from gateway.exposition import merge
from gateway.report.job import ReportJobs
from gateway.siem.forwarder import describe_output
from gateway.workers import DocumentWorkers

log = logging.getLogger("phi_gateway")
_LOOPBACK = "127.0.0.1"
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
# A worker that lived this long before dying is restarted after the first backoff again.
_STABLE_SECONDS = 30.0
_SCRAPE_SECONDS = 2.0
_STOP_SECONDS = 30.0
_START_SECONDS = 60.0
_RELOAD_SECONDS = 15.0
_RELOADS = f"{metrics.PREFIX}_config_reloads_total"


def worker_count(value: str) -> int:
    """``--workers``: a number, or ``auto`` (one per core this process may use)."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    count = int(value)
    if not 1 <= count <= 256:
        raise ValueError("--workers must be between 1 and 256, or auto")
    return count


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Listener:
    """One configured mode and the public address HAProxy serves it on."""

    spec: str  # the mode without a listen address of its own ("regular", "reverse:tcp://...")
    host: str
    port: int


def listeners(config: GatewayConfig) -> list[Listener]:
    """Every mode of ``proxy.modes`` with its public address (its own ``@host:port``, else
    ``proxy.listen``), as mitmproxy reads mode specs."""
    default_host, default_port = split_host_port(config.proxy.listen)
    found: list[Listener] = []
    for spec in config.proxy.modes:
        mode = mode_specs.ProxyMode.parse(spec)
        own = mode.custom_listen_host is not None or mode.custom_listen_port is not None
        base = spec.rsplit("@", 1)[0] if own else spec
        host = mode.listen_host(default_host) or default_host
        port = mode.listen_port(default_port)
        if port is None:
            raise StartError(f"mode {spec!r} has no port to listen on")
        found.append(Listener(base, host, port))
    return found


@dataclass
class Worker:
    number: int
    ports: list[int]  # one per listener, in order
    admin_port: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = _FIRST_BACKOFF
    restart_at: float = 0.0
    ready: bool = False
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"w{self.number}"


@dataclass
class Supervisor:
    args: argparse.Namespace
    config: GatewayConfig
    count: int
    runtime: Path
    listeners: list[Listener]
    workers: list[Worker] = field(default_factory=list)
    balancer: subprocess.Popen[bytes] | None = None
    balancer_config: Path | None = None
    stopping: bool = False
    reload_wanted: bool = False

    def __post_init__(self) -> None:
        self.workers = [
            Worker(k, [_free_port() for _ in self.listeners], _free_port())
            for k in range(1, self.count + 1)
        ]

    # -- processes --------------------------------------------------------------------------
    def worker_command(self, worker: Worker) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "addons.runner",
            "run",
            "--config",
            str(self.args.config),
            "--worker",
            str(worker.number),
            "--admin",
            f"{_LOOPBACK}:{worker.admin_port}",
            "--listen",
            f"{_LOOPBACK}:{worker.ports[0]}",
        ]
        for listener, port in zip(self.listeners, worker.ports, strict=True):
            command += ["--mode", f"{listener.spec}@{_LOOPBACK}:{port}"]
        if self.args.verbose:
            command.append("--verbose")
        return command

    def start_worker(self, worker: Worker) -> None:
        worker.process = _spawn(self.worker_command(worker))
        worker.started = time.monotonic()
        worker.ready = False

    def start_balancer(self) -> None:
        frontends = [
            haproxy.Frontend(
                f"mode{index}",
                listener.host,
                listener.port,
                tuple(haproxy.Worker(w.name, w.ports[index], w.admin_port) for w in self.workers),
            )
            for index, listener in enumerate(self.listeners)
        ]
        path = self.runtime / "haproxy.cfg"
        path.write_text(haproxy.render(frontends, self.runtime, int(_STOP_SECONDS)))
        haproxy.check(path)
        self.balancer_config = path
        self.balancer = _spawn(haproxy.command(path))

    def tend(self) -> None:
        """Restart what died; note who is ready."""
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is not None:
                log.error(
                    "worker %s exited with %s; restarting it", worker.name, process.returncode
                )
                metrics.WORKER_RESTARTS.labels("worker").inc()
                lived = now - worker.started
                worker.backoff = (
                    _FIRST_BACKOFF
                    if lived > _STABLE_SECONDS
                    else min(worker.backoff * 2, _MAX_BACKOFF)
                )
                worker.restart_at = now + worker.backoff
                worker.process, worker.ready = None, False
                worker.restarts += 1
            if worker.process is None and now >= worker.restart_at and not self.stopping:
                self.start_worker(worker)
        if self.balancer is not None and self.balancer.poll() is not None and not self.stopping:
            log.error("HAProxy exited with %s; restarting it", self.balancer.returncode)
            metrics.WORKER_RESTARTS.labels("haproxy").inc()
            assert self.balancer_config is not None
            self.balancer = _spawn(haproxy.command(self.balancer_config))

    def balancing(self) -> bool:
        """HAProxy runs and listens on every public address (ready before that, a balancer
        in front would send clients to a closed port)."""
        if self.balancer is None or self.balancer.poll() is not None:
            return False
        return _listening({listener.port for listener in self.listeners})

    def probe(self) -> int:
        """Ask every worker's /readyz; the number ready."""
        for worker in self.workers:
            worker.ready = worker.process is not None and _ready(worker.admin_port)
            metrics.WORKERS_READY.labels(worker.name).set(1 if worker.ready else 0)
        return sum(1 for w in self.workers if w.ready)

    def reload_workers(self) -> dict[str, str]:
        """SIGHUP every running worker and wait for each to count a reload: its result by
        worker name (success, failure, not running, no answer)."""
        running = [w for w in self.workers if w.process is not None and w.process.poll() is None]
        before = {w.name: _reload_counts(self._scrape(w)) for w in running}
        for worker in running:
            assert worker.process is not None
            worker.process.send_signal(signal.SIGHUP)
        results = {w.name: "not running" for w in self.workers if w not in running}
        waiting = {w.name: w for w in running}
        deadline = time.monotonic() + _RELOAD_SECONDS
        while waiting and time.monotonic() < deadline:
            time.sleep(0.1)
            for name, worker in list(waiting.items()):
                now = _reload_counts(self._scrape(worker))
                for result in ("failure", "success"):
                    if now.get(result, 0) > before[name].get(result, 0):
                        results[name] = result
                        del waiting[name]
                        break
        results.update({name: "no answer" for name in waiting})
        return results

    def signal_workers(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signum)

    def stop(self) -> None:
        """Drain: HAProxy stops accepting and its sessions finish, then the workers stop."""
        self.stopping = True
        if self.balancer is not None:
            haproxy.drain(self.balancer)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.balancer.wait(_STOP_SECONDS + 5)
            if self.balancer.poll() is None:
                self.balancer.kill()
        self.signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_SECONDS
        for worker in self.workers:
            if worker.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    # -- /metrics -----------------------------------------------------------------------------
    def metrics_text(self) -> bytes:
        from prometheus_client import REGISTRY, generate_latest

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.workers)) as pool:
            texts = list(pool.map(self._scrape, self.workers))
        own = generate_latest(REGISTRY).decode()
        parts = [("", own)] + [(w.name, t) for w, t in zip(self.workers, texts, strict=True) if t]
        return merge(parts).encode()

    @staticmethod
    def _scrape(worker: Worker) -> str:
        url = f"http://{_LOOPBACK}:{worker.admin_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=_SCRAPE_SECONDS) as answer:
                text: str = answer.read().decode()
        except OSError:
            metrics.WORKER_SCRAPE_OK.labels(worker.name).set(0)
            return ""
        metrics.WORKER_SCRAPE_OK.labels(worker.name).set(1)
        return text


def _listening(ports: set[int]) -> bool:
    """Every one of these TCP ports has a listening socket on this host (/proc/net/tcp*)."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports <= found


def _reload_counts(exposition: str) -> dict[str, float]:
    """A worker's config_reloads_total by result, from its /metrics text."""
    counts: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith(_RELOADS + "{"):
            labels, _, value = line.rpartition(" ")
            for result in ("success", "failure"):
                if f'result="{result}"' in labels:
                    counts[result] = float(value)
    return counts


# Run in the child before the program: SIGTERM when the supervisor dies (PR_SET_PDEATHSIG
# survives exec), so a supervisor killed with SIGKILL leaves nothing holding its ports.
_GUARD = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    """A worker or HAProxy: in a session of its own (a terminal's Ctrl-C reaches the
    supervisor, which stops everything in order), and gone with the supervisor."""
    guarded = [sys.executable, "-c", _GUARD, str(os.getpid()), *command]
    return subprocess.Popen(guarded, start_new_session=True)


def _ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://{_LOOPBACK}:{admin_port}/readyz", timeout=0.5
        ) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def run_workers(
    args: argparse.Namespace, config: GatewayConfig, count: int, running_text: str
) -> int:
    """The supervisor's life: start everything, tend it, drain on SIGTERM."""
    try:
        found = listeners(config)
        haproxy.binary()
    except StartError as exc:
        print(f"phi-gateway: cannot start: {exc}", file=sys.stderr)
        return cli.EXIT_CONFIG
    try:
        # Its document readers never start: the supervisor inspects nothing.
        readers = DocumentWorkers(
            config.limits.document_workers, config.limits.max_document_memory_bytes
        )
        gateway = Gateway.from_config(config, workers=readers)
    except StartError as exc:
        print(f"phi-gateway: cannot start: {exc}", file=sys.stderr)
        return cli.EXIT_CONFIG
    gateway.publish_metrics()
    # One CA for every worker, made before any starts (each would otherwise make its own).
    Path(config.proxy.confdir).mkdir(parents=True, exist_ok=True)
    CertStore.from_store(str(config.proxy.confdir), "mitmproxy", 2048)
    runtime = Path(tempfile.mkdtemp(prefix="phi-gateway-workers-"))
    supervisor = Supervisor(args, config, count, runtime, found)
    readiness = ReadinessState()
    readiness.set_problem("proxy", "no worker ready yet")
    holder = {"gateway": gateway}
    lock = threading.Lock()
    check = ReloadCheck(args, running_text)

    def reload() -> tuple[bool, str]:
        """The supervisor's policy, checked as one gateway checks it, then every worker's
        (each checks the file itself and keeps its last good policy when it refuses)."""
        with lock:
            running = holder["gateway"]
            try:
                fresh = Gateway.from_config(
                    check.candidate(running.config), audit=running.audit, workers=running.workers
                )
            except (ConfigError, StartError) as exc:
                metrics.CONFIG_RELOADS.labels("failure").inc()
                log.error("policy reload failed; the last good policy stays in force:\n%s", exc)
                return False, "reload failed; the last good policy stays in force"
            check.accept()
            holder["gateway"] = fresh
            services.apply(fresh)
            fresh.publish_metrics()
            metrics.CONFIG_RELOADS.labels("success").inc()
            results = supervisor.reload_workers()
        refused = sorted(name for name, result in results.items() if result != "success")
        if refused:
            detail = ", ".join(f"{name}: {results[name]}" for name in refused)
            log.error("policy reload: workers did not take the new policy (%s)", detail)
            if all(results[name] == "not running" for name in refused):
                # A worker that is restarting reads the file when it starts.
                return True, f"policy {fresh.policy_version} in force; restarting: {detail}"
            return False, (
                f"policy {fresh.policy_version} in force in the supervisor; not in every "
                f"worker ({detail}): they keep their last good policy"
            )
        return True, f"policy {fresh.policy_version} in force in {len(results)} worker(s)"

    reports = ReportJobs.from_config(config)
    reload_for = audited_reload(reload, lambda: holder["gateway"])

    def prepare(routes: Routes) -> None:
        routes.api = Api(lambda: holder["gateway"], reload_for, reports)
        if config.admin.console.enabled:
            routes.console = Console(lambda: holder["gateway"], reload_for, reports)
        routes.metrics_source = supervisor.metrics_text
        if config.admin.metrics_require_token:
            routes.metrics_tokens = lambda: holder["gateway"].config.admin.tokens

    try:
        servers = open_admin_servers(config, readiness, prepare)
    except OSError as exc:
        print(f"phi-gateway: {exc.strerror}", file=sys.stderr)
        gateway.close()
        return cli.EXIT_FAILURE
    admin = servers[0]
    services = TrailServices()
    services.apply(gateway)

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            supervisor.reload_wanted = True
        else:
            supervisor.stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = cli.EXIT_OK
    try:
        for worker in supervisor.workers:
            supervisor.start_worker(worker)
        # HAProxy once the workers listen (or at the start-up deadline), so it finds them up.
        since = time.monotonic()
        while supervisor.probe() < count and time.monotonic() - since < _START_SECONDS:
            if supervisor.stopping:
                break
            supervisor.tend()
            time.sleep(0.2)
        supervisor.start_balancer()
        announced = False
        next_probe = 0.0
        while not supervisor.stopping:
            time.sleep(0.1)
            supervisor.tend()
            if supervisor.reload_wanted:  # off the loop: it waits for the workers' answers
                supervisor.reload_wanted = False
                threading.Thread(
                    target=reload_for, args=("SIGHUP", "-"), name="reload", daemon=True
                ).start()
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + 0.5
                ready = supervisor.probe()
                balancing = supervisor.balancing()
                readiness.set_problem(
                    "proxy",
                    None
                    if ready and balancing
                    else "HAProxy not listening yet"
                    if ready
                    else "no worker ready behind HAProxy",
                )
                if ready and not announced:
                    announced = True
                    print(_banner(holder["gateway"], supervisor, admin.address), flush=True)
    except StartError as exc:
        print(f"phi-gateway: cannot start: {exc}", file=sys.stderr)
        code = cli.EXIT_CONFIG
    finally:
        readiness.set_problem("proxy", "stopping")
        services.stop()
        supervisor.stop()
        for server in servers:
            server.stop()
        holder["gateway"].close()
        for leftover in runtime.iterdir():
            leftover.unlink()
        runtime.rmdir()
    return code


def _banner(gateway: Gateway, supervisor: Supervisor, admin: tuple[str, int]) -> str:
    lines = [
        f"PHI egress gateway (instance {gateway.instance_id}, {supervisor.count} workers "
        "behind HAProxy)",
    ]
    lines += [
        f"  proxy:   {listener.spec} on {listener.host}:{listener.port}"
        for listener in supervisor.listeners
    ]
    lines += [
        f"  admin:   http://{admin[0]}:{admin[1]}/api/v1/  /metrics (all workers)  /readyz",
        f"  audit:   {gateway.audit.location} (chains {gateway.instance_id}, "
        f"{gateway.instance_id}-w1 ... -w{supervisor.count})",
    ]
    lines += [f"  siem:    {describe_output(o)}" for o in gateway.config.siem.outputs]
    lines += [f"  policy:  WARNING {n}" for n in notices(gateway.config.policy, time.time())]
    return "\n".join(lines)
