"""The load generators: wrk, POSTing one payload file over and over, and for HTTPS through
an explicit proxy's CONNECT (which wrk cannot do) a small threaded client of our own.

The Lua script's ``done`` hook prints an exact JSON summary (requests, duration, latency
percentiles in microseconds, error counts); wrk's own text report is parsed for the
``Non-2xx or 3xx responses`` line as a cross-check. ``run_connect`` returns the same numbers.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CONNECTIONS = 8
THREADS = 1
_MARK = "BENCH-RESULT "

LUA = """\
local f = assert(io.open({path}, "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = {content_type}

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "non_2xx_3xx": %d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII


def write_script(directory: Path, name: str, payload_file: Path, content_type: str) -> Path:
    script = directory / f"{name}.lua"
    script.write_text(
        LUA.format(
            path=_lua_string(str(payload_file)),
            content_type=_lua_string(content_type),
            mark=_MARK,
        )
    )
    return script


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx_3xx: int
    socket_errors: int
    non_2xx_text: int  # the "Non-2xx or 3xx responses" line of wrk's text report (0 if absent)
    proxy_cpu_s: float = 0.0  # CPU seconds the proxy process used during the run
    client_cpu_s: float = 0.0  # CPU seconds of the load client (run_connect only; wrk: 0)

    @property
    def cpu_ms_per_request(self) -> float:
        return self.proxy_cpu_s * 1000 / self.requests if self.requests else 0.0

    @property
    def proxy_cpu_share(self) -> float:
        """Proxy CPU time / wall time: about 1.0 when the (single-threaded) proxy is the limit."""
        return self.proxy_cpu_s / self.duration_s if self.duration_s else 0.0

    @property
    def bad(self) -> int:
        return max(self.non_2xx_3xx, self.non_2xx_text) + self.socket_errors

    def as_dict(self) -> dict[str, float | int]:
        return {
            **asdict(self),
            "cpu_ms_per_request": round(self.cpu_ms_per_request, 4),
            "proxy_cpu_share": round(self.proxy_cpu_share, 3),
        }


def parse(output: str) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith(_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    data = json.loads(line[len(_MARK) :])
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    duration_s = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        duration_s=duration_s,
        rps=data["requests"] / duration_s if duration_s else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx_3xx=data["non_2xx_3xx"],
        socket_errors=(
            data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"]
        ),
        non_2xx_text=int(non_2xx.group(1)) if non_2xx else 0,
    )


def merge(slices: list[WrkResult]) -> WrkResult:
    """Slices of one proxy's load as one run: counts and times summed, percentiles the
    median of the slices' (each slice saw the same load)."""

    def median(attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in slices))

    requests = sum(r.requests for r in slices)
    duration = sum(r.duration_s for r in slices)
    return WrkResult(
        requests=requests,
        duration_s=duration,
        rps=requests / duration if duration else 0.0,
        p50_ms=median("p50_ms"),
        p90_ms=median("p90_ms"),
        p99_ms=median("p99_ms"),
        mean_ms=median("mean_ms"),
        max_ms=max(r.max_ms for r in slices),
        non_2xx_3xx=sum(r.non_2xx_3xx for r in slices),
        socket_errors=sum(r.socket_errors for r in slices),
        non_2xx_text=sum(r.non_2xx_text for r in slices),
        proxy_cpu_s=sum(r.proxy_cpu_s for r in slices),
        client_cpu_s=sum(r.client_cpu_s for r in slices),
    )


def run_wrk(
    wrk: Path,
    url: str,
    script: Path,
    seconds: float,
    log: Path | None = None,
    *,
    connections: int = CONNECTIONS,
) -> WrkResult:
    argv = [
        str(wrk),
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    output = result.stdout + result.stderr
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{output}\n")
    if result.returncode != 0:
        raise RuntimeError(f"wrk exited {result.returncode}:\n{output}")
    return parse(output)


# -- HTTPS through CONNECT ----------------------------------------------------------------
# wrk speaks to one origin and cannot tunnel. This client does what a browser behind an
# explicit proxy does: CONNECT host:port, TLS to host, GET /; with ``keepalive`` every
# request after the first reuses the tunnel, else each request opens a new one (and pays
# both handshakes of an intercepting proxy). One thread per connection: the handshakes and
# socket calls release the GIL. The same client drives bare mitmdump and the gateway.


class _Failed(Exception):
    """A request that got no 200 answer (counted, never raised out of the client)."""


def _percentile(sorted_us: list[float], share: float) -> float:
    if not sorted_us:
        return 0.0
    return sorted_us[min(len(sorted_us) - 1, int(share * len(sorted_us)))]


class _ConnectClient:
    def __init__(
        self, proxy_port: int, host: str, port: int, context: ssl.SSLContext, keepalive: bool
    ) -> None:
        self.proxy_port = proxy_port
        self.host, self.port = host, port
        self.context = context
        self.keepalive = keepalive
        self.request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: phi-bench\r\n\r\n"
        ).encode()

    def _open(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.proxy_port), timeout=10)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = f"{self.host}:{self.port}"
            raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = raw.recv(4096)  # the proxy sends nothing else before the handshake
                if not chunk:
                    raise _Failed("tunnel closed")
                head += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                raise _Failed("tunnel refused")
            return self.context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise

    @staticmethod
    def _exchange(sock: ssl.SSLSocket, request: bytes) -> None:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise _Failed("closed before the answer")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise _Failed("not 200")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise _Failed("answer cut short")
            body += chunk

    def loop(self, stop: float, latencies: list[float], errors: list[str]) -> None:
        sock: ssl.SSLSocket | None = None
        while (start := time.perf_counter()) < stop:
            try:
                if sock is None:
                    sock = self._open()
                self._exchange(sock, self.request)
                latencies.append((time.perf_counter() - start) * 1e6)
            except (OSError, _Failed) as exc:
                errors.append(type(exc).__name__)
                if sock is not None:
                    sock.close()
                sock = None
                continue
            if not self.keepalive:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()


