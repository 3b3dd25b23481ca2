"""One /metrics for a gateway that runs as several processes (``run --workers N``): the
supervisor's own metrics and every worker's, each worker's samples labelled
``worker="<n>"``, in the Prometheus text format (0.0.4).

The text format wants every metric family once, its HELP and TYPE first and all its
samples together, so the expositions are merged by family, not concatenated. Counters then
sum across workers with ``sum without (worker)`` and the dashboards' queries, which
aggregate with ``sum(...)`` or ``max(...)``, read the same either way. A worker that did
not answer in time is left out of one scrape (``phi_gateway_worker_scrape_ok`` says which).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?( .*)$")


class _Family:
    __slots__ = ("comments", "samples")

    def __init__(self) -> None:
        self.comments: list[str] = []
        self.samples: list[str] = []


def _labelled(line: str, label: str) -> str:
    match = _SAMPLE.match(line)
    if match is None:
        return line
    name, labels, rest = match.groups()
    if labels:
        return f"{name}{{{label},{labels[1:]}{rest}"
    return f"{name}{{{label}}}{rest}"


def merge(expositions: Iterable[tuple[str, str]]) -> str:
    """(worker label value, exposition text) pairs, "" for the process's own (no label),
    merged family by family in the order first seen."""
    families: dict[str, _Family] = {}
    for worker, text in expositions:
        label = f'worker="{worker}"' if worker else ""
        family: _Family | None = None
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                name = line.split(" ", 3)[2]
                known = families.get(name)
                if known is None:
                    known = families[name] = _Family()
                if line not in known.comments:
                    known.comments.append(line)
                family = known
            elif line.startswith("#"):
                continue
            elif family is not None:
                family.samples.append(_labelled(line, label) if label else line)
    out: list[str] = []
    for family in families.values():
        out += family.comments
        out += family.samples
    return "\n".join(out) + "\n"
