"""``python -m bench.soak`` (``make soak``): minutes of mixed traffic through one real gateway
while faults are injected on a schedule; every decided event must end up in the audit trail.

One ``phi-gateway run`` (enforce mode, explicit proxy) in front of nginx on three loopback
addresses placed by the test MaxMind DB: 127.0.0.1 (US, domestic), 127.0.0.2 (India, not
allowed) and 127.0.0.3 (Germany, allow-listed as a BAA destination). Client threads send, for
the whole run, domestic HL7 with and without PHI, foreign PHI (451 + incident id), foreign
clean JSON (200) and allow-listed PHI (200, recorded). Meanwhile, about 20 s apart in the
default 180 s run: the PostgreSQL audit database stopped and restarted, then frozen (SIGSTOP)
and thawed (skipped with the reason when PostgreSQL cannot be started: SQLite then); a SIGHUP
with a half-written config, then the good file and another SIGHUP; two bursts of eight 20 MiB
uploads abroad at once; a burst of slowloris connections; a burst of idle sockets (more than
the gateway's open-file limit). At the end: SIGTERM, then decided vs recorded events,
``audit verify``, RSS over time and failed requests by cause. Not part of ``make test``: it
takes minutes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import errno
import http.client
import itertools
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.procs import PHI_GATEWAY, REPO, Child, Processes, free_port, machine_busy
from bench.tools import ensure_tools
from gateway import native
from gateway.audit.chain import derive_key, fingerprint
from gateway.formats.base import INCIDENT_HEADER
from tests.support.clean_text import CLEAN_TEXTS
from tests.support.mmdb import DOMESTIC_IP, FOREIGN_IP, FOREIGN_IP_2, build_test_mmdb
from tests.support.patients import hl7_adt, make_patient
from tests.support.postgres import PostgresServer, PostgresUnavailable

RESULTS = Path(__file__).resolve().parent / "results"
BLOCKED_IP = FOREIGN_IP  # India in the test world, on no list: PHI there is refused
BAA_IP = FOREIGN_IP_2  # Germany, allow-listed: PHI there is forwarded and recorded
SECRET = "soak-test-site-secret"  # keys checkpoints and fingerprints; a throwaway trail
INSTANCE = "soak"
SAMPLE_SECONDS = 5
# Small requests answer in well under a second here even during the upload bursts; one that
# waits 5 s has met a gateway that stopped serving, and must not pass because a fault's hold
# happened to end just before a longer timeout.
CLIENT_TIMEOUT = 5.0
MIB = 1024 * 1024
# Uploads above the limit are buffered whole and then refused by size without being parsed:
# the burst costs memory (what it is there to show), not minutes of CPU on a shared VM.
MAX_BODY_BYTES = 16 * MIB
INCIDENT = re.compile(rb"INC-\d{8}T\d{6}Z-[0-9a-f]{8}")
RULE = re.compile(rb'Blocked by PHI egress gateway \(([a-z-]+)\)|"rule": ?"([a-z-]+)"')


@dataclass(frozen=True)
class Kind:
    name: str
    ip: str
    phi: bool
    expect: int  # what a healthy gateway answers
    weight: int  # share of the steady traffic

    @property
    def domestic(self) -> bool:
        return self.ip == DOMESTIC_IP

    @property
    def recorded_when_forwarded(self) -> bool:
        """A 200 for this kind must have produced an audit row (allow-listed PHI)."""
        return self.phi and self.ip == BAA_IP

    @property
    def may_be_recorded(self) -> bool:
        """The gateway records this kind whatever it answers (PHI leaving the country)."""
        return self.phi and not self.domestic


KINDS = (
    Kind("domestic-phi", DOMESTIC_IP, True, 200, 20),
    Kind("domestic-clean", DOMESTIC_IP, False, 200, 20),
    Kind("foreign-phi", BLOCKED_IP, True, 451, 20),
    Kind("foreign-clean", BLOCKED_IP, False, 200, 15),
    Kind("baa-phi", BAA_IP, True, 200, 15),
    Kind("baa-clean", BAA_IP, False, 200, 10),
)
FLOOD_SOURCE = "127.0.0.50"  # where slowloris and idle sockets come from
UPLOAD = Kind("foreign-upload", BLOCKED_IP, True, 451, 0)


def payload(kind: Kind, n: int) -> tuple[bytes, str]:
    if kind.phi:
        # A new patient and control id per request: every body, and so every audit
        # fingerprint, is unique, which lets allow-listed rows be matched to responses.
        return hl7_adt(make_patient(n), control_id=f"SOAK{n:09d}").encode(), "application/hl7-v2"
    note = CLEAN_TEXTS[n % len(CLEAN_TEXTS)]
    body = json.dumps({"report": "unit-census", "seq": n, "note": note}).encode()
    return body, "application/json"


def upload_body(size: int) -> bytes:
    head = hl7_adt(make_patient(7_000_001), control_id="SOAKUPLOAD").encode()
    line = b"NTE|1||" + b"Bed census and staffing notes for the quarter. " * 20 + b"\r"
    return (head + line * (size // len(line) + 1))[:size]


# -- the client side's account -----------------------------------------------------------------


class Tally:
    """Every answer the clients got, and what it means for the audit trail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key = derive_key(SECRET.encode(), "fingerprint")
        self.sent: collections.Counter[str] = collections.Counter()
        self.as_expected: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[tuple[str, str]] = collections.Counter()
        self.failures_in: collections.Counter[tuple[str, str]] = collections.Counter()
        self.rules: collections.Counter[tuple[str, str]] = collections.Counter()
        self.incidents: set[str] = set()  # ids answered to clients (refusals)
        self.forwarded_phi: set[str] = set()  # fingerprints of allow-listed PHI answered 200
        self.unanswered_recordable = 0  # PHI abroad whose answer never came (it may be a row)
        # Uploads abroad cut for their size while still sending: the 413 (and its incident id)
        # came while the client was writing, so it saw a reset; each is a decided block.
        self.size_cut = 0
        self.domestic_ms: dict[str, list[float]] = collections.defaultdict(list)

    def answered(
        self,
        kind: Kind,
        *,
        sent: bytes,
        status: int,
        headers: dict[str, str],
        body: bytes,
        window: str,
        seconds: float,
    ) -> str:
        found = INCIDENT.search(body)
        incident = found.group().decode() if found else headers.get(INCIDENT_HEADER.lower(), "")
        rule = _rule(body) if status == 451 else ""
        cause = ""
        if status != kind.expect:
            cause = f"status {status}" + (f" ({rule})" if rule else "")
        elif status == 451 and found is None:
            cause = "451 without an incident id in the body"
        elif status == 200 and body != b"ok":
            cause = "200 not from the upstream"
        with self.lock:
            self.sent[kind.name] += 1
            if incident:
                self.incidents.add(incident)
            if status == 451:
                self.rules[(kind.name, rule or "?")] += 1
            if status == 200 and kind.recorded_when_forwarded:
                self.forwarded_phi.add(fingerprint(self.key, sent))
            if cause:
                self.failures[(kind.name, cause)] += 1
                self.failures_in[(window, kind.name)] += 1
            else:
                self.as_expected[kind.name] += 1
                if kind.domestic:
                    self.domestic_ms[window].append(seconds * 1000)
        return cause

    def failed(self, kind: Kind, cause: str, window: str) -> None:
        with self.lock:
            self.sent[kind.name] += 1
            self.failures[(kind.name, cause)] += 1
            self.failures_in[(window, kind.name)] += 1
            if kind.may_be_recorded:
                self.unanswered_recordable += 1

    @property
    def decided(self) -> int:
        return len(self.incidents) + len(self.forwarded_phi) + self.size_cut


