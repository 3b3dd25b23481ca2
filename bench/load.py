"""wrk as the load generator: POST one payload file over and over, read back the numbers.

The Lua script's ``done`` hook prints an exact JSON summary (requests, duration, latency
percentiles in microseconds, error counts); wrk's own text report is parsed for the
``Non-2xx or 3xx responses`` line as a cross-check.
"""

from __future__ import annotations

import json
import re
import subprocess
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


def run_wrk(
    wrk: Path, url: str, script: Path, seconds: float, log: Path | None = None
) -> WrkResult:
    argv = [
        str(wrk),
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
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
