"""The hash chain catches hand edits, insertions and deletions; retention does not break it."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.audit import AuditEvent, AuditStore
from gateway.audit.chain import derive_key
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.store import ChainSettings
from gateway.audit.verify import verify
from gateway.cli import main
from tests.unit.test_audit import decision_for

SECRET = b"site secret for the tests"
KEY = derive_key(SECRET, "checkpoint")


def write_events(path: Path, count: int, instance: str = "gw-a", **settings: object) -> None:
    store = AuditStore(
        path,
        ChainSettings(instance_id=instance, secret=SECRET, **settings),  # type: ignore[arg-type]
    )
    for _ in range(count):
        store.append(AuditEvent.from_decision(decision_for(b"{}"), instance, "v1"))
    store.close()


def tamper(path: Path, *statements: str) -> None:
    """What someone with write access to the file can do: drop the guards, change rows."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    conn.execute("DROP TRIGGER IF EXISTS audit_checkpoints_no_delete")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def check(path: Path, key: bytes | None = KEY) -> tuple[bool, str]:
    result = verify(SqliteBackend(path), key)
    return result.intact, result.describe()


def test_an_untouched_trail_is_intact_with_count_and_range(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 20)
    write_events(db, 5)  # a restart continues the same chain
    intact, text = check(db)
    assert intact, text
    assert "25 events, seq 1-25" in text
    assert "result: intact" in text


def test_editing_one_row_by_hand_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 10)
    tamper(db, "UPDATE audit_events SET country = 'US' WHERE chain_seq = 4")
    intact, text = check(db)
    assert not intact
    assert "altered: event 4 " in text


def test_a_rewritten_and_rehashed_row_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 10)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM audit_events WHERE chain_seq = 6").fetchone())
    conn.close()
    from gateway.audit.chain import event_hash

    row["action"] = "allow"
    forged = event_hash(row, 6, row["prev_hash"])
    tamper(db, f"UPDATE audit_events SET action = 'allow', hash = '{forged}' WHERE chain_seq = 6")
    intact, text = check(db)
    assert not intact
    assert "event 7 " in text and "does not follow event 6" in text


def test_deleting_a_middle_row_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 10)
    tamper(db, "DELETE FROM audit_events WHERE chain_seq = 5")
    intact, text = check(db)
    assert not intact
    assert "deleted: events 5-5 are missing" in text


def test_deleting_the_last_rows_is_detected_by_the_shutdown_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 10)
    tamper(db, "DELETE FROM audit_events WHERE chain_seq > 7")
    intact, text = check(db)
    assert not intact
    assert "deleted: event 10, sealed by the checkpoint" in text


def test_a_forged_checkpoint_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 10)
    tamper(db, "DELETE FROM audit_events WHERE chain_seq > 7")
    # Cover the truncation with a checkpoint made without the site key.
    from gateway.audit.chain import make_checkpoint

    conn = sqlite3.connect(db)
    head = conn.execute("SELECT hash FROM audit_events WHERE chain_seq = 7").fetchone()[0]
    conn.execute("DELETE FROM audit_checkpoints")
    conn.commit()
    conn.close()
    fake = make_checkpoint(
        b"guessed", instance_id="gw-a", chain_seq=7, head=head, time="2026-01-01", reason="x"
    )
    SqliteBackend(db).add_checkpoint(SqliteBackend(db).connect(), fake)
    intact, text = check(db)
    assert not intact
    assert "another key" in text


def test_a_rewritten_tail_disagrees_with_the_checkpoint(tmp_path: Path) -> None:
    """Rewriting every event from some point, hashes recomputed, is caught by a checkpoint."""
    db = tmp_path / "audit.db"
    write_events(db, 6)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM audit_events ORDER BY chain_seq")]
    conn.close()
    from gateway.audit.chain import event_hash

    prev = rows[2]["hash"]
    statements = []
    for row in rows[3:]:
        row["country"] = "US"
        row["prev_hash"] = prev
        digest = event_hash(row, row["chain_seq"], prev)
        statements.append(
            f"UPDATE audit_events SET country = 'US', prev_hash = '{prev}', hash = '{digest}' "
            f"WHERE chain_seq = {row['chain_seq']}"
        )
        prev = digest
    tamper(db, *statements)
    intact, text = check(db)
    assert not intact
    assert "altered: events up to 6 were rewritten" in text


def test_without_the_key_checkpoints_are_not_verified(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 3)
    result = verify(SqliteBackend(db), None)
    assert result.intact and not result.keyed
    assert "NOT verified" in result.describe()


def test_retention_expires_old_events_and_verification_still_passes(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = AuditStore(db, ChainSettings(instance_id="gw-a", secret=SECRET, retention_days=30))
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat().replace("+00:00", "Z")
    for _ in range(5):
        store.append(replace(AuditEvent.from_decision(decision_for(b"{}"), "gw-a", "v1"), time=old))
    for _ in range(3):
        store.append(AuditEvent.from_decision(decision_for(b"{}"), "gw-a", "v1"))
    store.close()
    # The next start runs retention: the five old events go, the expiry is recorded.
    restarted = AuditStore(db, ChainSettings(instance_id="gw-a", secret=SECRET, retention_days=30))
    restarted.start()
    restarted.close()
    conn = sqlite3.connect(db)
    actions = [r[0] for r in conn.execute("SELECT action FROM audit_events ORDER BY chain_seq")]
    conn.close()
    assert actions == ["block"] * 3 + ["retention-expiry"]
    intact, text = check(db)
    assert intact, text
    assert "seq 1-5 expired by retention" in text
    # Expired events cannot be faked away further: deleting the next one is still caught.
    tamper(db, "DELETE FROM audit_events WHERE chain_seq = 6")
    assert not check(db)[0]


def test_rows_not_yet_expired_cannot_be_deleted(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 2)
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_events")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_checkpoints")