def _rule(body: bytes) -> str:
    found = RULE.search(body)
    if found is None:
        return ""
    return (found.group(1) or found.group(2)).decode()


class Client:
    """One keep-alive connection to the gateway as an explicit HTTP proxy; a fresh one after
    any error, as a real client library would."""

    def __init__(self, port: int, timeout: float = CLIENT_TIMEOUT) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, url: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            # An absolute URL makes this a proxy request; http.client takes Host from it.
            self.conn.request("POST", url, body=body, headers={"Content-Type": content_type})
            response = self.conn.getresponse()
            data = response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
            if response.will_close:
                self.close()
            return response.status, headers, data
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- processes ---------------------------------------------------------------------------------

NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format soak '$request_uri $status';
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 64m;
    keepalive_requests 1000000;
    default_type text/plain;
{servers}
}}
"""
NGINX_SERVER = """\
    server {{
        listen {ip}:{port};
        access_log {prefix}/{ip}.log soak;
        location / {{ return 200 'ok'; }}
    }}"""


def start_nginx(procs: Processes, nginx: Path, tmp: Path) -> dict[str, int]:
    """nginx on the three addresses; one access log per address tells what reached where."""
    ports = {ip: free_port(ip) for ip in (DOMESTIC_IP, BLOCKED_IP, BAA_IP)}
    prefix = tmp / "nginx"
    prefix.mkdir()
    servers = "\n".join(
        NGINX_SERVER.format(ip=ip, port=port, prefix=prefix) for ip, port in ports.items()
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            # As root the workers would otherwise drop to "nobody", who cannot write in tmp.
            user="user root;" if os.geteuid() == 0 else "",
            prefix=prefix,
            servers=servers,
        )
    )
    child = procs.start("nginx", [str(nginx), "-p", str(prefix), "-c", str(conf)])
    for ip, port in ports.items():
        _wait_port(ip, port, child)
    return ports


def _wait_port(host: str, port: int, child: Child, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited {child.proc.returncode}:\n{child.tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name}: nothing listening on {host}:{port}:\n{child.tail()}")


def gateway_config(tmp: Path, postgres: PostgresServer | None) -> dict[str, Any]:
    # audit.database names the directory of the checkpoint log and spool with PostgreSQL too.
    audit: dict[str, Any] = {"database": str(tmp / "audit.db"), "instance_id": INSTANCE}
    if postgres is not None:
        audit |= {"backend": "postgresql", "postgresql_dsn": postgres.dsn}
    return {
        "geo": {
            "databases": [
                {"path": str(build_test_mmdb(tmp / "world.mmdb")), "answers_reserved": True}
            ],
            "overrides": [],
        },
        "policy": {
            "mode": "enforce",
            "allow_destinations": [{"cidr": f"{BAA_IP}/32", "reason": "BAA SOAK-1 (test)"}],
        },
        "limits": {"max_body_bytes": MAX_BODY_BYTES},
        # Short enough that the slowloris burst (held 10 s) is cut within it.
        "connections": {"header_seconds": 5},
        "audit": audit,
        "proxy": {"confdir": str(tmp / "mitmproxy")},
    }


@dataclass
class Gateway:
    child: Child
    port: int
    admin_port: int
    config: Path

    @property
    def pid(self) -> int:
        return self.child.pid

    def admin(self, path: str, timeout: float = 2) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[str, float] | None:
        """Every sample summed by name and sorted labels (None when /metrics does not answer)."""
        try:
            status, text = self.admin("/metrics")
        except OSError:
            return None
        if status != 200:
            return None
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                name = f"{sample.name}{{{labels}}}" if labels else sample.name
                out[name] = out.get(name, 0.0) + sample.value
        return out


def start_gateway(procs: Processes, config: Path, nofile: int) -> Gateway:
    port, admin_port = free_port(), free_port()
    argv = [str(PHI_GATEWAY), "run", "--config", str(config)]
    argv += ["--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin_port}"]
    child = procs.start("phi-gateway", argv, cwd=REPO, env={"PHI_GATEWAY_SECRET": SECRET})
    if nofile:
        # systemd's default soft limit for services; the machine's may be far higher.
        hard = resource.prlimit(child.pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(child.pid, resource.RLIMIT_NOFILE, (nofile, hard))
    gateway = Gateway(child, port, admin_port, config)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"phi-gateway exited {child.proc.returncode}:\n{child.tail()}")
        with contextlib.suppress(OSError):
            if gateway.admin("/readyz", timeout=1)[0] == 200:
                return gateway
        time.sleep(0.2)
    raise RuntimeError(f"phi-gateway not ready after 60 s:\n{child.tail()}")


def rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def open_fds(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return None


# -- the schedule ------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    window: str
    rss_mib: float | None
    fds: int | None
    log_mib: float
    healthz_ms: float | None  # None: no answer within 2 s
    store_up: float | None
    spool_events: float | None
    held_events: float | None


@dataclass
class FaultResult:
    name: str
    start: float
    end: float = 0.0
    summary: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned:
    name: str
    at: float
    hold: float


FAULTS = (
    "postgres-stop",
    "truncated-config",
    "large-uploads",
    "postgres-freeze",
    "slowloris",
    "idle-sockets",
)
# Faults start between these shares of the run: before, a baseline for RSS; after, a quiet
# tail in which the gateway must have recovered and RSS come back down.
FIRST_FAULT, LAST_FAULT, WARMUP = 0.2, 0.7, 0.1
DEFAULT_HOLD = 15.0
WRITE_TIMEOUT = 10.0  # audit.write_timeout_seconds (default): a freeze must outlast it


def plan(seconds: float) -> list[Planned]:
    first, last = FIRST_FAULT * seconds, LAST_FAULT * seconds
    spacing = (last - first) / (len(FAULTS) - 1)
    hold = min(DEFAULT_HOLD, 0.8 * spacing)
    out = []
    for i, name in enumerate(FAULTS):
        this = hold
        if name == "postgres-freeze":
            this = max(hold, WRITE_TIMEOUT + 5)  # the watchdog must cut a stalled call
        elif name == "truncated-config":
            this = min(hold, 6.0)
        out.append(Planned(name, first + i * spacing, this))
    return out


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.procs = Processes(tmp)
        self.postgres: PostgresServer | None = None
        self.postgres_why = ""
        self.tally = Tally()
        self.stop = threading.Event()
        self.window = "steady"  # the fault in force; read by clients when they send
        self.t0 = 0.0
        self.samples: list[Sample] = []
        self.faults: list[FaultResult] = []
        self.numbers = itertools.count(1)
        self.background: list[threading.Thread] = []  # recovery watchers still running

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- set-up -----------------------------------------------------------------------------
    def start(self) -> None:
        tools = ensure_tools()
        self.ports = start_nginx(self.procs, tools.nginx, self.tmp)
        try:
            self.postgres = PostgresServer()
        except PostgresUnavailable as exc:
            self.postgres_why = " ".join(str(exc).split())[:300] or "no reason given"
            print(f"soak: PostgreSQL could not be started ({self.postgres_why}); audit on SQLite")
        config = self.tmp / "gateway.yaml"
        self.good_config = yaml.safe_dump(gateway_config(self.tmp, self.postgres), sort_keys=False)
        config.write_text(self.good_config)
        self.gateway = start_gateway(self.procs, config, self.args.gateway_nofile)
        print(
            f"gateway pid {self.gateway.pid} on 127.0.0.1:{self.gateway.port} (admin "
            f"{self.gateway.admin_port}), audit on "
            f"{'PostgreSQL ' + self.postgres.dsn if self.postgres else 'SQLite'}, open-file "
            f"limit {resource.prlimit(self.gateway.pid, resource.RLIMIT_NOFILE)[0]}; upstreams "
            + ", ".join(f"{ip}:{port}" for ip, port in self.ports.items()),
            flush=True,
        )

    def url(self, kind: Kind, n: int) -> str:
        return f"http://{kind.ip}:{self.ports[kind.ip]}/soak/{kind.name}/{n}"

    def send(
        self, client: Client, kind: Kind, n: int, window: str, upload: bytes | None = None
    ) -> str:
        """One request; '' when answered as expected, else the cause."""
        body, ctype = payload(kind, n) if upload is None else (upload, "application/hl7-v2")
        started = time.monotonic()
        try:
            status, headers, data = client.post(self.url(kind, n), body, ctype)
        except TimeoutError:
            self.tally.failed(kind, "client timeout", window)
            return "client timeout"
        except (OSError, http.client.HTTPException) as exc:
            cause = f"connection error ({type(exc).__name__})"
            self.tally.failed(kind, cause, window)
            return cause
        return self.tally.answered(
            kind,
            sent=body,
            status=status,
            headers=headers,
            body=data,
            window=window,
            seconds=time.monotonic() - started,
        )

    def preflight(self) -> None:
        """One request of each kind, before any load: a policy that does not do what the soak
        expects would make every later count meaningless."""
        client = Client(self.gateway.port)
        for kind in KINDS:
            cause = self.send(client, kind, next(self.numbers), "preflight")
            if cause:
                raise RuntimeError(f"preflight: {kind.name} {cause}, expected {kind.expect}")
        client.close()

    # -- load ---------------------------------------------------------------------------------
    def traffic(self, worker: int) -> None:
        rng = random.Random(worker)
        weights = [k.weight for k in KINDS]
        client = Client(self.gateway.port)
        interval = self.args.clients / self.args.rate
        next_at = time.monotonic() + rng.random() * interval
        for sent in itertools.count():
            if self.stop.wait(max(0.0, next_at - time.monotonic())):
                break
            if sent % self.args.keepalive_requests == 0:
                # New connections keep coming, as from a hospital's many clients: a gateway
                # that cannot accept any more fails them, not only the ones already open.
                client.close()
            kind = rng.choices(KINDS, weights)[0]
            self.send(client, kind, next(self.numbers), self.window)
            # Paced, not closed-loop: after a stall carry on from now instead of bursting.
            next_at = max(next_at + interval, time.monotonic())
        client.close()

    def sampler(self) -> None:
        log = self.gateway.child.log
        tick = 0
        while not self.stop.wait(
            max(0.0, self.t0 + (tick + 1) * SAMPLE_SECONDS - time.monotonic())
        ):
            tick += 1
            pid = self.gateway.pid
            rss = rss_kib(pid)
            started = time.monotonic()
            try:
                healthy = self.gateway.admin("/healthz")[0] == 200
            except OSError:
                healthy = False
            healthz = (time.monotonic() - started) * 1000 if healthy else None
            metrics = self.gateway.metrics() or {}
            self.samples.append(
                Sample(
                    t=round(self.now(), 1),
                    window=self.window,
                    rss_mib=round(rss / 1024, 1) if rss else None,
                    fds=open_fds(pid),
                    log_mib=round(log.stat().st_size / MIB, 2) if log.exists() else 0.0,
                    healthz_ms=round(healthz, 1) if healthz is not None else None,
                    store_up=metrics.get("phi_gateway_audit_store_up"),
                    spool_events=metrics.get("phi_gateway_audit_spool_events"),
                    held_events=metrics.get("phi_gateway_audit_held_events"),
                )
            )

    def injector(self, schedule: list[Planned]) -> None:
        runners: dict[str, Callable[[float], tuple[str, dict[str, Any]]]] = {
            "postgres-stop": self.postgres_stop,
            "postgres-freeze": self.postgres_freeze,
            "truncated-config": self.truncated_config,
            "large-uploads": self.large_uploads,
            "slowloris": self.slowloris,
            "idle-sockets": self.idle_sockets,
        }
        for planned in schedule:
            if self.stop.wait(max(0.0, self.t0 + planned.at - time.monotonic())):
                return
            result = FaultResult(planned.name, round(self.now(), 1))
            self.window = planned.name
            try:
                result.summary, result.detail = runners[planned.name](planned.hold)
            except Exception as exc:  # a fault that cannot be injected must not end the soak
                result.summary = f"could not be injected: {type(exc).__name__}: {exc}"
            finally:
                self.window = "steady"
            result.end = round(self.now(), 1)
            self.faults.append(result)
            print(f"  t={result.start:6.1f}s {result.name}: {result.summary}", flush=True)

    # -- faults -------------------------------------------------------------------------------
    def _store_state(self) -> tuple[float, float, float, float] | None:
        """(store up, spooled, held, unwritten): unwritten is every event queued and not yet
        in the chain, so unwritten - spooled - held is what waits where no gauge shows it."""
        metrics = self.gateway.metrics()
        if metrics is None:
            return None
        queued = sum(
            v for k, v in metrics.items() if k.startswith("phi_gateway_audit_events_total{")
        )
        return (
            metrics.get("phi_gateway_audit_store_up", 0.0),
            metrics.get("phi_gateway_audit_spool_events", 0.0),
            metrics.get("phi_gateway_audit_held_events", 0.0),
            queued - metrics.get("phi_gateway_audit_chain_head_seq", 0.0),
        )

    def _watch_store(self, seconds: float, timeline: list[list[float]], began: float) -> None:
        """The store's state once a second for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop.is_set():
            state = self._store_state()
            if state is not None:
                timeline.append([round(time.monotonic() - began, 1), *state])
            time.sleep(1)

    def _recover(self, name: str, detail: dict[str, Any], began: float, restored: float) -> None:
        """In the background (the next fault keeps its time): how long after the database
        came back the store took events again and the spool was empty."""
        timeline: list[list[float]] = detail["timeline"]
        up_at: float | None = None
        text = ""
        while time.monotonic() - restored < 60 and not self.stop.is_set():
            state = self._store_state()
            if state is not None:
                timeline.append([round(time.monotonic() - began, 1), *state])
                if state[0] == 1 and up_at is None:
                    up_at = time.monotonic() - restored
                if up_at is not None and state[1] == 0 and state[2] == 0:
                    empty = time.monotonic() - restored
                    text = f"store up {up_at:.1f} s after, spool empty {empty:.1f} s after"
                    break
            time.sleep(0.5)
        else:
            text = f"store {'up' if up_at is not None else 'still DOWN'}, spool NOT empty"
        detail["recovery"] = text
        print(f"  t={self.now():6.1f}s {name} recovered: {text}", flush=True)

    def _database_fault(
        self, name: str, hold: float, start: Callable[[], None], end: Callable[[], None]
    ) -> tuple[str, dict[str, Any]]:
        if self.postgres is None:
            return f"skipped: audit on SQLite ({self.postgres_why})", {"skipped": True}
        timeline: list[list[float]] = []
        began = time.monotonic()
        start()
        try:
            self._watch_store(hold, timeline, began)
        finally:
            end()
        restored = time.monotonic()
        detail: dict[str, Any] = {"timeline": timeline}
        down = next((t for t, up, *_ in timeline if up == 0), None)
        detail |= {
            "store_down_after_s": down,
            "spooled_peak": max((r[2] for r in timeline), default=0),
            "held_peak": max((r[3] for r in timeline), default=0),
            # Queued, in the chain nowhere, in no spool and counted in no gauge: memory only.
            "unseen_peak": max((r[4] - r[2] - r[3] for r in timeline), default=0),
        }
        recovery = threading.Thread(
            target=self._recover, args=(name, detail, began, restored), daemon=True
        )
        recovery.start()
        self.background.append(recovery)
        shown = f"store_up 0 after {down:.0f} s" if down is not None else "store_up never 0"
        return (
            f"{hold:.0f} s: {shown}; spooled up to {detail['spooled_peak']:.0f}, held in memory "
            f"up to {detail['held_peak']:.0f}, queued but in no gauge up to "
            f"{detail['unseen_peak']:.0f}",
            detail,
        )

    def postgres_stop(self, hold: float) -> tuple[str, dict[str, Any]]:
        pg = self.postgres
        return self._database_fault(
            "postgres-stop",
            hold,
            lambda: pg.halt() if pg else None,
            lambda: pg.resume() if pg else None,
        )

    def postgres_freeze(self, hold: float) -> tuple[str, dict[str, Any]]:
        pg = self.postgres
        return self._database_fault(
            "postgres-freeze",
            hold,
            lambda: pg.freeze() if pg else None,
            lambda: pg.thaw() if pg else None,
        )

    def truncated_config(self, hold: float) -> tuple[str, dict[str, Any]]:
        path = self.gateway.config
        good = self.good_config.encode()
        cut = good[: len(good) // 2]
        before = self.gateway.metrics() or {}
        log_before = self.gateway.child.log.stat().st_size
        path.write_bytes(cut)  # in place, as an editor or a copy that was interrupted leaves it
        os.kill(self.gateway.pid, signal.SIGHUP)
        self.stop.wait(hold)
        during = self.gateway.metrics() or {}
        # The good file back the way docs/operations recommends: a temp file renamed over it.
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(good)
        tmp.replace(path)
        os.kill(self.gateway.pid, signal.SIGHUP)
        self.stop.wait(2)
        after = self.gateway.metrics() or {}
        key_ok, key_bad = (
            "phi_gateway_config_reloads_total{result=success}",
            ("phi_gateway_config_reloads_total{result=failure}"),
        )
        cut_ok = during.get(key_ok, 0) - before.get(key_ok, 0)
        cut_bad = during.get(key_bad, 0) - before.get(key_bad, 0)
        restored_ok = after.get(key_ok, 0) - during.get(key_ok, 0)
        with self.gateway.child.log.open("rb") as f:
            f.seek(log_before)
            logged = f.read().decode(errors="replace")
        refused = "policy reload failed" in logged
        verdict = (
            "REFUSED" if cut_bad == 1 and cut_ok == 0 else f"ACCEPTED (successes +{cut_ok:.0f})"
        )
        summary = (
            f"{len(cut)} of {len(good)} bytes + SIGHUP: {verdict}"
            f"{', logged' if refused else ', not logged'}; good file + SIGHUP: "
            f"{'reloaded' if restored_ok == 1 else f'NOT reloaded (successes +{restored_ok:.0f})'}"
        )
        return summary, {
            "cut_bytes": len(cut),
            "good_bytes": len(good),
            "cut_reload_successes": cut_ok,
            "cut_reload_failures": cut_bad,
            "restored_reload_successes": restored_ok,
            "refusal_logged": refused,
        }

    def large_uploads(self, hold: float) -> tuple[str, dict[str, Any]]:
        """Two bursts a few seconds apart: memory kept after the first that the second does
        not add to is a high-water mark; memory each burst adds is growth."""
        count, size = self.args.uploads, self.args.upload_mib * MIB
        body = upload_body(size)
        causes: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        rss = [rss_kib(self.gateway.pid) or 0]  # before, then peak and after of each burst

        def upload(n: int) -> None:
            client = Client(self.gateway.port, timeout=120)
            cause = self.send(client, UPLOAD, n, self.window, upload=body)
            client.close()
            with lock:
                causes[cause or f"{UPLOAD.expect} as expected"] += 1
                if cause and ("ConnectionReset" in cause or "BrokenPipe" in cause):
                    self.tally.size_cut += 1

        began = time.monotonic()
        took = []
        for burst in range(2):
            started = time.monotonic()
            threads = [
                threading.Thread(target=upload, args=(next(self.numbers),), daemon=True)
                for _ in range(count)
            ]
            for thread in threads:
                thread.start()
            peak = 0
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_kib(self.gateway.pid) or 0)
                time.sleep(0.25)
            took.append(time.monotonic() - started)
            # Settle: half the hold after the first burst, the rest after the second.
            rest = hold / 2 if burst == 0 else hold - (time.monotonic() - began)
            self.stop.wait(max(1.0, rest))
            rss += [peak, rss_kib(self.gateway.pid) or 0]
        answers = ", ".join(f"{n} x {c}" for c, n in causes.most_common())
        mib = [round(v / 1024, 1) for v in rss]
        return (
            f"2 bursts of {count} x {self.args.upload_mib} MiB abroad at once ({took[0]:.1f} s, "
            f"{took[1]:.1f} s): {answers}; RSS {mib[0]:.0f} -> peak {mib[1]:.0f} -> "
            f"{mib[2]:.0f} -> peak {mib[3]:.0f} -> {mib[4]:.0f} MiB",
            {
                "seconds": [round(t, 1) for t in took],
                "answers": dict(causes),
                "rss_before_mib": mib[0],
                "rss_peak_mib": [mib[1], mib[3]],
                "rss_after_mib": [mib[2], mib[4]],
            },
        )

    def _open(self, count: int, budget: float) -> tuple[list[socket.socket], int]:
        """Up to ``count`` connections to the proxy port (non-blocking, 25 every 20 ms); those
        not connected within ``budget`` fail. Paced because a thousand SYNs at once overflow
        the listen queue, and with SYN cookies the overflow become connections only the
        client knows of: the gateway would never hold them."""
        selector = selectors.DefaultSelector()
        address = ("127.0.0.1", self.gateway.port)
        failed = 0
        for i in range(count):
            if i and i % 25 == 0:
                time.sleep(0.02)
            sock = socket.socket()
            # Another host than the traffic's clients: caps are per client address.
            sock.bind((FLOOD_SOURCE, 0))
            sock.setblocking(False)
            if sock.connect_ex(address) in (0, errno.EINPROGRESS):
                selector.register(sock, selectors.EVENT_WRITE, sock)
            else:
                failed += 1
                sock.close()
        sockets: list[socket.socket] = []
        deadline = time.monotonic() + budget
        while selector.get_map() and time.monotonic() < deadline and not self.stop.is_set():
            for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                ready: socket.socket = key.data
                selector.unregister(ready)
                if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    sockets.append(ready)
                else:
                    failed += 1
                    ready.close()
        for key in list(selector.get_map().values()):  # still connecting: given up
            key.data.close()
            failed += 1
        selector.close()
        return sockets, failed

    @staticmethod
    def _closed_by_peer(sock: socket.socket) -> bool:
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True  # b"" (closed) or an answer (e.g. 408): the gateway ended it either way

    def slowloris(self, hold: float) -> tuple[str, dict[str, Any]]:
        target = f"http://{DOMESTIC_IP}:{self.ports[DOMESTIC_IP]}/soak/slow"
        sockets, failed = self._open(self.args.slowloris, 5)
        start = f"POST {target} HTTP/1.1\r\nHost: {DOMESTIC_IP}\r\nX-Slow: ".encode()
        alive = set(range(len(sockets)))
        closed_at: list[float] = []
        began = time.monotonic()
        for i in list(alive):
            with contextlib.suppress(OSError):
                sockets[i].send(start)
        # One more header byte per connection per second: never a complete request.
        while time.monotonic() - began < hold and not self.stop.wait(1):
            for i in list(alive):
                if self._closed_by_peer(sockets[i]):
                    alive.discard(i)
                    closed_at.append(time.monotonic() - began)
                    continue
                try:
                    sockets[i].send(b"a")
                except OSError:
                    alive.discard(i)
                    closed_at.append(time.monotonic() - began)
        for sock in sockets:
            sock.close()
        first = f", first after {min(closed_at):.0f} s" if closed_at else ""
        return (
            f"{len(sockets)} connections sending a header byte a second for {hold:.0f} s "
            f"({failed} could not connect): {len(closed_at)} closed by the gateway{first}, "
            f"{len(alive)} still open",
            {
                "opened": len(sockets),
                "connect_failures": failed,
                "closed_by_gateway": len(closed_at),
                "still_open": len(alive),
            },
        )

    def idle_sockets(self, hold: float) -> tuple[str, dict[str, Any]]:
        count = self.args.idle_sockets
        # The soak's own limit must not be what runs out (children were started already).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < count + 512:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))
        log = self.gateway.child.log
        log_before = log.stat().st_size
        began = time.monotonic()
        sockets, failed = self._open(count, hold / 2)
        opened_in = time.monotonic() - began
        fds_peak = open_fds(self.gateway.pid) or 0
        probes = unanswered = 0
        while time.monotonic() - began < hold and not self.stop.wait(1):
            fds_peak = max(fds_peak, open_fds(self.gateway.pid) or 0)
            probes += 1
            try:
                unanswered += self.gateway.admin("/healthz", timeout=1)[0] != 200
            except OSError:
                unanswered += 1
        closed = sum(1 for sock in sockets if self._closed_by_peer(sock))
        for sock in sockets:
            sock.close()
        grew = log.stat().st_size - log_before
        return (
            f"{len(sockets)} of {count} idle connections opened in {opened_in:.1f} s "
            f"({failed} connect failures), held {hold:.0f} s: {closed} closed by the gateway; "
            f"gateway fds peaked at {fds_peak}; /healthz unanswered {unanswered} of {probes} "
            f"probes; log +{grew / 1024:.0f} KiB",
            {
                "opened": len(sockets),
                "connect_failures": failed,
                "closed_by_gateway": closed,
                "gateway_fds_peak": fds_peak,
                "healthz_probes": probes,
                "healthz_unanswered": unanswered,
                "log_growth_bytes": grew,
            },
        )

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        seconds = self.args.seconds
        schedule = plan(seconds)
        self.preflight()
        print(
            f"soak: {seconds} s, {self.args.clients} clients at {self.args.rate} req/s in all; "
            "faults:\n"
            + "\n".join(f"  t={p.at:6.1f}s {p.name} ({p.hold:.0f} s)" for p in schedule),
            flush=True,
        )
        self.t0 = time.monotonic()
        threads = [
            threading.Thread(target=self.traffic, args=(i,), daemon=True, name=f"client-{i}")
            for i in range(self.args.clients)
        ]
        threads.append(threading.Thread(target=self.sampler, daemon=True, name="sampler"))
        injector = threading.Thread(target=self.injector, args=(schedule,), daemon=True)
        for thread in [*threads, injector]:
            thread.start()
        died = False
        while self.now() < seconds:
            if self.gateway.child.proc.poll() is not None:
                died = True
                print(
                    f"soak: the gateway EXITED {self.gateway.child.proc.returncode} "
                    f"at t={self.now():.0f}s"
                )
                break
            time.sleep(0.5)
        self.stop.set()
        for thread in [*threads, injector]:
            thread.join(CLIENT_TIMEOUT + 130)  # an upload may be mid-way
        for thread in self.background:
            thread.join(5)
        return self.finish(schedule, died)

    def finish(self, schedule: list[Planned], died: bool) -> dict[str, Any]:
        time.sleep(1)  # let the writer commit what the last answers decided
        queued = self._queued_events()
        log = self.gateway.child.log
        offset = log.stat().st_size
        started = time.monotonic()
        code = self.procs.stop(self.gateway.child, timeout=60)
        shutdown_s = time.monotonic() - started
        with log.open("rb") as f:
            f.seek(offset)
            shutdown_lines = f.read().decode(errors="replace").splitlines()[-15:]
        rows = self.audit_rows()
        verify = self.audit_verify()
        reached = self.upstream_log()
        return self.summary(
            schedule=schedule,
            died=died,
            queued=queued,
            code=code,
            shutdown_s=shutdown_s,
            shutdown_lines=shutdown_lines,
            rows=rows,
            verify=verify,
            reached=reached,
        )

    def _queued_events(self) -> float | None:
        metrics = self.gateway.metrics()
        if metrics is None:
            return None
        return sum(v for k, v in metrics.items() if k.startswith("phi_gateway_audit_events_total{"))

    def audit_rows(self) -> list[tuple[str, str, str]]:
        """(incident id, payload fingerprint, error) of every decision event in the trail."""
        query = (
            "SELECT incident_id, payload_fingerprint, error FROM audit_events "
            "WHERE kind = 'decision' AND instance_id = '" + INSTANCE + "'"
        )
        if self.postgres is not None:
            with psycopg.connect(self.postgres.dsn, connect_timeout=10) as conn:
                return [(str(a), str(b), str(c)) for a, b, c in conn.execute(query).fetchall()]
        db = sqlite3.connect(f"file:{self.tmp / 'audit.db'}?mode=ro", uri=True, timeout=10)
        try:
            return [(str(a), str(b), str(c)) for a, b, c in db.execute(query).fetchall()]
        finally:
            db.close()

    def audit_verify(self) -> dict[str, Any]:
        argv = [str(PHI_GATEWAY), "audit", "verify", "--config", str(self.gateway.config)]
        env = {**os.environ, "PHI_GATEWAY_SECRET": SECRET}
        text = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=300, check=False
        )
        as_json = subprocess.run(
            [*argv, "--json"], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        try:
            parsed = json.loads(as_json.stdout)
        except json.JSONDecodeError:
            parsed = {}
        return {
            "exit": text.returncode,
            "intact": bool(parsed.get("intact")),
            "complete": bool(parsed.get("complete")),
            "events": parsed.get("events"),
            "spooled": parsed.get("spooled"),
            "text": (text.stdout + text.stderr).strip(),
        }

    def upstream_log(self) -> dict[str, collections.Counter[str]]:
        """Requests each upstream received, by kind (from the path): what actually left."""
        out: dict[str, collections.Counter[str]] = {}
        for ip in self.ports:
            counts: collections.Counter[str] = collections.Counter()
            path = self.tmp / "nginx" / f"{ip}.log"
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    parts = line.split("/")
                    counts[parts[2] if len(parts) > 2 else "?"] += 1
            out[ip] = counts
        return out

    # -- the account --------------------------------------------------------------------------
    def summary(
        self,
        *,
        schedule: list[Planned],
        died: bool,
        queued: float | None,
        code: int,
        shutdown_s: float,
        shutdown_lines: list[str],
        rows: list[tuple[str, str, str]],
        verify: dict[str, Any],
        reached: dict[str, collections.Counter[str]],
    ) -> dict[str, Any]:
        tally = self.tally
        ids = {r[0] for r in rows}
        prints = collections.Counter(r[1] for r in rows)
        missing_refusals = len(tally.incidents - ids)
        missing_forwarded = sum(1 for f in tally.forwarded_phi if f not in prints)
        loose = [r for r in rows if r[0] not in tally.incidents and r[1] not in tally.forwarded_phi]
        # Rows of size refusals whose answer the client could not read match those cuts.
        cut_rows = sum(1 for r in loose if "body exceeds max_" in r[2])
        unmatched = len(loose) - min(cut_rows, tally.size_cut)
        duplicated = sum(prints[f] - 1 for f in tally.forwarded_phi if prints[f] > 1)
        seconds = self.args.seconds
        rss = rss_account([s for s in self.samples if s.t >= WARMUP * seconds], schedule, seconds)
        domestic = {
            f"{k} / {c}": n for (k, c), n in tally.failures.items() if k.startswith("domestic")
        }
        leaked = sum(reached[BLOCKED_IP][k.name] for k in (*KINDS, UPLOAD) if k.phi)
        log = self.gateway.child.log
        text = log.read_text(errors="replace") if log.exists() else ""
        problems = []
        if tally.decided != len(rows):
            problems.append(f"MISMATCH: {tally.decided} events decided, {len(rows)} recorded")
        if verify["exit"] != 0 or not (verify["intact"] and verify["complete"]):
            problems.append(f"audit verify exit {verify['exit']}")
        if domestic:
            problems.append(f"{sum(domestic.values())} domestic request(s) failed")
        if leaked:
            problems.append(f"{leaked} PHI request(s) reached the not-allowed foreign upstream")
        if died:
            problems.append("the gateway exited during the run")
        return {
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": _commit(),
            "gateway_code": native.STATE.describe(),
            "nproc": os.cpu_count(),
            "settings": {
                "seconds": seconds,
                "clients": self.args.clients,
                "rate": self.args.rate,
                "keepalive_requests": self.args.keepalive_requests,
                "store": "postgresql" if self.postgres else "sqlite",
                "store_note": self.postgres_why,
                "gateway_nofile": self.args.gateway_nofile,
                "uploads": f"{self.args.uploads}x{self.args.upload_mib}MB",
                "slowloris": self.args.slowloris,
                "idle_sockets": self.args.idle_sockets,
                "max_body_bytes": MAX_BODY_BYTES,
            },
            "faults": [asdict(f) for f in self.faults],
            "traffic": {
                name: {
                    "sent": tally.sent[name],
                    "as_expected": tally.as_expected[name],
                    "failed": tally.sent[name] - tally.as_expected[name],
                }
                for name in [*(k.name for k in KINDS), UPLOAD.name]
            },
            "refusal_rules": {f"{k} / {r}": n for (k, r), n in sorted(tally.rules.items())},
            "failures": {f"{k} / {c}": n for (k, c), n in sorted(tally.failures.items())},
            "failures_by_window": {
                f"{w} / {k}": n for (w, k), n in sorted(tally.failures_in.items())
            },
            "domestic_failures": domestic,
            "domestic_latency_ms": {
                w: _percentiles(v) for w, v in sorted(tally.domestic_ms.items())
            },
            "events": {
                "decided": tally.decided,
                "refusals_with_incident_id": len(tally.incidents),
                "allow_listed_phi_forwarded": len(tally.forwarded_phi),
                "recorded": len(rows),
                "queued_by_gateway": queued,
                "refusals_missing_from_trail": missing_refusals,
                "forwarded_missing_from_trail": missing_forwarded,
                "rows_matching_no_answer": unmatched,
                "size_cuts_seen_as_resets": tally.size_cut,
                "forwarded_recorded_twice": duplicated,
                "answers_lost_that_may_be_rows": tally.unanswered_recordable,
                "equal": tally.decided == len(rows),
            },
            "verify": verify,
            "rss": rss,
            "samples": [asdict(s) for s in self.samples],
            "upstreams_received": {ip: dict(c) for ip, c in reached.items()},
            "phi_reached_blocked_upstream": leaked,
            "gateway_exit": code,
            "gateway_shutdown_s": round(shutdown_s, 1),
            "gateway_shutdown_log": shutdown_lines,
            "gateway_log": {
                "bytes": len(text.encode()),
                "lines": text.count("\n"),
                "tracebacks": text.count("Traceback (most recent call last)"),
                "top": repeated_lines(text),
            },
            "problems": problems,
        }


def rss_account(samples: list[Sample], schedule: list[Planned], seconds: float) -> dict[str, Any]:
    """FLAT or GROWING by one rule: the median RSS of the last three samples (the quiet tail,
    after every fault) against the median of the samples between warm-up and the first
    fault; GROWING when the end is more than max(16 MiB, 10 %) above that baseline. Spikes
    during a fault that are given back do not count; memory a fault leaves behind does."""
    series = [s.rss_mib for s in samples if s.rss_mib is not None]
    first = schedule[0].at
    before = [s.rss_mib for s in samples if s.rss_mib is not None and s.t < first]
    if len(series) < 4 or not before:
        return {"verdict": "UNKNOWN (too few samples)", "series": series}
    baseline = statistics.median(before)
    end = statistics.median(series[-3:])
    allowed = max(16.0, 0.10 * baseline)
    return {
        "min": min(series),
        "max": max(series),
        "spread": round(max(series) - min(series), 1),
        "baseline": baseline,
        "end": end,
        "growth": round(end - baseline, 1),
        "allowed_growth": round(allowed, 1),
        "verdict": "FLAT" if end - baseline <= allowed else "GROWING",
        "series": series,
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(ordered[len(ordered) // 2], 1),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max": round(ordered[-1], 1),
    }


_VOLATILE = re.compile(r"INC-\w+-\w+|\d+")


def repeated_lines(text: str, top: int = 6) -> list[tuple[int, str]]:
    """The most frequent log lines with numbers and incident ids blanked (they hold no
    payload: the gateway never logs one)."""
    counts = collections.Counter(_VOLATILE.sub("#", line)[:160] for line in text.splitlines())
    return [(n, line) for line, n in counts.most_common(top)]


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


# -- output ------------------------------------------------------------------------------------


def report(s: dict[str, Any]) -> Iterator[str]:
    settings, events, verify, rss = s["settings"], s["events"], s["verify"], s["rss"]
    yield ""
    yield f"== phi-gateway soak, {settings['seconds']} s, commit {s['commit']} =="
    yield f"gateway code: {s['gateway_code']}; audit store: {settings['store']}"
    yield "\nfaults:"
    for f in s["faults"]:
        after = f"; back: {f['detail']['recovery']}" if "recovery" in f["detail"] else ""
        yield f"  t={f['start']:6.1f}-{f['end']:6.1f}s {f['name']}: {f['summary']}{after}"
        if f["detail"].get("timeline"):
            points = [
                f"{t:.0f}:{up:.0f}/{spooled:.0f}/{held:.0f}/{unwritten:.0f}"
                for t, up, spooled, held, unwritten in f["detail"]["timeline"]
            ]
            yield "    s:store up/spooled/held/not yet in the chain: " + " ".join(points)
    yield "\ntraffic (kind: sent, as expected, failed):"
    for name, t in s["traffic"].items():
        yield f"  {name:15} {t['sent']:6} {t['as_expected']:6} {t['failed']:6}"
    yield "refusals by kind / rule: " + (
        ", ".join(f"{k} {n}" for k, n in s["refusal_rules"].items()) or "none"
    )
    verdict = "EQUAL" if events["equal"] else "MISMATCH"
    yield (
        f"\nevents decided {events['decided']} ({events['refusals_with_incident_id']} refusals "
        f"with an incident id + {events['allow_listed_phi_forwarded']} allow-listed PHI "
        f"forwarded) vs recorded {events['recorded']} (kind=decision rows after shutdown): "
        f"{verdict}"
    )
    if not events["equal"] or events["rows_matching_no_answer"]:
        yield (
            f"  !! {events['refusals_missing_from_trail']} refused and "
            f"{events['forwarded_missing_from_trail']} forwarded events missing from the trail; "
            f"{events['rows_matching_no_answer']} rows match no answer a client saw "
            f"({events['answers_lost_that_may_be_rows']} PHI requests abroad got no answer: "
            f"their rows may be these); {events['forwarded_recorded_twice']} recorded twice"
        )
    yield f"  the gateway counted {events['queued_by_gateway']} events queued before SIGTERM"
    state = (
        f"{'intact' if verify['intact'] else 'NOT INTACT'}, "
        f"{'complete' if verify['complete'] else 'INCOMPLETE'}"
    )
    yield (
        f"\naudit verify: {state} (exit {verify['exit']}, {verify['events']} events, "
        f"spooled {verify['spooled']})"
    )
    for line in verify["text"].splitlines():
        yield f"  | {line}"
    yield f"\nRSS of the gateway (MiB), every {SAMPLE_SECONDS} s after warm-up:"
    yield "  " + " ".join(f"{v:.0f}" for v in rss["series"])
    if "baseline" in rss:
        yield (
            f"  min {rss['min']:.0f}, max {rss['max']:.0f}, max-min {rss['spread']:.0f}; baseline "
            f"{rss['baseline']:.0f} (before the first fault), end {rss['end']:.0f} (last 3 "
            f"samples): growth {rss['growth']:+.0f} MiB, allowed {rss['allowed_growth']:.0f}: "
            f"{rss['verdict']}"
        )
    else:
        yield f"  {rss['verdict']}"
    yield "samples (t s, window, RSS MiB, fds, log MiB, /healthz ms, store up, spooled, held):"
    for x in s["samples"]:
        yield (
            f"  {x['t']:6.1f} {x['window']:16} {_n(x['rss_mib'])} {_n(x['fds'])} "
            f"{x['log_mib']:6.2f} {_n(x['healthz_ms'], 'TIMEOUT')} {_n(x['store_up'])} "
            f"{_n(x['spool_events'])} {_n(x['held_events'])}"
        )
    yield "\nrequests failed, by kind / cause:"
    yield "  domestic: " + (
        ", ".join(f"{k} {n}" for k, n in s["domestic_failures"].items()) or "none"
    )
    others = {k: n for k, n in s["failures"].items() if not k.startswith("domestic")}
    yield "  others: " + (", ".join(f"{k} {n}" for k, n in others.items()) or "none")
    yield "  by fault window / kind: " + (
        ", ".join(f"{k} {n}" for k, n in s["failures_by_window"].items()) or "none"
    )
    yield "domestic latency ms by window (n, p50, p99, max):"
    for window, p in s["domestic_latency_ms"].items():
        yield (
            f"  {window:16} {p.get('n', 0):5} {p.get('p50', 0):8} {p.get('p99', 0):8} "
            f"{p.get('max', 0):8}"
        )
    yield (
        f"\nPHI requests that reached the not-allowed foreign upstream: "
        f"{s['phi_reached_blocked_upstream']}; upstreams received "
        + "; ".join(f"{ip}: {dict(c)}" for ip, c in s["upstreams_received"].items())
    )
    log = s["gateway_log"]
    yield (
        f"gateway: exit {s['gateway_exit']} {s['gateway_shutdown_s']} s after SIGTERM; log "
        f"{log['bytes'] / MIB:.2f} MiB, {log['lines']} lines, {log['tracebacks']} tracebacks"
    )
    for n, line in log["top"]:
        yield f"  {n:6} x {line}"
    yield "shutdown log:" + ("" if s["gateway_shutdown_log"] else " (nothing)")
    for line in s["gateway_shutdown_log"]:
        yield f"  | {line[:200]}"
    yield ""
    if s["problems"]:
        for problem in s["problems"]:
            yield f"SOAK FAILED: {problem}"
    else:
        yield "SOAK PASSED: decided = recorded, trail intact and complete, no domestic failure"


def _n(value: float | int | None, none: str = "-") -> str:
    if value is None:
        return f"{none:>7}"
    return f"{value:7.1f}" if isinstance(value, float) else f"{value:7}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=int, default=180, help="length of the run (default 180)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument(
        "--rate", type=float, default=40, help="requests per second, all clients (default 40)"
    )
    parser.add_argument(
        "--keepalive-requests",
        type=int,
        default=10,
        help="requests per client connection before a new one (default 10)",
    )
    parser.add_argument("--uploads", type=int, default=8, help="concurrent large uploads (8)")
    parser.add_argument(
        "--upload-mib", type=int, default=20, help="size of each upload in MiB (20)"
    )
    parser.add_argument("--slowloris", type=int, default=100, help="slowloris connections (100)")
    parser.add_argument(
        "--idle-sockets", type=int, default=1100, help="idle connections in one burst (1100)"
    )
    parser.add_argument(
        "--gateway-nofile",
        type=int,
        default=1024,
        help="soft open-file limit of the gateway (default 1024, systemd's default for "
        "services; 0 keeps the inherited one)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, config, trail)"
    )
    args = parser.parse_args(argv)
    if args.seconds < 90:
        parser.error("--seconds must be at least 90 (six faults a few seconds apart)")
    if args.clients < 1 or args.rate <= 0 or args.keepalive_requests < 1:
        parser.error("--clients, --rate and --keepalive-requests must be positive")
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    busy = machine_busy()
    if busy > 0.15:
        print(
            f"soak: WARNING {busy:.0%} of the CPUs are busy before starting: "
            "latencies will be noisy"
        )
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="phi-soak-"))
    soak = Soak(args, tmp)
    keep = args.keep
    try:
        soak.start()
        result = soak.run()
    except KeyboardInterrupt:
        print("\nsoak: interrupted; stopping everything it started", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"soak: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"soak: temp dir kept: {tmp}", file=sys.stderr)
        return 1
    finally:
        soak.stop.set()
        if soak.postgres is not None:
            with contextlib.suppress(Exception):
                soak.postgres.stop()
        soak.procs.stop_all()
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
    for line in report(result):
        print(line)
    result["busy_before"] = round(busy, 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"soak-{result['timestamp'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresult as one JSON line (also saved to {path.relative_to(REPO)}):")
    print(json.dumps(result, separators=(",", ":")))
    if result["problems"]:
        keep = True
    if keep:
        print(f"soak: temp dir kept: {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
