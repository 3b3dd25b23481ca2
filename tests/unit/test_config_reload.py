"""A reload takes a valid config file whole or not at all: a file that looks cut (no final line
break), that loses a section the running config has, or that moves the audit store is
refused, and `check-config --against` says so before anyone sends SIGHUP."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import changed_keys, parse_config_text, reload_problems

RUNNING = yaml.safe_dump(
    {
        "policy": {"deny_destinations": [{"host": "offshore.example", "reason": "contract ended"}]},
        "audit": {"database": "var/audit.db"},
        "limits": {"max_body_bytes": 4194304},
    }
)


def _problems(text: str) -> list[tuple[str, str]]:
    running = parse_config_text(RUNNING, "running")
    return reload_problems(RUNNING, text, running, parse_config_text(text, "new"))


def test_the_running_file_itself_may_be_reloaded() -> None:
    assert _problems(RUNNING) == []


def test_a_file_cut_mid_line_is_refused() -> None:
    cut = RUNNING[: RUNNING.index("contract ended") + len("contract en")]
    valid = parse_config_text(cut, "cut")  # a valid config, with a reason cut short
    assert valid.policy.deny_destinations[0].reason == "contract en"
    assert [key for key, _ in _problems(cut)] == ["(file)"]


def test_a_lost_section_is_refused_unless_written_empty() -> None:
    lost = yaml.safe_dump({k: v for k, v in yaml.safe_load(RUNNING).items() if k != "policy"})
    problems = _problems(lost)
    assert [key for key, _ in problems] == ["policy"]
    assert "policy: {}" in problems[0][1]
    explicit = yaml.safe_dump({**yaml.safe_load(lost), "policy": {}})
    assert _problems(explicit) == []


def test_the_audit_store_does_not_move_on_a_reload() -> None:
    moved = RUNNING.replace("var/audit.db", "var/aud")
    assert [key for key, _ in _problems(moved)] == ["audit.database"]


def test_changed_keys_are_named_without_their_values() -> None:
    running = parse_config_text(RUNNING, "running")
    new = parse_config_text(RUNNING.replace("4194304", "8388608"), "new")
    assert changed_keys(running, new) == ["limits.max_body_bytes"]


def test_check_config_against_the_running_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(RUNNING)
    data["audit"]["database"] = str(tmp_path / "audit.db")
    running = tmp_path / "running.yaml"
    running.write_text(yaml.safe_dump(data))
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**data, "limits": {"max_body_bytes": 8388608}}))
    assert main(["check-config", str(changed), "--against", str(running)]) == 0
    assert "limits.max_body_bytes" in capsys.readouterr().out
    lost = tmp_path / "lost.yaml"
    lost.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "policy"}))
    assert main(["check-config", str(lost), "--against", str(running)]) == 2
    assert "policy: section missing" in capsys.readouterr().err
