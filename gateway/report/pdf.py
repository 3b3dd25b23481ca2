"""The block report as a PDF (fpdf2: pure Python, core fonts, no system libraries)."""

from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from gateway.audit.query import DECISION_ACTIONS
from gateway.report.build import DIMENSIONS, BlockReport, categories_text
from gateway.report.timeline import ACTION_COLOURS, ACTION_LABELS, bars

_GREEN, _RED, _AMBER = (232, 246, 236), (253, 236, 234), (255, 246, 221)


def _text(value: object) -> str:
    """Core PDF fonts speak Latin-1: anything else becomes '?'."""
    return str(value).encode("latin-1", "replace").decode("latin-1")


class _Document(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.title_text = title
        self.set_auto_page_break(auto=True, margin=15)
        self.set_margins(15, 15, 15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(110)
        self.cell(0, 5, _text(f"{self.title_text}  -  page {self.page_no()}/{{nb}}"), align="C")
        self.set_text_color(0)

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font("Helvetica", "B", 12)
        self.cell(0, 7, _text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("Helvetica", size=9)

    def paragraph(self, text: str, size: float = 9) -> None:
        self.set_font("Helvetica", size=size)
        self.multi_cell(0, 4.5, _text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def grid(self, header: list[str], rows: list[list[object]], widths: list[float]) -> None:
        self.set_font("Helvetica", "B", 8)
        self.set_fill_color(240)
        for title, width in zip(header, widths, strict=True):
            self.cell(width, 5, _text(title), border="B", fill=True)
        self.ln()
        self.set_font("Helvetica", size=8)
        for row in rows:
            if self.will_page_break(5):
                self.add_page()
            for value, width in zip(row, widths, strict=True):
                self.cell(width, 4.6, _fit(self, _text(value), width))
            self.ln()


def _fit(pdf: FPDF, text: str, width: float) -> str:
    if pdf.get_string_width(text) <= width - 1:
        return text
    while text and pdf.get_string_width(text + "...") > width - 1:
        text = text[:-1]
    return text + "..."


def render_pdf(report: BlockReport) -> bytes:
    period = f"{report.period.since} to {report.period.last.isoformat()}"
    pdf = _Document(f"PHI egress gateway block report {period}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, _text(f"Block report: {period}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(90)
    pdf.paragraph(
        f"PHI egress gateway. Generated {report.generated} from {report.source}. Times are UTC. "
        "This report lists what the gateway stopped or changed on its way out of the network. "
        "It holds no patient data: only the kinds of identifiers found and where, never values.",
        8,
    )
    pdf.set_text_color(0)
    _verification(pdf, report)
    _totals(pdf, report)
    _timeline(pdf, report)
    for key, title in DIMENSIONS:
        tallies = report.summaries[key][:15]
        pdf.heading(f"By {title.lower().replace('phi', 'PHI')}")
        rows: list[list[object]] = [[t.value, *t.counts.values(), t.total] for t in tallies] or [
            ["nothing recorded", "", "", "", "", ""]
        ]
        header = [title, *(ACTION_LABELS[a].split(" ")[0] for a in DECISION_ACTIONS), "Total"]
        pdf.grid(header, rows, [80, 20, 20, 20, 20, 20])
    pdf.heading("Policy versions in force")
    pdf.grid(
        ["Version", "First event", "Last event", "Events"],
        [[p["version"], p["first"], p["last"], p["events"]] for p in report.policy_versions],
        [40, 55, 55, 30],
    )
    pdf.heading("Geolocation databases used")
    pdf.grid(
        ["Database", "Built", "Events"],
        [[d["name"], d["build"], d["events"]] for d in report.geo_databases],
        [100, 50, 30],
    )
    pdf.add_page(orientation="landscape")
    pdf.heading(f"Incidents ({len(report.incidents)})")
    if report.unlisted:
        pdf.set_fill_color(*_AMBER)
        pdf.set_font("Helvetica", "B", 9)
        pdf.multi_cell(
            0, 5, _text(report.listing_note()), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.ln(1)
    else:
        pdf.paragraph(report.listing_note(), 8)
    pdf.grid(
        ["Incident", "Time (UTC)", "Action", "Client", "Destination", "Ctry", "Message",
         "Identifiers found", "Rule", "State"],
        [
            [r["incident_id"], r["time"], r["action"], r["client"], f"{r['host']}:{r['port']}",
             r["country"], f"{r['format']} {r['message_type']}", categories_text(r["categories"]),
             r["rule"], r["disposition"]]
            for r in report.listed()
        ],
        [42, 36, 14, 26, 40, 9, 28, 34, 20, 18],
    )  # fmt: skip
    return bytes(pdf.output())


def _verification(pdf: _Document, report: BlockReport) -> None:
    v = report.verification
    good = v.intact and v.keyed
    pdf.ln(2)
    pdf.set_fill_color(*(_GREEN if good else _RED))
    pdf.set_font("Helvetica", "B", 10)
    verdict = "intact" if v.intact else "TAMPERED"
    if not v.keyed:
        verdict += " (signatures not checked: site secret not available)"
    pdf.multi_cell(
        0, 6, _text(f"Audit trail check: {verdict}"), fill=True,
        new_x=XPos.LMARGIN, new_y=YPos.NEXT,
    )  # fmt: skip
    lines = [
        f"{v.events} recorded events were checked in {len(v.chains)} chain(s); each is linked to "
        "the one before it, so a changed, added or removed record would show here."
    ]
    lines += [c.describe() for c in v.chains]
    pdf.set_font("Helvetica", size=8)
    pdf.multi_cell(0, 4.2, _text("\n".join(lines)), fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _totals(pdf: _Document, report: BlockReport) -> None:
    pdf.heading("Summary")
    width = (pdf.w - pdf.l_margin - pdf.r_margin) / len(DECISION_ACTIONS)
    pdf.set_font("Helvetica", "B", 16)
    for action in DECISION_ACTIONS:
        pdf.cell(width, 8, str(report.totals[action]))
    pdf.ln()
    pdf.set_font("Helvetica", size=8)
    for action in DECISION_ACTIONS:
        pdf.cell(width, 4, _text(ACTION_LABELS[action]))
    pdf.ln()


def _timeline(pdf: _Document, report: BlockReport) -> None:
    pdf.heading("Day by day")
    width = pdf.w - pdf.l_margin - pdf.r_margin - 12
    height = 45.0
    if pdf.will_page_break(height + 15):
        pdf.add_page()
    chart = bars(report.timeline, width=width, height=height)
    left, top = pdf.l_margin, pdf.get_y() + 2
    for bar in chart.bars:
        pdf.set_fill_color(*ACTION_COLOURS[bar.action])
        pdf.rect(left + bar.x, top + bar.y, max(bar.width, 0.2), bar.height, style="F")
    pdf.set_draw_color(150)
    pdf.line(left, top + height, left + width, top + height)
    pdf.set_font("Helvetica", size=7)
    pdf.text(left + width + 1, top + 2, str(chart.peak))
    for x, label in chart.labels:
        pdf.text(left + x - 3, top + height + 4, label)
    pdf.set_y(top + height + 6)
    for action in DECISION_ACTIONS:
        pdf.set_fill_color(*ACTION_COLOURS[action])
        pdf.rect(pdf.get_x(), pdf.get_y() + 1, 3, 3, style="F")
        pdf.set_x(pdf.get_x() + 4)
        pdf.cell(pdf.get_string_width(ACTION_LABELS[action]) + 6, 5, _text(ACTION_LABELS[action]))
    pdf.ln(6)
