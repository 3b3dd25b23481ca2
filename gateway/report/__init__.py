"""Block reports for auditors: one report built from the audit trail, rendered as CSV, JSON,
HTML or PDF."""

from gateway.report.build import BlockReport, build_report
from gateway.report.render import FORMATS, render

__all__ = ["FORMATS", "BlockReport", "build_report", "render"]
