"""The block report as one self-contained HTML page (inline CSS and SVG chart, no scripts)."""

from __future__ import annotations

import jinja2

from gateway.audit.query import DECISION_ACTIONS
from gateway.report.build import DIMENSIONS, BlockReport, categories_text
from gateway.report.timeline import ACTION_COLOURS, ACTION_LABELS, bars

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(report: BlockReport) -> str:
    return _ENV.get_template("report.html.j2").render(
        report=report,
        actions=DECISION_ACTIONS,
        labels=ACTION_LABELS,
        colours=ACTION_COLOURS,
        dimensions=DIMENSIONS,
        chart=bars(report.timeline, width=900, height=220),
        categories=categories_text,
    )
