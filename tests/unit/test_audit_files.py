"""The audit trail's files are the owner's and the group's only: they name destinations,
clients and fingerprints."""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.audit import AuditEvent, AuditStore
from tests.unit.test_audit import decision_for


def _others_may(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode) & 0o007


def test_a_new_trail_and_its_journal_are_not_world_readable(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = AuditStore(db)
    store.append(AuditEvent.from_decision(decision_for(b"{}"), "gw", "v1"))
    store.flush()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("audit.db")]
    assert db in files and len(files) >= 2  # the database and its write-ahead log
    assert [p.name for p in files if _others_may(p)] == []
    store.close()


def test_an_existing_trail_readable_by_anyone_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    AuditStore(db).close()
    db.chmod(0o644)
    AuditStore(db).close()
    assert _others_may(db) == 0
