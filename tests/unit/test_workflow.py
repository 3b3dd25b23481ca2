"""The incident workflow's state machine and its events (gateway/audit/workflow.py)."""

from __future__ import annotations

import orjson
import pytest

from gateway.audit.chain import event_hash
from gateway.audit.workflow import Change, State, WorkflowError, next_state, replay, workflow_event


def _event(current: State, change: Change) -> dict[str, object]:
    event = workflow_event(
        instance_id="gw",
        policy_version="v1",
        incident_id="INC-20261203T000000Z-00000001",
        current=current,
        change=change,
        by="analyst-1",
        role="analyst",
        client="127.0.0.1:5000",
    )
    return event.as_row() | {"seq": 1}


def test_an_incident_moves_through_its_states() -> None:
    rows = []
    state = State()
    for change in (
        Change("acknowledge"),
        Change("assign", assignee="dana"),
        Change("comment", comment="called the vendor"),
        Change("close", disposition="accepted-risk"),
        Change("reopen"),
        Change("close", disposition="resolved"),
    ):
        rows.append(_event(state, change))
        state = replay(rows)
    assert state.state == "resolved" and state.assignee == "dana" and state.closed_at
    assert [h["to"] for h in state.history] == [
        "acknowledged",
        "assigned",
        "assigned",
        "accepted-risk",
        "acknowledged",
        "resolved",
    ]


@pytest.mark.parametrize(
    ("state", "change", "problem"),
    [
        ("resolved", Change("acknowledge"), "closed"),
        ("acknowledged", Change("reopen"), "only a closed"),
        ("acknowledged", Change("acknowledge"), "already"),
    ],
)
def test_changes_the_state_forbids_are_refused(state: str, change: Change, problem: str) -> None:
    with pytest.raises(WorkflowError, match=problem):
        next_state(State(state=state), change)


def test_malformed_changes_are_refused() -> None:
    for bad in (
        {"change": "delete"},
        {"change": "close"},
        {"change": "close", "disposition": "fine"},
        {"change": "assign"},
        {"change": "assign", "assignee": "two words"},
        {"change": "comment"},
        {"change": "acknowledge", "assignee": "dana"},
        {"change": "comment", "comment": "x" * 5000},
    ):
        with pytest.raises(WorkflowError):
            Change(**bad)


def test_a_workflow_event_names_its_incident_and_chains_like_any_other() -> None:
    row = _event(State(), Change("comment", comment="note"))
    assert row["kind"] == "workflow" and row["subject"] == "INC-20261203T000000Z-00000001"
    assert str(row["incident_id"]).startswith("WF-")
    detail = orjson.loads(str(row["detail"]))
    assert detail["by"] == "analyst-1" and detail["comment"] == "note"
    # The subject is hashed: changing it breaks the chain.
    assert event_hash(row, 1, "0" * 64) != event_hash(row | {"subject": "INC-x"}, 1, "0" * 64)
