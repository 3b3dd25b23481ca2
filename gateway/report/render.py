"""Render a block report: csv (sections for a spreadsheet), json, html, pdf."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

from gateway.audit.query import DECISION_ACTIONS
from gateway.report.build import DIMENSIONS, INCIDENT_COLUMNS, BlockReport

FORMATS = ("csv", "json", "html", "pdf")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}


def render(report: BlockReport, fmt: str) -> bytes:
    renderers: dict[str, Callable[[BlockReport], bytes]] = {
        "csv": render_csv,
        "json": render_json,
        "html": _html,
        "pdf": _pdf,
    }
    return renderers[fmt](report)


def _html(report: BlockReport) -> bytes:
    from gateway.report.html import render_html

    return render_html(report).encode()


def _pdf(report: BlockReport) -> bytes:
    from gateway.report.pdf import render_pdf

    return render_pdf(report)


def render_json(report: BlockReport) -> bytes:
    return json.dumps(report.as_dict(), indent=2).encode()


def render_csv(report: BlockReport) -> bytes:
    """Sections one after another, each with a title row and its own header row, separated by
    an empty row: verification, totals, each summary, the timeline, the incidents."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    verification = report.verification
    writer.writerow(["Block report", report.period.since, report.period.last.isoformat()])
    writer.writerow(["Generated", report.generated, report.source])
    writer.writerow(
        ["Chain verification", "intact" if verification.intact else "TAMPERED",
         f"{verification.events} events checked", "keyed" if verification.keyed else "NOT keyed"]
    )  # fmt: skip
    for chain in verification.chains:
        writer.writerow(["Chain", chain.instance_id, chain.describe()])
    header = ["value", *DECISION_ACTIONS, "total"]
    writer.writerow([])
    writer.writerow(["Totals"])
    writer.writerow(header[1:])
    writer.writerow([*report.totals.values(), report.total])
    for key, title in DIMENSIONS:
        writer.writerow([])
        writer.writerow([f"By {title.lower().replace('phi', 'PHI')}"])
        writer.writerow(header)
        for tally in report.summaries[key]:
            writer.writerow([tally.value, *tally.counts.values(), tally.total])
    writer.writerow([])
    writer.writerow(["Timeline"])
    writer.writerow(["day", *DECISION_ACTIONS, "total"])
    for tally in report.timeline:
        writer.writerow([tally.value, *tally.counts.values(), tally.total])
    writer.writerow([])
    writer.writerow(["Policy versions"])
    writer.writerow(["version", "first", "last", "events"])
    for version in report.policy_versions:
        writer.writerow([version["version"], version["first"], version["last"], version["events"]])
    writer.writerow([])
    writer.writerow(["Geo databases"])
    writer.writerow(["name", "build", "events"])
    for db in report.geo_databases:
        writer.writerow([db["name"], db["build"], db["events"]])
    writer.writerow([])
    writer.writerow(["Incidents"])
    writer.writerow(INCIDENT_COLUMNS)
    for row in report.incidents:
        writer.writerow([row[c] for c in INCIDENT_COLUMNS])
    return out.getvalue().encode()
