"""Verify every instance's hash chain and its keyed checkpoints.

For each chain the first problem is named: an altered event (its hash does not match its
content), an inserted or replaced one (it does not follow its predecessor), deleted events (a
gap in the sequence, a chain that starts late without a retention record, or a checkpoint
naming an event that is no longer there), a rewritten stretch (a checkpoint disagrees with the
event it sealed), or a checkpoint that is not genuine (its HMAC does not verify).

The checkpoints of the checkpoint log (a file outside the database, see checkpoint_log.py) are
checked like those of the database: a chain that ends before a logged checkpoint was truncated,
even when the checkpoint rows were deleted with its last events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.backend import (
    CHECKPOINT_COLUMNS,
    RETENTION_COLUMNS,
    ROW_COLUMNS,
    AuditBackend,
    Connection,
)
from gateway.audit.chain import GENESIS, Checkpoint, checkpoint_valid, event_hash, key_id
from gateway.audit.checkpoint_log import read_checkpoint_logs


@dataclass(slots=True)
class ChainResult:
    instance_id: str
    events: int = 0
    first_seq: int = 0
    last_seq: int = 0
    first_time: str = ""
    last_time: str = ""
    checkpoints: int = 0  # checkpoints checked against the chain
    logged_checkpoints: int = 0  # of which from a checkpoint log outside the database
    last_checkpoint_seq: int = 0
    expired_through: int = 0  # events up to this seq were removed by retention (recorded)
    problem: str = ""  # empty: intact
    in_range: int = 0  # events inside the requested time range
    # Events decided (numbered) but not in the trail: never written (lost while the store
    # and spool failed, or still in a spool), with the runs and numbers they had.
    missing: int = 0
    missing_detail: str = ""

    @property
    def intact(self) -> bool:
        return not self.problem

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def unsealed(self) -> int:
        """Events after the last checkpoint: a crash before the next checkpoint leaves some."""
        return max(0, self.last_seq - max(self.last_checkpoint_seq, self.expired_through))

    def describe(self) -> str:
        if self.problem:
            return f"instance {self.instance_id}: TAMPERED: {self.problem}"
        if not self.events:
            return f"instance {self.instance_id}: intact, no events"
        text = (
            f"instance {self.instance_id}: intact, {self.events} events, "
            f"seq {self.first_seq}-{self.last_seq}, {self.first_time} .. {self.last_time}, "
            f"{self.checkpoints} checkpoint(s)"
        )
        if self.logged_checkpoints:
            text += f" ({self.logged_checkpoints} in the checkpoint log)"
        if self.expired_through:
            text += f", seq 1-{self.expired_through} expired by retention"
        if self.unsealed:
            text += f"; {self.unsealed} newest event(s) not yet sealed by a checkpoint"
        if self.missing:
            text += (
                f"; INCOMPLETE: {self.missing} decided event(s) never written "
                f"({self.missing_detail})"
            )
        return text


@dataclass(slots=True)
class Verification:
    chains: list[ChainResult] = field(default_factory=list)
    legacy_events: int = 0  # rows written before the hash chain existed (not covered)
    keyed: bool = True  # False: no key, checkpoint signatures were not checked
    checkpoint_logs: list[str] = field(default_factory=list)  # the logs read
    log_problems: list[str] = field(default_factory=list)  # lines that are not checkpoints

    @property
    def intact(self) -> bool:
        return all(c.intact for c in self.chains) and not self.log_problems

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.chains)

    @property
    def events(self) -> int:
        return sum(c.events for c in self.chains)

    def describe(self) -> str:
        lines = [c.describe() for c in self.chains] or ["no audit events"]
        if self.legacy_events:
            lines.append(
                f"{self.legacy_events} event(s) written before the hash chain existed: not covered"
            )
        if not self.keyed:
            lines.append("checkpoint signatures NOT verified: the site secret is not set")
        lines += [f"checkpoint log: TAMPERED: {problem}" for problem in self.log_problems]
        for log in self.checkpoint_logs:
            lines.append(f"checkpoint log {log} checked")
        verdict = "intact" if self.intact else "TAMPERED"
        if not self.complete:
            verdict += ", INCOMPLETE"
        lines.append(
            f"result: {verdict} ({self.events} events in {len(self.chains)} chain(s) checked)"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "complete": self.complete,
            "keyed": self.keyed,
            "events": self.events,
            "legacy_events": self.legacy_events,
            "checkpoint_logs": self.checkpoint_logs,
            "log_problems": self.log_problems,
            "chains": [
                {
                    "instance_id": c.instance_id,
                    "intact": c.intact,
                    "problem": c.problem,
                    "events": c.events,
                    "events_in_range": c.in_range,
                    "first_seq": c.first_seq,
                    "last_seq": c.last_seq,
                    "first_time": c.first_time,
                    "last_time": c.last_time,
                    "checkpoints": c.checkpoints,
                    "logged_checkpoints": c.logged_checkpoints,
                    "unsealed": c.unsealed,
                    "expired_through": c.expired_through,
                    "missing": c.missing,
                    "missing_detail": c.missing_detail,
                }
                for c in self.chains
            ],
        }


def verify(
    backend: AuditBackend,
    checkpoint_key: bytes | None,
    since: str = "",
    until: str = "",
    checkpoint_logs: Sequence[Path] = (),
) -> Verification:
    """Check every chain in the database, with the checkpoints of the database and of the given
    checkpoint logs. ``since``/``until`` (ISO times) only count the events of a report's range;
    the whole chain is always checked (a range is only as good as the chain that leads to it).
    Raises OSError when a checkpoint log cannot be read."""
    logged, log_problems = read_checkpoint_logs(checkpoint_logs)
    conn = backend.connect()
    try:
        result = Verification(
            keyed=checkpoint_key is not None,
            checkpoint_logs=[str(p) for p in checkpoint_logs],
            log_problems=log_problems,
        )
        legacy = backend.fetch(conn, "SELECT COUNT(*) AS n FROM audit_events WHERE hash IS NULL")
        result.legacy_events = int(legacy[0]["n"])
        instances = backend.fetch(
            conn,
            "SELECT instance_id FROM audit_events WHERE hash IS NOT NULL "
            "UNION SELECT instance_id FROM audit_checkpoints ORDER BY instance_id",
        )
        names = sorted(
            {str(r["instance_id"]) for r in instances} | {c.instance_id for c, _ in logged}
        )
        for name in names:
            from_log = [(c, log) for c, log in logged if c.instance_id == name]
            chain = _verify_chain(backend, conn, name, checkpoint_key, from_log)
            if since or until:
                chain.in_range = _count_in_range(backend, conn, chain.instance_id, since, until)
            else:
                chain.in_range = chain.events
            result.chains.append(chain)
        return result
    finally:
        conn.close()


def _count_in_range(
    backend: AuditBackend, conn: Connection, instance_id: str, since: str, until: str
) -> int:
    rows = backend.fetch(
        conn,
        "SELECT COUNT(*) AS n FROM audit_events WHERE instance_id = ? AND hash IS NOT NULL "
        "AND time >= ? AND time < ?",
        (instance_id, since or "0", until or "9"),
    )
    return int(rows[0]["n"])


def _verify_chain(
    backend: AuditBackend,
    conn: Connection,
    instance_id: str,
    key: bytes | None,
    logged: list[tuple[Checkpoint, str]],
) -> ChainResult:
    result = ChainResult(instance_id)
    rows = backend.fetch(
        conn,
        f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events "  # noqa: S608
        "WHERE instance_id = ? AND hash IS NOT NULL ORDER BY chain_seq, seq",
        (instance_id,),
    )
    retention = backend.fetch(
        conn,
        f"SELECT {', '.join(RETENTION_COLUMNS)} FROM audit_retention "  # noqa: S608
        "WHERE instance_id = ? ORDER BY through_seq DESC",
        (instance_id,),
    )
    checkpoints = [
        (Checkpoint(**r), "")
        for r in backend.fetch(
            conn,
            f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM audit_checkpoints "  # noqa: S608
            "WHERE instance_id = ? ORDER BY id",
            (instance_id,),
        )
    ]
    stored = {c for c, _ in checkpoints}
    checkpoints += [(c, log) for c, log in logged if c not in stored]
    result.logged_checkpoints = len(logged)
    if rows:
        result.events = len(rows)
        result.first_seq, result.last_seq = int(rows[0]["chain_seq"]), int(rows[-1]["chain_seq"])
        result.first_time, result.last_time = str(rows[0]["time"]), str(rows[-1]["time"])
    result.problem = _check_links(rows, retention, result)
    if not result.problem:
        result.problem = _check_checkpoints(rows, checkpoints, key, result)
    if not result.problem:
        _check_complete(rows, [c for c, _ in checkpoints], result)
    return result


def _check_complete(
    rows: list[dict[str, Any]], checkpoints: list[Checkpoint], result: ChainResult
) -> None:
    """Every run numbers its events 1, 2, 3, ... as it decides them, and its checkpoints say
    how far it had got: a number no event carries is an event never written. (Where
    retention expired the chain's start, a run's numbers are counted from its oldest kept.)"""
    numbers: dict[str, set[int]] = {}
    for row in rows:
        run, n = _run_number(str(row.get("run_seq") or ""))
        if run:
            numbers.setdefault(run, set()).add(n)
    tallies: dict[str, int] = {}
    for checkpoint in checkpoints:
        run, n = _run_number(checkpoint.tally)
        if run:
            tallies[run] = max(n, tallies.get(run, 0))
    details: list[str] = []
    for run in sorted(numbers.keys() | tallies.keys()):
        present = numbers.get(run, set())
        top = max(max(present, default=0), tallies.get(run, 0))
        low = min(present, default=top + 1) if result.expired_through else 1
        gaps = [n for n in range(low, top + 1) if n not in present]
        if gaps:
            result.missing += len(gaps)
            details.append(f"run {run}: {_ranges(gaps)}")
    result.missing_detail = "; ".join(details)


def _run_number(value: str) -> tuple[str, int]:
    run, _, number = value.partition("/")
    if not run or not number.isdigit():
        return "", 0
    return run, int(number)


def _ranges(numbers: list[int]) -> str:
    """[3, 4, 5, 9] -> "numbers 3-5, 9" (at most a few ranges, then how many more)."""
    spans: list[tuple[int, int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    shown = [f"{a}-{b}" if a != b else str(a) for a, b in spans[:5]]
    more = f" and {len(spans) - 5} more range(s)" if len(spans) > 5 else ""
    return "numbers " + ", ".join(shown) + more


def _check_links(
    rows: list[dict[str, Any]], retention: list[dict[str, Any]], result: ChainResult
) -> str:
    expected_seq, expected_prev = 1, GENESIS
    if rows and int(rows[0]["chain_seq"]) > 1:
        start = int(rows[0]["chain_seq"])
        record = next((r for r in retention if int(r["through_seq"]) == start - 1), None)
        if record is None or record["through_hash"] != rows[0]["prev_hash"]:
            return f"deleted: events 1-{start - 1} are missing (no retention record covers them)"
        if not any(_expiry_covers(r, record) for r in rows):
            return (
                f"deleted: events 1-{start - 1} are missing (a retention record names them, "
                "but no expiry event in the chain does)"
            )
        result.expired_through = start - 1
        expected_seq, expected_prev = start, str(record["through_hash"])
    for row in rows:
        seq = int(row["chain_seq"])
        label = f"event {seq} ({row['incident_id']}, {row['time']})"
        if seq < expected_seq:
            return f"inserted: a second event with seq {seq}: {label}"
        if seq > expected_seq:
            return f"deleted: events {expected_seq}-{seq - 1} are missing before {label}"
        if event_hash(row, seq, str(row["prev_hash"])) != row["hash"]:
            return f"altered: {label} does not match its hash"
        if row["prev_hash"] != expected_prev:
            return (
                f"inserted or replaced: {label} does not follow event {seq - 1} "
                "(one of them was replaced and re-hashed, or this one was inserted)"
            )
        expected_seq, expected_prev = seq + 1, str(row["hash"])
    return ""


def _expiry_covers(row: dict[str, Any], record: dict[str, Any]) -> bool:
    if row["kind"] != "expiry":
        return False
    try:
        detail = json.loads(str(row["detail"]))
    except ValueError:
        return False
    return bool(
        detail.get("through_seq") == int(record["through_seq"])
        and detail.get("through_hash") == record["through_hash"]
    )


def _check_checkpoints(
    rows: list[dict[str, Any]],
    checkpoints: Iterable[tuple[Checkpoint, str]],
    key: bytes | None,
    result: ChainResult,
) -> str:
    """``checkpoints``: each with the log it came from ("" for the database's own table)."""
    by_seq = {int(r["chain_seq"]): r for r in rows}
    expected_key = key_id(key) if key is not None else ""
    for checkpoint, log in checkpoints:
        label = f"checkpoint of {checkpoint.time} ({checkpoint.reason}, seq {checkpoint.chain_seq})"
        if log:
            label += f" in the checkpoint log {log}"
        if key is not None:
            if checkpoint.key_id != expected_key:
                return f"{label} was made with another key (was the site secret different?)"
            if not checkpoint_valid(key, checkpoint):
                return f"forged: {label} does not verify with the site key"
        result.checkpoints += 1
        result.last_checkpoint_seq = max(result.last_checkpoint_seq, checkpoint.chain_seq)
        if checkpoint.chain_seq <= result.expired_through:
            continue
        row = by_seq.get(checkpoint.chain_seq)
        if row is None:
            truncated = (
                ": its last events were deleted" if checkpoint.chain_seq > result.last_seq else ""
            )
            return (
                f"deleted: event {checkpoint.chain_seq}, sealed by the {label}, is missing "
                f"(the chain ends at seq {result.last_seq}{truncated})"
            )
        if row["hash"] != checkpoint.hash:
            return (
                f"altered: events up to {checkpoint.chain_seq} were rewritten "
                f"(the {label} sealed another hash)"
            )
    return ""
