"""Results: one comparison per scenario and payload, printed as a table and saved as JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import WrkResult

TARGET_PAYLOAD = "hl7-adt-2k"
TARGET_RATIO = 0.90
# Issue 14: documents abroad at no less than half of bare mitmdump's throughput.
TARGETS = {TARGET_PAYLOAD: TARGET_RATIO, "pdf-200k": 0.50}
# Issue 19: domestic HTTPS through CONNECT, relayed, at twice bare mitmdump's (which decrypts).
SCENARIO_TARGETS = {"domestic-tls": 2.0}
# Issue 19: one worker on foreign traffic: PHI monitored (an audit row each, "foreign"), PHI
# blocked, and clean traffic forwarded, each at 0.90x bare mitmdump or better.
FOREIGN_SCENARIOS = ("foreign", "foreign-block")
# Issue 19: two workers behind HAProxy against one gateway, on inspected foreign traffic.
WORKERS_TARGET = (2, 1.6)


@dataclass
class Comparison:
    scenario: str
    payload: str
    payload_bytes: int
    bare: list[WrkResult] = field(default_factory=list)
    gateway: list[WrkResult] = field(default_factory=list)
    audit_events: list[int] = field(default_factory=list)  # rows the gateway wrote per round
    gateway_requests: list[int] = field(default_factory=list)  # requests it saw per round
    decisions: dict[str, float] = field(default_factory=dict)  # last round's decision counters
    relayed: list[int] = field(default_factory=list)  # domestic-tls: connections relayed
    # workers: N workers behind HAProxy ("gateway") against one gateway process ("bare")
    workers: int = 0
    # foreign-block: the gateway must refuse every request (a 2xx is PHI let through)
    refused: bool = False
    phi: bool = True  # False: a clean payload, which the gateway forwards unrecorded

    @staticmethod
    def _median(results: list[WrkResult], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results) if results else 0.0

    def bare_rps(self) -> float:
        return self._median(self.bare, "rps")

    def gateway_rps(self) -> float:
        return self._median(self.gateway, "rps")

    def ratio(self) -> float:
        bare = self.bare_rps()
        return self.gateway_rps() / bare if bare else 0.0

    def cpu_ratio(self) -> float:
        """Bare CPU per request / gateway CPU per request: the throughput ratio to expect when
        each proxy has a core to itself; robust against other load on the machine."""
        gateway = self._median(self.gateway, "cpu_ms_per_request")
        return self._median(self.bare, "cpu_ms_per_request") / gateway if gateway else 0.0

    def p99_added(self) -> float:
        """The gateway's p99 latency less bare mitmdump's, in ms (medians over rounds)."""
        return self._median(self.gateway, "p99_ms") - self._median(self.bare, "p99_ms")

    def round_ratios(self) -> list[float]:
        return [g.rps / b.rps for b, g in zip(self.bare, self.gateway, strict=False) if b.rps]

    def bad(self) -> tuple[int, int]:
        if self.refused:  # answered 2xx/3xx: forwarded although it should be refused
            gateway = sum(r.socket_errors + r.requests - r.non_2xx_3xx for r in self.gateway)
        else:
            gateway = sum(r.bad for r in self.gateway)
        return sum(r.bad for r in self.bare), gateway

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "payload": self.payload,
            "payload_bytes": self.payload_bytes,
            "bare_rps": round(self.bare_rps(), 1),
            "gateway_rps": round(self.gateway_rps(), 1),
            "ratio": round(self.ratio(), 4),
            "round_ratios": [round(r, 4) for r in self.round_ratios()],
            "cpu_ratio": round(self.cpu_ratio(), 4),
            "p99_added_ms": round(self.p99_added(), 3),
            "bare": [r.as_dict() for r in self.bare],
            "gateway": [r.as_dict() for r in self.gateway],
            "gateway_requests_seen": self.gateway_requests,
            "audit_events": self.audit_events,
            "gateway_decisions": self.decisions,
            "gateway_tls_relayed": self.relayed,
            "workers": self.workers,
            "refused": self.refused,
        }


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def table(comparisons: list[Comparison]) -> str:
    head = (
        "scenario",
        "payload",
        "bare req/s",
        "gw req/s",
        "gw/bare",
        "bare p50",
        "bare p99",
        "gw p50",
        "gw p99",
        "p99 added",
        "cpu ms/req b/g",
        "cpu ratio",
        "non-2xx b/g",
        "audited",
    )
    rows: list[tuple[str, ...]] = [head]
    for c in comparisons:
        bad_bare, bad_gw = c.bad()
        ratios = c.round_ratios()
        spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
        audited = f"{sum(c.audit_events)}/{sum(c.gateway_requests)}" if c.gateway_requests else "-"
        rows.append(
            (
                c.scenario,
                c.payload,
                f"{c.bare_rps():.0f}",
                f"{c.gateway_rps():.0f}",
                f"{c.ratio():.2f}{spread}",
                _ms(Comparison._median(c.bare, "p50_ms")),
                _ms(Comparison._median(c.bare, "p99_ms")),
                _ms(Comparison._median(c.gateway, "p50_ms")),
                _ms(Comparison._median(c.gateway, "p99_ms")),
                f"{c.p99_added():+.2f}",
                f"{Comparison._median(c.bare, 'cpu_ms_per_request'):.2f}/"
                f"{Comparison._median(c.gateway, 'cpu_ms_per_request'):.2f}",
                f"{c.cpu_ratio():.2f}",
                f"{bad_bare}/{bad_gw}" + (" !!" if bad_bare or bad_gw else ""),
                audited,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    numeric = set(range(2, len(head)))
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdicts(comparisons: list[Comparison]) -> list[str]:
    lines = []
    for c in comparisons:
        if c.scenario == "workers":
            if c.workers == WORKERS_TARGET[0]:
                ok = c.ratio() >= WORKERS_TARGET[1]
                lines.append(
                    f"target {c.workers} workers / 1 >= {WORKERS_TARGET[1]:.2f} on {c.payload}: "
                    f"{c.ratio():.2f} -> {'MET' if ok else 'NOT MET'}"
                )
            continue
        if c.scenario == "latency":
            p50 = Comparison._median(c.gateway, "p50_ms") - Comparison._median(c.bare, "p50_ms")
            lines.append(
                f"latency added on {c.payload}, one request at a time: p50 {p50:+.2f} ms, "
                f"p99 {c.p99_added():+.2f} ms"
            )
            continue
        wanted = SCENARIO_TARGETS.get(c.scenario, TARGETS.get(c.payload))
        if c.scenario in FOREIGN_SCENARIOS and c.payload == "clean-json-2k":
            wanted = TARGET_RATIO
        if wanted is not None:
            ok = c.ratio() >= wanted
            lines.append(
                f"target gw/bare >= {wanted:.2f} on {c.payload} ({c.scenario}): "
                f"{c.ratio():.2f} -> {'MET' if ok else 'NOT MET'}"
            )
    for c in comparisons:
        bad_bare, bad_gw = c.bad()
        if bad_bare or bad_gw:
            lines.append(
                f"WARNING {c.scenario}/{c.payload}: non-2xx or socket errors "
                f"(bare {bad_bare}, gateway {bad_gw}): those numbers are not comparable"
            )
        if c.gateway_requests and c.scenario in ("foreign", "foreign-block", "latency", "workers"):
            seen, audited = sum(c.gateway_requests), sum(c.audit_events)
            if not c.phi and audited:
                lines.append(f"WARNING {c.scenario}/{c.payload}: clean traffic was audited")
            elif c.phi and audited < seen:
                lines.append(
                    f"WARNING {c.scenario}/{c.payload}: {audited} audit events for {seen} "
                    "requests: not every payload was recorded as a monitor hit"
                )
        if c.scenario.startswith("domestic") and any(c.audit_events):
            lines.append(f"WARNING {c.scenario}/{c.payload}: domestic traffic was audited")
        if c.scenario == "domestic-tls" and c.gateway and not all(c.relayed):
            lines.append(f"WARNING domestic-tls/{c.payload}: the gateway relayed no connection")
    return lines


def save(directory: Path, meta: dict[str, Any], comparisons: list[Comparison]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = str(meta["timestamp"]).replace(":", "").replace("-", "")
    path = directory / f"bench-{stamp}.json"
    data = {**meta, "results": [c.as_dict() for c in comparisons]}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
