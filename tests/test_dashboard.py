"""The Grafana dashboard in deploy/: JSON a person imports, and every series it queries is
one the server exports, with the labels it groups by."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartServer
from tests.support.server import ROOT
from tests.support.sse import events, request, start_stream

DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    # Grafana's import asks for the data source named in __inputs, and every panel uses it.
    assert [item["pluginId"] for item in dashboard["__inputs"]] == ["prometheus"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_every_metric_the_dashboard_queries_is_exported(start_server: StartServer) -> None:
    # A budget of one token: the first turn (which calls the demo's time tool) runs, the
    # next is refused; then every series the dashboard reads has a sample.
    server = start_server(
        {
            "SLUICE_BUDGETS__TOKENS_PER_USER": "1",
            # Priced, so that the cost has a series (an unpriced model adds none).
            "SLUICE_PRICING__SLUICE-DEMO__INPUT_PER_MILLION": "0.1",
            "SLUICE_PRICING__SLUICE-DEMO__OUTPUT_PER_MILLION": "0.4",
        }
    )
    frames = events(start_stream(server.url, "What time is it?").read_all())
    assert any(f["type"] == "tool_result" for f in frames) and frames[-1]["type"] == "complete"
    assert events(start_stream(server.url, "And now?").read_all())[-1]["code"] == (
        "budget_exhausted"
    )
    text = request(server.url, "GET", "/metrics").body().decode()
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for expr in queries(dashboard):
        names = set(re.findall(r"\bsluice_[a-z_]+", expr))
        assert names, expr
        for name in names:
            assert name in labels, f"{name} (in {expr!r}) is not in /metrics"
        for group in re.findall(r"by \(([^)]*)\)", expr):
            wanted = {label.strip() for label in group.split(",")}
            assert any(wanted <= labels[name] for name in names), (wanted, expr)
        # Label matchers name labels the series have (instance is Prometheus's own).
        for matcher in re.findall(r"(\w+)=~?\"", expr):
            assert matcher == "instance" or any(matcher in labels[n] for n in names), expr
