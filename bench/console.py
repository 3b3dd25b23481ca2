"""``python -m bench.console``: how fast the console's incident list answers on a large trail.

An audit trail of ``--events`` synthetic incidents (bench/audit_reports.py: no patient data)
in SQLite, and with ``--postgres`` also in a throwaway PostgreSQL (scripts/pg-test-server.sh).
Each query the incident page runs (one page of 50 and the capped count) is timed for the
first page, a page deep in the list (keyset), and each filter; the median of ``--repeat``
runs is printed per query, in milliseconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.audit_reports import populate, synthetic_event
from bench.procs import REPO, free_port
from gateway.audit.backend import AuditBackend
from gateway.audit.query import Search, parse_period, search
from gateway.audit.sqlite_backend import SqliteBackend

PERIOD = parse_period("2026-03-01", "2026-03-31")
BUDGET = 0.25  # admin.console.search_budget_ms's default


def queries() -> dict[str, Search]:
    return {
        "first page": Search(PERIOD),
        "country": Search(PERIOD, country="BR"),
        "action": Search(PERIOD, action="allow"),
        "destination": Search(PERIOD, destination="api7.vendor.example:443"),
        "client group /24": Search(PERIOD, clients=(ipaddress.ip_network("10.0.3.0/24"),)),
        "category": Search(PERIOD, category="ssn"),
        "rare: country + destination": Search(
            PERIOD, country="CN", destination="api3.vendor.example"
        ),
        "nothing matches": Search(PERIOD, destination="nowhere.example"),
        "client group, no match": Search(PERIOD, clients=(ipaddress.ip_network("10.9.0.0/16"),)),
        "category, no match": Search(PERIOD, category="biometric"),
    }


def _time(call: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def measure(backend: AuditBackend, repeat: int) -> list[tuple[str, float]]:
    results = []
    for name, where in queries().items():
        results.append(
            (name, _time(lambda w=where: search(backend, w, "", 50, BUDGET), repeat))  # type: ignore[misc]
        )
    deep = ""
    for _ in range(200):  # page 200 of the unfiltered list: 10,000 rows in
        deep = search(backend, Search(PERIOD), deep, 50).after
    results.append(
        ("page 200 (keyset)", _time(lambda: search(backend, Search(PERIOD), deep, 50), repeat))
    )
    return results


def _copy_to_postgres(workdir: Path, count: int) -> tuple[str, Callable[[], None]]:
    port = free_port()
    script = REPO / "scripts" / "pg-test-server.sh"
    subprocess.run(["bash", str(script), "start", str(workdir), str(port)], check=True)
    dsn = f"host=127.0.0.1 port={port} dbname=postgres user=gateway"
    from gateway.audit.postgres_backend import PostgresBackend

    backend = PostgresBackend(dsn)
    conn = backend.connect()
    batch = []
    for n in range(count):
        batch.append(synthetic_event(n))
        if len(batch) == 5000:
            backend.append(conn, "bench", batch)
            batch = []
    if batch:
        backend.append(conn, "bench", batch)
    conn.execute("ANALYZE audit_events")
    conn.close()

    def stop() -> None:
        subprocess.run(["bash", str(script), "stop", str(workdir)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)

    return dsn, stop


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.console")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--keep", type=Path, help="reuse (or leave) the SQLite trail here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="phi-gateway-bench-console-"))
    database = args.keep or workdir / "audit.db"
    try:
        if not database.exists():
            started = time.monotonic()
            populate(database, args.events)
            print(f"trail of {args.events:,} events written in {time.monotonic() - started:.0f} s")
        backends: list[tuple[str, AuditBackend]] = [("sqlite", SqliteBackend(database))]
        stop: Callable[[], None] | None = None
        if args.postgres:
            # Not inside workdir (0700, root's): the server may run as "postgres".
            pg_dir = Path(tempfile.mkdtemp(prefix="phi-gateway-bench-pg-"))
            dsn, stop = _copy_to_postgres(pg_dir, args.events)
            from gateway.audit.postgres_backend import PostgresBackend

            backends.append(("postgresql", PostgresBackend(dsn)))
        try:
            print(f"{'query':<30}" + "".join(f"{name:>14}" for name, _ in backends))
            measured = [dict(measure(backend, args.repeat)) for _, backend in backends]
            for name in measured[0]:
                print(f"{name:<30}" + "".join(f"{m[name]:>11.1f} ms" for m in measured))
        finally:
            if stop is not None:
                stop()
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
