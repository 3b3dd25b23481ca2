"""``python -m bench.audit_reports``: how long block reports take, and what a report being built
through the admin API costs the proxy.

1. For each size, an audit database of that many synthetic incidents (no patient data: fixed
   categories and locations) spread over one month; ``phi-gateway report`` is timed per format.
2. A real gateway (reverse mode in front of nginx, domestic traffic) is loaded with wrk: once
   alone, once while ``GET /api/v1/reports/blocks?format=pdf`` runs over the database of
   ``--load-size`` incidents. The req/s of both runs and the report's time are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from bench.procs import REPO, Processes, free_port, start_nginx, write_gateway_config
from bench.tools import ensure_tools
from gateway.api_auth import new_token
from gateway.audit import AuditEvent, AuditStore
from gateway.audit.store import ChainSettings

PHI_GATEWAY = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "phi-gateway"
SECRET = "bench-audit-secret"
FIRST, LAST = "2026-03-01", "2026-03-31"
ACTIONS = ("block", "block", "block", "redact", "monitor", "allow")
COUNTRIES = ("IN", "DE", "CN", "BR", "unknown")


def synthetic_event(n: int) -> AuditEvent:
    when = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n * 26 % (30 * 86400))
    return AuditEvent(
        incident_id=f"INC-BENCH-{n:08d}",
        time=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        instance_id="bench",
        policy_version="bench-policy",
        client=f"10.0.{n % 7}.{n % 200}:5{n % 1000:03d}",
        host=f"api{n % 13}.vendor.example",
        ip=f"203.0.113.{n % 250}",
        port=443,
        country=COUNTRIES[n % len(COUNTRIES)],
        location="foreign",
        geo_evidence='[{"ip":"203.0.113.7","location":"foreign","country":"IN"}]',
        protocol="http/1.1",
        format="hl7v2",
        message_type="ADT^A01",
        categories='{"date":2,"mrn":1,"name":2,"ssn":1}',
        locations='["PID-3","PID-5","PID-7","PID-19"]',
        action=ACTIONS[n % len(ACTIONS)],
        rule="foreign-phi",
        reason="payload to a foreign destination",
        error="",
        payload_fingerprint=f"{n:064x}",
        geo_databases='[{"name":"dbip-country-lite","build":"2026-02-01"}]',
    )


def populate(database: Path, count: int) -> None:
    store = AuditStore(
        database, ChainSettings(instance_id="bench", secret=SECRET.encode(), retention_days=36500)
    )
    for n in range(count):
        store.append(synthetic_event(n))
        if n % 5000 == 4999:
            store.flush(60)
    store.close()


def time_reports(config: Path, workdir: Path, formats: list[str]) -> dict[str, float]:
    times: dict[str, float] = {}
    for fmt in formats:
        out = workdir / f"report.{fmt}"
        start = time.monotonic()
        result = subprocess.run(
            [str(PHI_GATEWAY), "report", "--config", str(config), "--from", FIRST, "--to", LAST,
             "--format", fmt, "--out", str(out)],
            capture_output=True, text=True, env={**os.environ, "PHI_GATEWAY_SECRET": SECRET},
            check=False, timeout=3600,
        )  # fmt: skip
        times[fmt] = time.monotonic() - start
        if result.returncode != 0:
            raise RuntimeError(f"report {fmt} failed: {result.stderr[-500:]}")
        print(f"    {fmt:<5} {times[fmt]:7.1f} s  {out.stat().st_size / 1e6:7.1f} MB", flush=True)
    return times


def wrk_rps(wrk: Path, url: str, seconds: int) -> float:
    output = subprocess.run(
        [str(wrk), "-t1", "-c8", f"-d{seconds}s", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    line = next(x for x in output.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


def proxy_under_report(workdir: Path, config: Path, seconds: int) -> dict[str, float]:
    tools = ensure_tools()
    token, digest = new_token()
    data = yaml.safe_load(config.read_text())
    data["admin"] = {"tokens": [{"name": "bench", "role": "auditor", "sha256": digest}]}
    config.write_text(yaml.safe_dump(data))
    procs = Processes(workdir)
    try:
        upstream = start_nginx(procs, tools.nginx, workdir)
        port, admin = free_port(), free_port()
        target = f"http://{upstream.domestic[0]}:{upstream.domestic[1]}"
        os.environ["PHI_GATEWAY_SECRET"] = SECRET
        child = procs.start(
            "phi-gateway",
            [str(PHI_GATEWAY), "run", "--config", str(config), "--mode", f"reverse:{target}",
             "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"],
            cwd=REPO,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or child.proc.poll() is not None:
                    raise RuntimeError(child.tail()) from None
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/"
        wrk_rps(tools.wrk, url, 2)  # warm-up
        alone = wrk_rps(tools.wrk, url, seconds)
        took: dict[str, float] = {}

        def report() -> None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{admin}/api/v1/reports/blocks?from={FIRST}&to={LAST}&format=pdf",
                headers={"Authorization": f"Bearer {token}"},
            )
            start = time.monotonic()
            with urllib.request.urlopen(request, timeout=3600) as response:
                response.read()
            took["seconds"] = time.monotonic() - start

        thread = threading.Thread(target=report, daemon=True)
        thread.start()
        time.sleep(1)  # the report is under way
        during = wrk_rps(tools.wrk, url, seconds)
        thread.join(600)  # a report still running then is cut short by stopping the gateway
        return {"alone": alone, "during": during, "seconds": took.get("seconds", -1.0)}
    finally:
        procs.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_reports")
    parser.add_argument("--sizes", default="10000,100000", help="incident counts, comma-separated")
    parser.add_argument("--formats", default="csv,json,html,pdf")
    parser.add_argument("--load-size", type=int, default=10000, help="0: skip the load test")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each run")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            workdir = Path(tmp) / str(size)
            workdir.mkdir()
            config = write_gateway_config(workdir)
            start = time.monotonic()
            populate(workdir / "audit.db", size)
            print(f"{size} incidents (written in {time.monotonic() - start:.0f} s):", flush=True)
            results[str(size)] = time_reports(config, workdir, args.formats.split(","))
        if args.load_size:
            workdir = Path(tmp) / "load"
            workdir.mkdir()
            config = write_gateway_config(workdir)
            populate(workdir / "audit.db", args.load_size)
            load = proxy_under_report(workdir, config, args.seconds)
            print(
                f"proxy req/s alone {load['alone']:.0f}, during a PDF report over "
                f"{args.load_size} incidents via the API {load['during']:.0f} "
                f"(report took {load['seconds']:.1f} s)"
            )
            results["load"] = load
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
