"""configs/prometheus and configs/grafana: valid for promtool, alert rules behave as their unit
tests say, and every metric they name is one the gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import gateway.metrics  # noqa: F401  (declares the metrics)

CONFIGS = Path(__file__).parents[2] / "configs"
PROMETHEUS = CONFIGS / "prometheus"
DASHBOARD = CONFIGS / "grafana" / "dashboards" / "phi-gateway.json"
# Prometheus's own.
EXTERNAL = {"up"}
_NAME = re.compile(r"\b(phi_gateway_[a-z0-9_]+|up)\b")


def exported() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
    for collector in list(REGISTRY._names_to_collectors):  # declared but not yet observed
        names.add(collector)
    return names


def expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "phi-gateway-rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs


def test_every_metric_named_exists() -> None:
    known = exported() | EXTERNAL
    unknown = {name for expr in expressions() for name in _NAME.findall(expr)} - known
    assert not unknown, f"metrics that the gateway does not export: {sorted(unknown)}"


def test_dashboard_has_the_panels_operations_documents() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    for title in titles:
        assert f"### {title}" in operations, f"panel {title!r} is not explained in operations.md"
    rules = yaml.safe_load((PROMETHEUS / "phi-gateway-rules.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        assert f"### {rule['alert']}" in operations, f"alert {rule['alert']} is not explained"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (make test installs Debian's prometheus as root)")
    return subprocess.run(
        ["promtool", *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_checks_the_rules_and_the_scrape_config() -> None:
    rules = promtool("check", "rules", "phi-gateway-rules.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "phi-gateway-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