def run_connect(
    proxy_port: int,
    host: str,
    port: int,
    cafiles: list[Path],
    seconds: float,
    *,
    keepalive: bool,
    connections: int = CONNECTIONS,
) -> WrkResult:
    """``connections`` clients for ``seconds``, each GET / over HTTPS through CONNECT, the
    server's certificate checked against ``cafiles`` (the proxy's CA and the server's)."""
    context = ssl.create_default_context()
    for cafile in cafiles:
        context.load_verify_locations(cafile=str(cafile))
    client = _ConnectClient(proxy_port, host, port, context, keepalive)
    per_thread: list[tuple[list[float], list[str]]] = [([], []) for _ in range(connections)]
    cpu_before, started = time.process_time(), time.perf_counter()
    stop = started + seconds
    threads = [
        threading.Thread(target=client.loop, args=(stop, lat, err), daemon=True)
        for lat, err in per_thread
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    duration = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_before
    latencies = sorted(us for lat, _ in per_thread for us in lat)
    errors = [e for _, err in per_thread for e in err]
    non_200 = sum(1 for e in errors if e == "_Failed")
    return WrkResult(
        requests=len(latencies),
        duration_s=duration,
        rps=len(latencies) / duration if duration else 0.0,
        p50_ms=_percentile(latencies, 0.50) / 1000,
        p90_ms=_percentile(latencies, 0.90) / 1000,
        p99_ms=_percentile(latencies, 0.99) / 1000,
        mean_ms=statistics.fmean(latencies) / 1000 if latencies else 0.0,
        max_ms=latencies[-1] / 1000 if latencies else 0.0,
        non_2xx_3xx=non_200,
        socket_errors=len(errors) - non_200,
        non_2xx_text=0,
        client_cpu_s=client_cpu,
    )
