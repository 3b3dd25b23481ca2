"""The incident workflow: acknowledge, assign, comment, close (resolved, false positive,
accepted risk) and reopen. Each change is itself a chained audit event (kind ``workflow``,
``subject`` = the incident), so the trail stays append-only and ``audit verify`` covers the
workflow too; an incident's state is what its history of changes says.

Comments are free text written by staff: kept in the event's detail, shown to analysts and
auditors with the incident, never put into metrics, logs or the SIEM stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.audit.backend import ROW_COLUMNS, AuditBackend
from gateway.audit.event import AuditEvent, event_timestamp, trail_event

NEW = "new"
CLOSED = ("resolved", "false-positive", "accepted-risk")
STATES = (NEW, "acknowledged", "assigned", *CLOSED)
CHANGES = ("acknowledge", "assign", "comment", "close", "reopen")
MAX_COMMENT = 4000
_ASSIGNEE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class WorkflowError(ValueError):
    """A change the incident's state does not allow, or a malformed one (the message names
    the problem, never echoes a comment)."""


@dataclass(frozen=True, slots=True)
class Change:
    change: str
    disposition: str = ""  # close: one of CLOSED
    assignee: str = ""  # assign
    comment: str = ""

    def __post_init__(self) -> None:
        if self.change not in CHANGES:
            raise WorkflowError(f"change must be one of {', '.join(CHANGES)}")
        if self.change == "close" and self.disposition not in CLOSED:
            raise WorkflowError(f"close needs a disposition: {', '.join(CLOSED)}")
        if self.change != "close" and self.disposition:
            raise WorkflowError("only close takes a disposition")
        if self.change == "assign" and not _ASSIGNEE.match(self.assignee):
            raise WorkflowError("assign needs an assignee (letters, digits, . _ @ -; 64 at most)")
        if self.change != "assign" and self.assignee:
            raise WorkflowError("only assign takes an assignee")
        if self.change == "comment" and not self.comment.strip():
            raise WorkflowError("comment needs a comment")
        if len(self.comment) > MAX_COMMENT:
            raise WorkflowError(f"a comment of at most {MAX_COMMENT} characters")


@dataclass(slots=True)
class State:
    state: str = NEW
    assignee: str = ""
    closed_at: str = ""  # time of the change that closed it (empty while open)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.state in CLOSED


def next_state(current: State, change: Change) -> str:
    if change.change == "comment":
        return current.state
    if change.change == "reopen":
        if not current.closed:
            raise WorkflowError(f"only a closed incident can be reopened (it is {current.state})")
        return "acknowledged"
    if current.closed:
        raise WorkflowError(f"the incident is closed ({current.state}): reopen it first")
    if change.change == "acknowledge":
        if current.state != NEW:
            raise WorkflowError(f"already {current.state}")
        return "acknowledged"
    if change.change == "assign":
        return "assigned"
    return change.disposition


def history(backend: AuditBackend, incident_id: str) -> State:
    """The incident's workflow state, from its changes in the trail (oldest first)."""
    return replay(_changes(backend, "subject = ?", (incident_id,)))


def _changes(backend: AuditBackend, where: str, params: tuple[str, ...]) -> list[dict[str, Any]]:
    """Workflow events matching ``where`` (our SQL, bound values), oldest first."""
    return backend.fetch_once(
        f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_events "  # noqa: S608
        f"WHERE kind = 'workflow' AND {where} ORDER BY time, seq",
        params,
    )


def replay(rows: list[dict[str, Any]]) -> State:
    state = State()
    for row in rows:
        try:
            detail = orjson.loads(str(row.get("detail") or "{}"))
        except orjson.JSONDecodeError:
            continue
        if not isinstance(detail, dict):
            continue
        state.state = str(detail.get("to", state.state))
        if detail.get("change") == "assign":
            state.assignee = str(detail.get("assignee", ""))
        state.closed_at = str(row["time"]) if state.state in CLOSED else ""
        state.history.append({"time": row["time"], "event_id": row["incident_id"], **detail})
    return state


def dispositions(backend: AuditBackend, since: str, until: str) -> dict[str, State]:
    """The workflow state of every incident decided in [since, until) that has one, with
    every change, also those made after the period: for reports."""
    rows = _changes(
        backend,
        "subject >= ? AND subject < ?",
        (f"INC-{since.replace('-', '')}", f"INC-{until.replace('-', '')}"),
    )
    by_incident: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_incident.setdefault(str(row["subject"]), []).append(row)
    return {incident: replay(changes) for incident, changes in by_incident.items()}


def hours_to_close(decided: str, state: State) -> float | None:
    start, end = event_timestamp(decided), event_timestamp(state.closed_at)
    if not (start and end):
        return None
    return round((end - start) / 3600, 2)


def workflow_event(
    *,
    instance_id: str,
    policy_version: str,
    incident_id: str,
    current: State,
    change: Change,
    by: str,
    role: str,
    client: str,
) -> AuditEvent:
    """The chained event of one change (raises WorkflowError if the state forbids it)."""
    to = next_state(current, change)
    detail: dict[str, Any] = {
        "incident_id": incident_id,
        "change": change.change,
        "from": current.state,
        "to": to,
        "by": by,
        "role": role,
    }
    if change.assignee:
        detail["assignee"] = change.assignee
    if change.comment:
        detail["comment"] = change.comment
    return trail_event(
        prefix="WF",
        instance_id=instance_id,
        policy_version=policy_version,
        client=client,
        protocol="http/1",
        action="workflow",
        rule=change.change,
        reason=f"{incident_id}: {current.state} -> {to} by {by}",
        kind="workflow",
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
        subject=incident_id,
    )
