"""Several gateway instances write one PostgreSQL audit trail, each its own chain; verification
checks them together and names the instance whose chain was tampered with. First with stores in
this process, then with two real `phi-gateway run` processes. PostgreSQL comes from Debian's
packages (scripts/pg-test-server.sh); where it cannot be started these tests skip, saying why."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from gateway.audit import AuditEvent, AuditStore
from gateway.audit.chain import derive_key
from gateway.audit.postgres_backend import PostgresBackend
from gateway.audit.store import ChainSettings
from gateway.audit.verify import verify
from tests.e2e.conftest import Upstreams, gateway_config
from tests.support.gateway_process import BIN, GatewayProcess
from tests.support.patients import hl7_adt, make_patient
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.upstream import Pki
from tests.unit.test_audit import decision_for

pytestmark = pytest.mark.e2e
SECRET = b"postgres test secret"
SECRET_ENV = {"PHI_GATEWAY_SECRET": SECRET.decode()}
KEY = derive_key(SECRET, "checkpoint")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    yield server
    server.stop()


def test_instances_write_their_own_chains_verified_together(postgres: PostgresServer) -> None:
    stores = [
        AuditStore(PostgresBackend(postgres.dsn), ChainSettings(instance_id=name, secret=SECRET))
        for name in ("gw-east", "gw-west", "gw-north")
    ]

    def write(store: AuditStore) -> None:
        for _ in range(60):
            store.append(AuditEvent.from_decision(decision_for(b"{}"), "x", "v1"))

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    result = verify(PostgresBackend(postgres.dsn), KEY)
    assert result.intact, result.describe()
    assert [(c.instance_id, c.events, c.last_seq) for c in result.chains] == [
        ("gw-east", 60, 60),
        ("gw-north", 60, 60),
        ("gw-west", 60, 60),
    ]

    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE audit_events SET country = 'US'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit_events WHERE instance_id = 'gw-west'")
        # The superuser can switch the guard off; the chain still tells.
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        conn.execute(
            "UPDATE audit_events SET country = 'US' "
            "WHERE instance_id = 'gw-west' AND chain_seq = 17"
        )
        conn.execute("DELETE FROM audit_events WHERE instance_id = 'gw-north' AND chain_seq > 58")
    result = verify(PostgresBackend(postgres.dsn), KEY)
    problems = {c.instance_id: c.problem for c in result.chains}
    assert problems["gw-east"] == ""
    assert problems["gw-west"].startswith("altered: event 17 ")
    assert problems["gw-north"].startswith("deleted: event 60, sealed by the checkpoint")


def test_two_real_gateways_write_one_postgres_trail(
    postgres: PostgresServer, tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams
) -> None:
    """Two `phi-gateway run` processes, one database: traffic through both, then the operator's
    `phi-gateway audit verify` finds both chains intact, and names the one tampered with."""
    sent = {"gw-east": 3, "gw-west": 5}
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:  # not the other test's trail
        conn.execute("CREATE DATABASE processes")
    dsn = postgres.dsn.replace("dbname=postgres", "dbname=processes")
    gateways = {
        name: GatewayProcess(
            tmp_path / name,
            gateway_config(
                test_mmdb,
                pki,
                audit={"backend": "postgresql", "postgresql_dsn": dsn, "instance_id": name},
            ),
            env=SECRET_ENV,
        )
        for name in sent
    }
    try:
        for name, count in sent.items():
            gateway = gateways[name]
            with httpx.Client(proxy=gateway.proxy_url, timeout=10) as client:
                for seed in range(count):
                    body = hl7_adt(make_patient(500 + seed)).encode()
                    assert client.post(f"{upstreams.foreign.url}/gw", content=body).is_error
    finally:
        for gateway in gateways.values():
            assert gateway.stop() == 0, gateway.output()[-2000:]
    logs = [tmp_path / name / f"audit-{name}.checkpoints" for name in sent]
    assert all(log.is_file() for log in logs)

    def audit_verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), "audit", "verify", "--config", str(gateways["gw-east"].config_path),
             *(arg for log in logs for arg in ("--checkpoints", str(log)))],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **SECRET_ENV},
            check=False,
        )  # fmt: skip

    verified = audit_verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for name, count in sent.items():
        assert f"instance {name}: intact, {count} events, seq 1-{count}, " in verified.stdout
    assert "result: intact (8 events in 2 chain(s) checked)" in verified.stdout

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT incident_id FROM audit_events WHERE instance_id = 'gw-west' AND chain_seq = 2"
        ).fetchone()
        assert row is not None
        incident = row[0]
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        conn.execute(
            "UPDATE audit_events SET action = 'allow' "
            "WHERE instance_id = 'gw-west' AND chain_seq = 2"
        )
        conn.execute("ALTER TABLE audit_events ENABLE TRIGGER ALL")
    verified = audit_verify()
    assert verified.returncode == 1
    assert f"instance gw-west: TAMPERED: altered: event 2 ({incident}, " in verified.stdout
    assert "instance gw-east: intact, 3 events" in verified.stdout


def test_a_database_restart_loses_no_decided_event(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams, postgres: PostgresServer
) -> None:
    config = gateway_config(
        test_mmdb,
        pki,
        audit={"backend": "postgresql", "postgresql_dsn": postgres.dsn, "instance_id": "gw-out"},
    )
    gateway = GatewayProcess(tmp_path / "gw", config, env=SECRET_ENV)
    body = hl7_adt(make_patient(1501)).encode()

    def rows() -> int:
        with psycopg.connect(postgres.dsn) as conn:
            found = conn.execute(
                "SELECT COUNT(*) FROM audit_events WHERE instance_id = 'gw-out'"
            ).fetchone()
            return int(found[0]) if found else 0

    try:
        with httpx.Client(proxy=gateway.proxy_url, timeout=10) as client:
            for number in range(10):
                assert (
                    client.post(f"{upstreams.foreign.url}/o{number}", content=body).status_code
                    == 451
                )
            _wait(lambda: rows() == 10)
            postgres.halt()
            for number in range(10, 50):  # still refused while the trail cannot be written
                assert (
                    client.post(f"{upstreams.foreign.url}/o{number}", content=body).status_code
                    == 451
                )
            _wait(lambda: gateway.metric("phi_gateway_audit_store_up") == 0)
            _wait(lambda: gateway.metric("phi_gateway_audit_spool_events") == 40)
            assert gateway.metric("phi_gateway_audit_held_events") == 0
            # Still recording (durably, on the gateway's disk): ready, saying so.
            status, text = gateway.admin_get("/readyz")
            assert status == 200 and "audit store not writable; events spooled" in text
            postgres.resume()
            _wait(lambda: gateway.metric("phi_gateway_audit_store_up") == 1, 60)
        _wait(lambda: rows() == 50)
        assert gateway.stop() == 0
        result = verify(PostgresBackend(postgres.dsn), KEY)
        chain = next(c for c in result.chains if c.instance_id == "gw-out")
        assert not chain.problem and (chain.first_seq, chain.last_seq) == (1, 50), chain
        assert chain.complete, chain.describe()
    finally:
        gateway.stop()
        postgres.resume()  # for the module's other tests, if an assertion stopped us early


def _rows(dsn: str, instance: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            found = conn.execute(
                "SELECT COUNT(*) FROM audit_events WHERE instance_id = %s AND kind = 'decision'",
                (instance,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # the gateway has not connected yet
            return 0
        return int(found[0]) if found else 0


def test_a_gateway_started_while_postgres_is_down_serves_and_spools(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams, postgres: PostgresServer
) -> None:
    config = gateway_config(
        test_mmdb,
        pki,
        audit={"backend": "postgresql", "postgresql_dsn": postgres.dsn, "instance_id": "gw-cold"},
    )
    body = hl7_adt(make_patient(1601)).encode()
    postgres.halt()
    try:
        gateway = GatewayProcess(tmp_path / "gw", config, env=SECRET_ENV)  # ready: it serves
        try:
            with httpx.Client(proxy=gateway.proxy_url, timeout=10) as client:
                home = client.post(f"{upstreams.domestic.url}/home", content=body)
                assert home.status_code == 200
                for number in range(6):
                    sent = client.post(f"{upstreams.foreign.url}/c{number}", content=body)
                    assert sent.status_code == 451
            assert not any(r.path.startswith("/c") for r in upstreams.foreign.received)
            _wait(lambda: gateway.metric("phi_gateway_audit_spool_events") == 6)
            spool = tmp_path / "gw" / "audit-gw-cold.spool"
            assert spool.is_file()
            postgres.resume()
            _wait(lambda: _rows(postgres.dsn, "gw-cold") == 6, 60)
            _wait(lambda: gateway.metric("phi_gateway_audit_spool_events") == 0)
            assert gateway.stop() == 0, gateway.output()[-2000:]
        finally:
            gateway.stop()
        chain = next(
            c
            for c in verify(PostgresBackend(postgres.dsn), KEY).chains
            if c.instance_id == "gw-cold"
        )
        assert chain.intact and chain.complete and chain.events == 6, chain.describe()
    finally:
        postgres.resume()


def test_sigterm_while_postgres_hangs_spools_and_the_next_start_writes(
    tmp_path: Path, test_mmdb: Path, pki: Pki, upstreams: Upstreams, postgres: PostgresServer
) -> None:
    """A database that stops answering (not refusing: hung) during shutdown: the stalled call
    is cut, the decided events go to the spool, the exit says so; the next start writes them."""
    config = gateway_config(
        test_mmdb,
        pki,
        audit={
            "backend": "postgresql",
            "postgresql_dsn": postgres.dsn,
            "instance_id": "gw-hang",
            "write_timeout_seconds": 2,
        },
    )
    body = hl7_adt(make_patient(1701)).encode()
    gateway = GatewayProcess(tmp_path / "gw", config, env=SECRET_ENV)
    try:
        with httpx.Client(proxy=gateway.proxy_url, timeout=10) as client:
            assert client.post(f"{upstreams.foreign.url}/h0", content=body).status_code == 451
            _wait(lambda: _rows(postgres.dsn, "gw-hang") == 1)
            postgres.freeze()
            for number in range(1, 21):
                assert (
                    client.post(f"{upstreams.foreign.url}/h{number}", content=body).status_code
                    == 451
                )
        started = time.monotonic()
        code = gateway.stop()
        took = time.monotonic() - started
        output = gateway.output()
        assert code == 0, output[-2000:]
        assert took < 14, f"shutdown took {took:.1f} s"
        assert "20 decided audit event(s) are in the spool" in output, output[-2000:]
        assert "Traceback" not in output and "CancelledError" not in output
    finally:
        gateway.stop()
        postgres.thaw()
    again = GatewayProcess(tmp_path / "gw", config, env=SECRET_ENV)
    try:
        _wait(lambda: _rows(postgres.dsn, "gw-hang") == 21, 60)
    finally:
        assert again.stop() == 0
    chain = next(
        c for c in verify(PostgresBackend(postgres.dsn), KEY).chains if c.instance_id == "gw-hang"
    )
    assert chain.intact and chain.complete and chain.events == 21, chain.describe()


def _wait(condition: object, seconds: float = 30) -> None:
    import time

    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_console_search_pages_and_filters_on_postgresql(postgres: PostgresServer) -> None:
    """The console's keyset pages, capped count, client patterns and fingerprint lookup run
    the same SQL on PostgreSQL as on SQLite."""
    import ipaddress

    from gateway.audit.query import Search, by_fingerprint, parse_period, search
    from tests.support.trail import decision_event as _event

    backend = PostgresBackend(postgres.dsn)
    events = [
        _event(f"10.{20 + n % 2}.0.{n % 250}:4000", "IN" if n % 3 else "DE", "2026-10-02")
        for n in range(120)
    ]
    marked = _event("10.0.0.9:4000", "IN", "2026-10-03", body=b"\x01\x02")
    conn = backend.connect()
    backend.append(conn, "gw-unit", [*events, marked])
    conn.close()
    period = parse_period("2026-10-01", "2026-10-02")
    seen: list[str] = []
    after = ""
    while True:
        page = search(backend, Search(period), after, 50, 10.0)
        assert page.matched == 120 and not (page.cut or page.uncounted)
        seen += [str(r["incident_id"]) for r in page.rows]
        if not page.after:
            break
        after = page.after
    assert seen == [e.incident_id for e in sorted(events, key=lambda e: e.time, reverse=True)]
    group = Search(period, clients=(ipaddress.ip_network("10.21.0.0/16"),), country="IN")
    found = {str(r["incident_id"]) for r in search(backend, group, "", 500, 10.0).rows}
    assert found == {
        e.incident_id for e in events if e.client.startswith("10.21.") and e.country == "IN"
    }
    assert search(backend, Search(period, category="ssn"), "", 5, 10.0).matched == 120
    assert by_fingerprint(backend, "") == []
    assert [r["incident_id"] for r in by_fingerprint(backend, "0102")] == [marked.incident_id]
