"""deploy/monitoring: the alert rules evaluated on sample data by promtool, and every metric the
rules and the Grafana dashboard name is one the portal really exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client import REGISTRY

import provisioning.metrics  # noqa: F401 (registers the worker-side metrics being checked)
from accounts.models import WorkerHeartbeat
from identities.models import ChainCheckTrigger
from identities.services import audit_chain_check_run, audit_chain_check_start
from tests.support.metrics import METRICS_TOKEN, scrape
from tests.support.services import REPO_ROOT, service_missing

MONITORING = REPO_ROOT / "deploy" / "monitoring"
RULES = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts.test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Series Prometheus itself makes, which a rule may use beside the portal's own.
PROMETHEUS_SERIES = {"up"}
PROMQL_WORDS = {
    "by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
SUFFIXES = ("", "_total", "_created", "_bucket", "_sum", "_count")


def promtool() -> str:
    """Debian's promtool: on PATH, named by PROMTOOL, or unpacked by .ci/run under var/tools."""
    for candidate in (
        os.environ.get("PROMTOOL", ""),
        shutil.which("promtool") or "",
        str(REPO_ROOT / "var" / "tools" / "prometheus" / "usr" / "bin" / "promtool"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    service_missing("promtool is not installed (apt-get install prometheus, or .ci/run)")
    raise AssertionError("unreachable")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = text.replace("$__rate_interval", "")
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(portal_a_bucket{x="y"}[5m]))) > 3 * 3600'
        " and on (job) up == 0 or max(portal_b) unless portal_c offset 5m"
    )
    assert metric_names(expr) == {"portal_a_bucket", "up", "portal_b", "portal_c"}


@pytest.fixture
def exported(client: Client) -> set[str]:
    """Every series name the portal exports: the worker-side families (with their suffixes, also
    those without a sample yet) and everything a real scrape of /metrics serves, with a
    heartbeat and a finished audit chain check in the database so that every state gauge shows."""
    WorkerHeartbeat.objects.create(hostname="worker-1", seen_at=timezone.now())
    check, _ = audit_chain_check_start(actor=None, trigger=ChainCheckTrigger.SCHEDULE)
    audit_chain_check_run(check_id=check.pk)
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        scraped = {name for name, _labels in scrape(client)}
    families = {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("portal_")
        for suffix in SUFFIXES
    }
    return scraped | families


@pytest.mark.django_db
def test_every_metric_a_rule_or_the_dashboard_names_is_exported(exported: set[str]) -> None:
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    used |= {name for expr in dashboard_exprs() for name in metric_names(expr)}
    assert used - PROMETHEUS_SERIES <= exported, sorted(used - PROMETHEUS_SERIES - exported)
    # The check has teeth: the state gauges and the Azure counters are among them.
    assert {"portal_azure_requests_total", "portal_worker_heartbeat_age_seconds"} <= used


def test_every_rule_is_an_alert_with_a_severity_and_words_for_the_on_call() -> None:
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Portal[A-Z]\w+", rule["alert"])
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))


def test_every_alert_has_a_promtool_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert {rule["alert"] for rule in rules()} == tested


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_evaluates_the_rules_on_sample_series() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_grafana_json_on_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
