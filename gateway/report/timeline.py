"""The daily timeline chart as geometry: stacked bars per day, shared by HTML (SVG) and PDF."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.report.build import Tally

ACTION_LABELS = {
    "block": "Blocked",
    "redact": "Redacted",
    "monitor": "Monitor only (would block)",
    "allow": "Allowed by contract (PHI)",
}
# Each at least 3:1 against white (WCAG 1.4.11, checked by the console tests).
ACTION_COLOURS = {
    "block": (192, 57, 43),
    "redact": (175, 96, 26),
    "monitor": (41, 128, 185),
    "allow": (127, 140, 141),
}


@dataclass(frozen=True, slots=True)
class Bar:
    day: str
    action: str
    x: float
    y: float
    width: float
    height: float
    count: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: float
    height: float
    peak: int
    bars: list[Bar]
    labels: list[tuple[float, str]]  # x, day label (thinned so they do not overlap)


def bars(days: list[Tally], width: float, height: float) -> Chart:
    """Stacked bars, y growing downwards from the top (SVG and PDF both draw that way)."""
    peak = max((d.total for d in days), default=0) or 1
    slot = width / max(1, len(days))
    gap = min(2.0, slot * 0.2)
    out: list[Bar] = []
    for index, day in enumerate(days):
        bottom = height
        for action, count in day.counts.items():
            if not count:
                continue
            size = height * count / peak
            bottom -= size
            out.append(
                Bar(day.value, action, index * slot + gap / 2, bottom, slot - gap, size, count)
            )
    every = max(1, round(len(days) / 10))
    labels = [(i * slot + slot / 2, d.value[5:]) for i, d in enumerate(days) if i % every == 0]
    return Chart(width, height, peak, out, labels)
