"""The chart's Grafana dashboard as the tests read it: its panels' queries, with Grafana's template
variables replaced by the values a test gives (what Grafana sends to Prometheus)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.chart import CHART

DASHBOARD = CHART / "dashboards" / "higgs-audio.json"
VARIABLES = ("namespace", "job", "pod", "higgsdeployment")


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panel_queries() -> list[tuple[str, str, str]]:
    """(panel title, target legend, PromQL) of every query of every panel."""
    return [
        (p["title"], t.get("legendFormat", t["refId"]), t["expr"])
        for p in load()["panels"]
        for t in p["targets"]
    ]


def variable_queries() -> dict[str, str]:
    """name -> the `label_values(...)` query of each query variable."""
    return {v["name"]: v["definition"] for v in load()["templating"]["list"] if v["type"] == "query"}


def substitute(
    expr: str,
    namespace: str,
    job: str = ".+",
    pod: str = ".+",
    higgsdeployment: str = ".*",
    rate_interval: str = "10s",
) -> str:
    """`expr` with the variables set (the multi-value ones as regexes, as Grafana's `All` sends them)."""
    values = {
        "$__rate_interval": rate_interval,
        "$namespace": namespace,
        "$job": job,
        "$pod": pod,
        "$higgsdeployment": higgsdeployment,
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    return expr
