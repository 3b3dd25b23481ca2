"""The processes the benchmark starts (nginx, mitmdump, phi-gateway), each stopped for sure.

Every child gets its own session, so a Ctrl-C in the terminal reaches only the benchmark,
which then stops its children itself (``Processes.stop_all``), SIGTERM first, SIGKILL later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.mmdb import build_test_mmdb
from tests.support.upstream import make_pki

VENV_BIN = Path(sys.executable).parent
MITMDUMP = VENV_BIN / "mitmdump"
PHI_GATEWAY = VENV_BIN / "phi-gateway"
REPO = Path(__file__).resolve().parents[1]


def code_fingerprint() -> str:
    """Hash of the gateway's sources as a freshly started gateway would load them."""
    digest = hashlib.sha256()
    for path in sorted([*REPO.glob("addons/**/*.py"), *REPO.glob("gateway/**/*.py")]):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


def http_request(
    url: str, body: bytes | None = None, content_type: str = "text/plain", timeout: float = 5
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and every process below it (run --workers: the supervisor, its
    workers and HAProxy), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree, grew = {pid}, True
    while grew:
        below = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return sum(cpu_seconds(member) for member in tree)


def _cpu_times() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    steal = values[7] if len(values) > 7 else 0
    total = sum(values[:8])
    return total - idle, total, steal


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over a short window (0..1): what others are using right now."""
    busy0, total0, _ = _cpu_times()
    time.sleep(seconds)
    busy1, total1, _ = _cpu_times()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


class CpuWindow:
    """Machine CPU accounting over the whole run: steal time shows a noisy host."""

    def __init__(self) -> None:
        self.start = _cpu_times()

    def steal_share(self) -> float:
        _, total, steal = _cpu_times()
        elapsed = total - self.start[1]
        return (steal - self.start[2]) / elapsed if elapsed else 0.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Starts children and remembers them until they are stopped."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        log = self.logdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 15) -> int:
        proc = child.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if child in self.children:
            self.children.remove(child)
        return proc.returncode

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            try:
                self.stop(child, timeout=10)
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {child.name} ({child.pid}): {exc}", file=sys.stderr)


# -- nginx: the upstream ---------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    foreign: tuple[str, int]  # 127.0.0.2: India in the bench geo database
    domestic: tuple[str, int]  # 127.0.0.1: US
    domestic_tls: tuple[str, int]  # 127.0.0.1, HTTPS with the bench PKI's certificate
    ca_pem: Path  # the CA that certificate chains to


NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 64m;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen {foreign_host}:{foreign_port};
        listen {domestic_host}:{domestic_port};
        location / {{ return 200 'ok'; }}
    }}
    server {{
        listen {domestic_host}:{tls_port} ssl;
        ssl_certificate {tls_pem};
        ssl_certificate_key {tls_pem};
        location / {{ return 200 'ok'; }}
    }}
}}
"""


def start_nginx(procs: Processes, nginx: Path, tmp: Path) -> Upstream:
    prefix = tmp / "nginx"
    prefix.mkdir(exist_ok=True)
    pki = make_pki(prefix, ["127.0.0.1", "127.0.0.2"])
    upstream = Upstream(
        foreign=("127.0.0.2", free_port("127.0.0.2")),
        domestic=("127.0.0.1", free_port("127.0.0.1")),
        domestic_tls=("127.0.0.1", free_port("127.0.0.1")),
        ca_pem=pki.ca_pem,
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            # As root the workers would otherwise drop to "nobody", who cannot write in tmp.
            user="user root;" if os.geteuid() == 0 else "",
            tmp=prefix,
            foreign_host=upstream.foreign[0],
            foreign_port=upstream.foreign[1],
            domestic_host=upstream.domestic[0],
            domestic_port=upstream.domestic[1],
            tls_port=upstream.domestic_tls[1],
            tls_pem=pki.server_pem,
        )
    )
    argv = [str(nginx), "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "nginx-error.log")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx config test failed:\n{check.stderr}")
    child = procs.start("nginx", argv)
    wait_listening(*upstream.domestic_tls, child.proc, timeout=10)
    for host, port in (upstream.foreign, upstream.domestic):
        wait_listening(host, port, child.proc, timeout=10)
        status, body = http_request(f"http://{host}:{port}/fhir/Patient", b"{}", "application/json")
        if status != 200 or body != b"ok":
            raise RuntimeError(f"nginx on {host}:{port} answered POST with {status} {body!r}")
    return upstream


# -- the two proxies -------------------------------------------------------------------------


@dataclass
class Proxy:
    kind: str  # "bare" or "gateway"
    child: Child
    port: int
    admin_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_bare(
    procs: Processes, target: str | None, confdir: Path, upstream_ca: Path | None = None
) -> Proxy:
    """mitmdump in reverse mode before ``target``, or an explicit proxy (None) verifying
    servers with ``upstream_ca``, as the gateway does with proxy.upstream_ca_bundle."""
    port = free_port()
    argv = [
        str(MITMDUMP),
        "--mode",
        f"reverse:{target}" if target else "regular",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "-q",
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"confdir={confdir}",
        *(["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"] if upstream_ca else []),
    ]
    child = procs.start("mitmdump", argv)
    try:
        wait_listening("127.0.0.1", port, child.proc, timeout=30)
    except RuntimeError as exc:
        raise RuntimeError(f"mitmdump did not start: {exc}\n{child.tail()}") from None
    return Proxy("bare", child, port)


def write_gateway_config(
    tmp: Path, upstream_ca: Path | None = None, mode: str = "monitor", name: str = "gateway"
) -> Path:
    mmdb = build_test_mmdb(tmp / "bench.mmdb")
    config = {
        "geo": {
            "databases": [{"path": str(mmdb), "answers_reserved": True}],
            "overrides": [
                {"cidr": "127.0.0.2/32", "country": "IN"},
                {"cidr": "127.0.0.1/32", "country": "US"},
            ],
        },
        "policy": {"mode": mode},
        "audit": {"database": str(tmp / "audit.db")},
        "proxy": {
            "confdir": str(tmp / "mitmproxy"),
            "upstream_ca_bundle": upstream_ca and str(upstream_ca),
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_gateway(procs: Processes, config: Path, target: str | None, workers: int = 1) -> Proxy:
    """In reverse mode before ``target``, or as the explicit proxy (None); with ``workers``
    above 1, that many workers behind HAProxy (``run --workers``)."""
    port, admin_port = free_port(), free_port()
    argv = [
        str(PHI_GATEWAY),
        "run",
        "--config",
        str(config),
        "--mode",
        f"reverse:{target}" if target else "regular",
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin_port}",
    ]
    if workers > 1:
        argv += ["--workers", str(workers)]
    child = procs.start("phi-gateway", argv, cwd=REPO)
    deadline = time.monotonic() + 30 + 15 * workers
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"phi-gateway exited {child.proc.returncode}:\n{child.tail()}")
        try:
            if http_request(f"http://127.0.0.1:{admin_port}/readyz", timeout=1)[0] == 200:
                return Proxy("gateway", child, port, admin_port)
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"phi-gateway not ready after 30s:\n{child.tail()}")
