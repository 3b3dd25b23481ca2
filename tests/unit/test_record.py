"""The record stage: what the metrics say about a decision."""

from __future__ import annotations

import re
from pathlib import Path

from gateway import metrics

REPO = Path(__file__).parents[2]
_LABELLED = re.compile(r'NOT_INSPECTED\.labels\("([a-z-]+)"\)')


def test_the_not_inspected_help_lists_exactly_the_reasons_the_code_counts() -> None:
    counted: set[str] = set()
    for path in [*REPO.joinpath("gateway").rglob("*.py"), *REPO.joinpath("addons").rglob("*.py")]:
        counted.update(_LABELLED.findall(path.read_text()))
    record = REPO.joinpath("gateway", "record.py").read_text()
    counted.update(re.findall(r'(?:return |: )"([a-z]+(?:-[a-z]+)*)"', record))
    listed = set(metrics.NOT_INSPECTED_REASONS)
    assert counted == listed, counted ^ listed
    for reason in metrics.NOT_INSPECTED_REASONS:
        assert reason in metrics.NOT_INSPECTED._documentation
