"""The audit journal: a process killed with SIGKILL right after deciding loses no event. Every
event is in the journal before ``append`` returns; the next start spools what the trail lacks
and writes it once; the journal stays bounded by rotating."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.audit.journal import Journal, journal_path
from gateway.audit.spool import Spool
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.store import AuditStore, ChainSettings
from gateway.audit.verify import verify
from tests.unit.test_audit_chain import KEY, SECRET
from tests.unit.test_audit_outage import _event, _rows, _wait

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "phi-gateway"


def _store(db: Path, rotate_bytes: int = 4 << 20) -> AuditStore:
    spool = db.with_name(f"{db.name}.spool")
    return AuditStore(
        SqliteBackend(db),
        ChainSettings(instance_id="gw-a", secret=SECRET),
        spool=Spool(spool, 1 << 30),
        journal=Journal(journal_path(spool), rotate_bytes),
    )


_KILLED = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.unit.test_audit_journal import _store
from tests.unit.test_audit_outage import _event
store = _store(Path({db!r}))
store.start()
for _ in range({count}):
    store.append(_event())
# Decided, answered: killed before the writer thread has had its turn.
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_events_decided_just_before_a_sigkill_are_written_by_the_next_start(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    script = textwrap.dedent(_KILLED.format(root=str(ROOT), db=str(db), count=300))
    killed = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    written_before = _rows(db) if db.exists() else 0
    assert written_before < 300, "the writer committed everything before the kill"
    assert journal_path(tmp_path / "audit.db.spool").stat().st_size > 0
    # Before anything restarts, `audit verify` says how many decided events wait there.
    config = tmp_path / "gateway.yaml"
    config.write_text(f"audit:\n  database: {db}\n")
    verified = subprocess.run(
        [str(BIN), "audit", "verify", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert json.loads(verified.stdout)["journaled_not_written"] == 300 - written_before

    store = _store(db)
    store.start()
    _wait(lambda: _rows(db) == 300)
    store.close()
    assert _rows(db) == 300  # each once: none committed before the kill is written again
    result = verify(SqliteBackend(db), KEY)
    assert result.intact, result.describe()
    assert not journal_path(tmp_path / "audit.db.spool").exists()  # a clean stop discards it


def test_a_clean_stop_leaves_no_journal_and_a_restart_writes_nothing_twice(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    store = _store(db)
    for _ in range(20):
        store.append(_event())
    store.close()
    assert _rows(db) == 20
    assert not journal_path(tmp_path / "audit.db.spool").exists()
    again = _store(db)
    again.start()
    again.append(_event())
    again.close()
    assert _rows(db) == 21


def test_the_journal_rotates_and_drops_what_is_durable(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = _store(db, rotate_bytes=8 << 10)
    journal = store.journal
    assert journal is not None
    for _ in range(200):  # about 1 KB each: many rotations
        store.append(_event())
        if journal.previous.exists():
            store.flush()
            _wait(lambda: not journal.previous.exists())
    sizes = [p.stat().st_size for p in (journal.path, journal.previous) if p.exists()]
    assert sum(sizes) < 2 * (8 << 10) + 4096
    store.flush()
    store.close()
    assert _rows(db) == 200
    assert verify(SqliteBackend(db), KEY).intact


def test_a_journal_line_cut_by_the_kill_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = _store(db)
    journal = store.journal
    assert journal is not None
    path = journal.path
    event = _event()
    import orjson

    path.write_bytes(orjson.dumps(event) + b"\n" + orjson.dumps(_event())[:40])
    os.chmod(path, 0o640)
    store.start()
    _wait(lambda: _rows(db) == 1)
    store.close()
    assert _rows(db) == 1
