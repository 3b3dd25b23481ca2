"""Several gateway instances write one PostgreSQL audit trail, each its own chain; verification
checks them together and names the instance whose chain was tampered with."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from gateway.audit import AuditEvent, AuditStore
from gateway.audit.chain import derive_key
from gateway.audit.postgres_backend import PostgresBackend
from gateway.audit.store import ChainSettings
from gateway.audit.verify import verify
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.unit.test_audit import decision_for

pytestmark = pytest.mark.e2e
SECRET = b"postgres test secret"
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