def test_write_throughput(tmp_path: Path) -> None:
    """Group commit keeps the chain cheap: thousands of events per second with fsync."""
    db = tmp_path / "audit.db"
    store = AuditStore(db, ChainSettings(instance_id="gw-a", secret=SECRET))
    events = [AuditEvent.from_decision(decision_for(b"{}"), "gw-a", "v1") for _ in range(2000)]
    started = time.perf_counter()
    for event in events:
        store.append(event)
    store.flush()
    elapsed = time.perf_counter() - started
    store.close()
    assert verify(SqliteBackend(db), KEY).intact
    assert 2000 / elapsed > 500, f"{2000 / elapsed:.0f} events/s"


def test_truncation_with_the_checkpoint_rows_deleted_is_caught_by_the_checkpoint_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone deletes the last events *and* every checkpoint row: the database alone looks
    intact, the checkpoint log outside it does not agree. Through the real CLI."""
    db = tmp_path / "audit.db"
    log = tmp_path / "audit.db.checkpoints"  # the default place for this database
    write_events(db, 10, checkpoint_log=log)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["chain_seq"] for c in logged] == [10] and logged[0]["reason"] == "shutdown"
    config = tmp_path / "gateway.yaml"
    config.write_text(f"audit: {{database: {db}, instance_id: gw-a}}\n")
    monkeypatch.setenv("PHI_GATEWAY_SECRET", SECRET.decode())
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert "(1 in the checkpoint log)" in capsys.readouterr().out

    tamper(
        db,
        "DELETE FROM audit_events WHERE chain_seq > 7",
        "DELETE FROM audit_checkpoints",
    )
    assert check(db)[0]  # the database alone cannot tell
    assert main(["audit", "verify", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert (
        f"instance gw-a: TAMPERED: deleted: event 10, sealed by the checkpoint of "
        f"{logged[0]['time']} (shutdown, seq 10) in the checkpoint log {log}, is missing "
        "(the chain ends at seq 7: its last events were deleted)"
    ) in out
    # The same with the log named explicitly (a copy the admin shipped elsewhere).
    shipped = tmp_path / "shipped.checkpoints"
    shipped.write_bytes(log.read_bytes())
    assert main(["audit", "verify", "--config", str(config), "--checkpoints", str(shipped)]) == 1
    assert "its last events were deleted" in capsys.readouterr().out


def test_a_whole_chain_deleted_is_caught_by_the_checkpoint_log(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    log = tmp_path / "audit.checkpoints"
    write_events(db, 4, instance="gw-a", checkpoint_log=log)
    write_events(db, 3, instance="gw-b", checkpoint_log=log)
    tamper(
        db,
        "DELETE FROM audit_events WHERE instance_id = 'gw-b'",
        "DELETE FROM audit_checkpoints WHERE instance_id = 'gw-b'",
    )
    result = verify(SqliteBackend(db), KEY, checkpoint_logs=[log])
    problems = {c.instance_id: c.problem for c in result.chains}
    assert problems["gw-a"] == ""
    assert problems["gw-b"].startswith("deleted: event 3, sealed by the checkpoint")


def test_a_damaged_checkpoint_log_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    log = tmp_path / "audit.checkpoints"
    write_events(db, 3, checkpoint_log=log)
    with log.open("a") as f:
        f.write('{"instance_id": "gw-a", "chain_seq": "x"}\n')
    result = verify(SqliteBackend(db), KEY, checkpoint_logs=[log])
    assert not result.intact
    assert f"{log} line 2 is not a checkpoint" in result.describe()


def test_no_checkpoint_log_fails_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "audit.db"
    write_events(db, 3)  # written without a log (or the log was removed)
    config = tmp_path / "gateway.yaml"
    config.write_text(f"audit: {{database: {db}}}\n")
    monkeypatch.setenv("PHI_GATEWAY_SECRET", SECRET.decode())
    assert main(["audit", "verify", "--config", str(config)]) == 1
    assert "NOT checked against a checkpoint log" in capsys.readouterr().out
    missing = tmp_path / "nowhere.checkpoints"
    assert main(["audit", "verify", "--config", str(config), "--checkpoints", str(missing)]) == 2


def test_the_canonical_form_is_the_one_chains_were_first_hashed_with() -> None:
    """canonical() writes with orjson; chains written before were hashed with json.dumps:
    the bytes must agree for every kind of value an event holds."""
    import json
    import random

    from gateway.audit.chain import canonical

    rng = random.Random(7)
    alphabet = [chr(i) for i in range(0x250)] + ["\u2028", "\u2029", "\ufeff", "😀", "\U0010ffff"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        record = {
            f"k{text}": text,
            "incident_id": "INC-20261203T120000Z-0a1b2c3d",
            "port": rng.randint(0, 65535),
            "chain_seq": rng.randint(1, 2**62),
            "empty": "",
            "categories": '{"name":2}',
        }
        expected = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert canonical(record) == expected.encode()
