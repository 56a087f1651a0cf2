"""The Grafana dashboard: well-formed, every panel described and queried with valid PromQL, covering what
issue #16 asks for, and shipped by the chart in an opt-in ConfigMap for the Grafana sidecar."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.support import chart, k8s_schemas
from tests.support.dashboard import DASHBOARD, VARIABLES, load, panel_queries, substitute
from tests.support.prometheus import tool

ON = {"grafanaDashboard": {"enabled": True}}


def test_dashboard_is_well_formed():
    dash = load()
    assert dash["uid"] == "higgs-audio-serving" and dash["title"]
    assert dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", *VARIABLES]
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_every_panel_has_a_description_queries_and_the_datasource_variable():
    for p in load()["panels"]:
        assert len(p.get("description", "")) > 40, f"{p['title']}: no real description"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"{p['title']}: no query"
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == p["datasource"], (p["title"], t)
            unknown = set(re.findall(r"\$(\w+)", t["expr"])) - {*VARIABLES, "__rate_interval"}
            assert not unknown, f"{p['title']}: unknown variables {unknown}"


def test_panels_cover_what_audio_serving_needs():
    exprs = "\n".join(q for _, _, q in panel_queries())
    for metric in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:gpu_cache_usage_perc",
        'finished_reason="abort"',
        "higgs_operator_replicas",
        "higgs_operator_autoscaling_max_replicas",
        "higgs_operator_scaling_decisions_total",
    ):
        assert metric in exprs, f"no panel queries {metric}"
    audio = next(p for p in load()["panels"] if p["title"] == "Audio seconds per second")
    assert "/ 25" in audio["targets"][0]["expr"] and "frames + 10 steps" in audio["description"]


def test_every_query_is_valid_promql(tmp_path: Path):
    """promtool parses each query (variables substituted) as a recording rule."""
    rules = [
        {"record": f"panel_{i}", "expr": substitute(q, namespace="ns", job="higgs-audio")}
        for i, (_, _, q) in enumerate(panel_queries())
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_configmap_off_by_default_and_carries_the_json_for_the_sidecar():
    assert not [o for o in chart.render() if o["metadata"]["name"].endswith("-dashboard")]
    objects = chart.render(ON, release="tts", namespace="higgs")
    cm = next(
        o for o in chart.by_kind(objects, "ConfigMap") if o["metadata"]["name"] == "tts-higgs-audio-dashboard"
    )
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["higgs-audio.json"]) == json.loads(DASHBOARD.read_text())
    assert k8s_schemas.schema_error(cm, chart.K8S_VERSION) is None
    # A sidecar that selects on another label: set it, and null the default one (Helm's way to drop a key).
    labels = {"dashboards": "audio", "grafana_dashboard": None}
    custom = {
        "grafanaDashboard": {"enabled": True, "labels": labels, "annotations": {"grafana_folder": "TTS"}}
    }
    cm = next(o for o in chart.render(custom) if o["metadata"]["name"].endswith("-dashboard"))
    assert (
        cm["metadata"]["labels"]["dashboards"] == "audio"
        and "grafana_dashboard" not in cm["metadata"]["labels"]
    )
    assert cm["metadata"]["annotations"]["grafana_folder"] == "TTS"
