"""Block reports from a real audit database: numbers add up, every format renders, the PDF
draws (pdftoppm), and a tampered trail says so."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.audit import AuditEvent, AuditStore
from gateway.audit.chain import derive_key
from gateway.audit.query import parse_period
from gateway.audit.sqlite_backend import SqliteBackend
from gateway.audit.store import ChainSettings
from gateway.config import parse_config
from gateway.errors import ReportFailed
from gateway.report import build_report, render
from gateway.report.job import build_in_child
from tests.support.patients import hl7_adt, make_patient
from tests.unit.test_audit import decision_for

SECRET = b"report test secret"
KEY = derive_key(SECRET, "checkpoint")
DAY = dt.date(2026, 3, 1)


def at(day: int, hour: int) -> str:
    return f"{DAY + dt.timedelta(days=day)}T{hour:02d}:00:00.000Z"


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("report") / "audit.db"
    store = AuditStore(db, ChainSettings(instance_id="gw-1", secret=SECRET, retention_days=36500))
    body = hl7_adt(make_patient(1)).encode()
    base = AuditEvent.from_decision(decision_for(body), "gw-1", "policy-a")
    plan = [  # day, action, country, rule
        *[(0, "block", "IN", "foreign-phi")] * 3,
        *[(2, "block", "DE", "foreign-phi")] * 2,
        (2, "redact", "IN", "foreign-phi"),
        (5, "monitor", "IN", "foreign-phi"),
        (9, "allow", "DE", "allow-list"),
        (40, "block", "IN", "foreign-phi"),  # outside the period
    ]
    for n, (day, action, country, rule) in enumerate(plan):
        store.append(
            replace(
                base,
                incident_id=f"INC-TEST-{n:03d}",
                time=at(day, 9),
                action=action,
                country=country,
                rule=rule,
                policy_version="policy-a" if day < 3 else "policy-b",
                geo_databases='[{"name":"dbip-country-lite","build":"2026-02-01"}]',
            )
        )
    store.close()
    return db


def report_for(db: Path, key: bytes | None = KEY) -> bytes:
    period = parse_period("2026-03-01", "2026-03-31")
    return render(build_report(SqliteBackend(db), period, key), "json")


def test_summary_counts_and_timeline(trail: Path) -> None:
    data = json.loads(report_for(trail))
    assert data["totals"] == {"block": 5, "redact": 1, "monitor": 1, "allow": 1}
    countries = {row["value"]: row for row in data["summaries"]["country"]}
    assert countries["IN"]["block"] == 3 and countries["IN"]["total"] == 5
    assert countries["DE"]["block"] == 2 and countries["DE"]["allow"] == 1
    assert data["summaries"]["client"][0]["value"] == "10.1.2.3"
    assert {r["value"] for r in data["summaries"]["category"]} >= {"name", "ssn", "mrn"}
    assert len(data["timeline"]) == 31
    assert data["timeline"][2] == {
        "day": "2026-03-03",
        "block": 2,
        "redact": 1,
        "monitor": 0,
        "allow": 0,
    }
    assert [p["version"] for p in data["policy_versions"]] == ["policy-a", "policy-b"]
    assert data["geo_databases"] == [
        {"name": "dbip-country-lite", "build": "2026-02-01", "events": 8}
    ]
    assert len(data["incidents"]) == 8
    chain = data["verification"]["chains"][0]
    assert data["verification"]["intact"] and chain["events"] == 9 and chain["events_in_range"] == 8


def test_csv_has_every_section(trail: Path) -> None:
    period = parse_period("2026-03-01", "2026-03-31")
    text = render(build_report(SqliteBackend(trail), period, KEY), "csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    titles = [r[0] for r in rows if len(r) == 1]
    assert titles == [
        "Totals", "By destination country", "By destination", "By client", "By rule",
        "By message type", "By PHI category", "Timeline", "Policy versions", "Geo databases",
        "Incidents",
    ]  # fmt: skip
    assert rows[2][:2] == ["Chain verification", "intact"]
    assert sum(1 for r in rows if r and r[0].startswith("INC-TEST-")) == 8


def test_html_is_self_contained(trail: Path) -> None:
    period = parse_period("2026-03-01", "2026-03-31")
    html = render(build_report(SqliteBackend(trail), period, KEY), "html").decode()
    assert "Audit trail check: intact" in html
    assert html.count("<rect") == 5  # day 1 block; day 3 block + redact; day 6; day 10
    assert "INC-TEST-007" in html and "<script" not in html


def test_pdf_renders_to_pages(trail: Path, tmp_path: Path) -> None:
    period = parse_period("2026-03-01", "2026-03-31")
    pdf = render(build_report(SqliteBackend(trail), period, KEY), "pdf")
    assert pdf.startswith(b"%PDF-")
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm not installed (make test installs poppler-utils as root)")
    (tmp_path / "report.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", str(tmp_path / "report.pdf"), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 3000 for p in pages)
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Audit trail check: intact" in text and "INC-TEST-000" in text


def test_a_tampered_trail_is_reported(trail: Path, tmp_path: Path) -> None:
    copy = tmp_path / "audit.db"
    shutil.copy(trail, copy)
    conn = sqlite3.connect(copy)
    conn.execute("DROP TRIGGER audit_events_no_update")
    conn.execute("UPDATE audit_events SET action = 'allow' WHERE incident_id = 'INC-TEST-001'")
    conn.commit()
    conn.close()
    data = json.loads(report_for(copy))
    assert not data["verification"]["intact"]
    assert "altered: event 2 (INC-TEST-001" in data["verification"]["chains"][0]["problem"]


def test_reports_for_people_list_the_most_severe_and_say_how_many_more(trail: Path) -> None:
    period = parse_period("2026-03-01", "2026-03-31")
    report = build_report(SqliteBackend(trail), period, KEY, max_listed=3)
    listed = report.listed()
    # 5 blocks in the period: the newest three (day 2 before day 0), none of the others.
    assert [r["action"] for r in listed] == ["block"] * 3
    assert [r["time"][:10] for r in listed] == ["2026-03-03", "2026-03-03", "2026-03-01"]
    assert report.unlisted == 5
    html = render(report, "html").decode()
    assert html.count("<tr><td>INC-TEST-") == 3
    assert "The 3 most severe incidents, newest first, of 8: 5 more are not listed" in html
    assert "Audit trail check: intact" in html  # the whole chain is still verified
    data = json.loads(render(report, "json"))
    assert len(data["incidents"]) == 8 and data["totals"]["block"] == 5  # JSON carries all
    rows = list(csv.reader(io.StringIO(render(report, "csv").decode())))
    assert sum(1 for r in rows if r and r[0].startswith("INC-TEST-")) == 8  # CSV too
    pdf = render(report, "pdf")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (make test installs poppler-utils as root)")
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    assert "5 more are not listed here" in " ".join(text.split())
    assert sum(text.count(f"INC-TEST-00{n}") for n in range(8)) == 3


def test_everything_fits_everything_is_listed(trail: Path) -> None:
    period = parse_period("2026-03-01", "2026-03-31")
    report = build_report(SqliteBackend(trail), period, KEY, max_listed=8)
    assert report.unlisted == 0 and len(report.listed()) == 8
    assert "All 8 incidents of the period" in render(report, "html").decode()


def test_a_report_built_in_a_child_process(
    trail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHI_GATEWAY_SECRET", SECRET.decode())
    config = parse_config(
        {"audit": {"database": str(trail)}, "report": {"max_listed_incidents": 2}}
    )
    period = parse_period("2026-03-01", "2026-03-31")
    done = build_in_child(config, period, "html", timeout=60)
    html = b"".join(done.chunks()).decode()
    assert done.intact and len(html) == done.size
    assert html.count("<tr><td>INC-TEST-") == 2 and "6 more are not listed" in html
    (tmp_path / "broken.db").write_bytes(b"not a database" * 100)
    broken = parse_config({"audit": {"database": str(tmp_path / "broken.db")}})
    with pytest.raises(ReportFailed):
        build_in_child(broken, period, "json", timeout=60)
