"""The chart's PrometheusRule: rendered only when asked, every alert documented, and its rules checked and
unit-tested by the real promtool (tests/observability/rules_test.yaml: a firing and a silent case each)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import chart
from tests.support.prometheus import rule_groups, tool

HERE = Path(__file__).parent
RULES_TEST = HERE / "rules_test.yaml"
README = chart.CHART / "README.md"
ALERTS = {
    "serverDown": "HiggsAudioServerDown",
    "queueBuilding": "HiggsAudioQueueBuilding",
    "kvCacheNearFull": "HiggsAudioKVCacheNearFull",
    "firstAudioSlow": "HiggsAudioFirstAudioSlow",
    "autoscalerAtMax": "HiggsAudioAutoscalerAtMax",
    "crashLooping": "HiggsAudioCrashLooping",
    "modelDownloadFailing": "HiggsAudioModelDownloadFailing",
}
ON = {"prometheusRule": {"enabled": True}}


def rules_of(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rule_groups(chart.render(values)) for r in g["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool("promtool")), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's default rules (release tts, namespace higgs), as the rules file Prometheus loads."""
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(chart.render(ON))}, sort_keys=False))
    return path


def test_off_by_default_and_on_when_asked():
    assert not chart.by_kind(chart.render(), "PrometheusRule")
    rule = chart.one(chart.render(ON, release="tts", namespace="higgs"), "PrometheusRule")
    assert (rule["apiVersion"], rule["metadata"]["name"]) == ("monitoring.coreos.com/v1", "tts-higgs-audio")
    assert rule["metadata"]["namespace"] == "higgs"
    labelled = chart.one(
        chart.render({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}), "PrometheusRule"
    )
    assert labelled["metadata"]["labels"]["release"] == "kps"


def test_every_alert_has_severity_summary_description_and_a_runbook_section():
    rules = rules_of(ON)
    assert [r["alert"] for r in rules] == list(ALERTS.values())
    headings = {
        line.removeprefix("### ").strip()
        for line in README.read_text().splitlines()
        if line.startswith("### ")
    }
    for r in rules:
        assert r["labels"]["severity"] in {"critical", "warning"}, r
        assert set(r["annotations"]) == {"summary", "description", "runbook_url"}, r
        assert r["annotations"]["runbook_url"] == f"charts/higgs-audio/README.md#{r['alert'].lower()}"
        assert r["alert"] in headings, f"{r['alert']}: no '### {r['alert']}' section in {README}"


def test_values_set_thresholds_durations_labels_and_turn_alerts_off():
    values = {
        "prometheusRule": {
            "enabled": True,
            "runbookBaseUrl": "https://git.example/higgs/README.md",
            "alertLabels": {"team": "tts"},
            "queueBuilding": {"waitingPerReplica": 12, "for": "3m"},
            "kvCacheNearFull": {"enabled": False},
            "firstAudioSlow": {"sloSeconds": 0.5, "quantile": 0.99, "window": "2m", "severity": "critical"},
        }
    }
    rules = {r["alert"]: r for r in rules_of(values)}
    assert "HiggsAudioKVCacheNearFull" not in rules and len(rules) == len(ALERTS) - 1
    queue = rules["HiggsAudioQueueBuilding"]
    assert queue["expr"].endswith("> 12") and queue["for"] == "3m"
    slow = rules["HiggsAudioFirstAudioSlow"]
    assert (
        "histogram_quantile(0.99," in slow["expr"]
        and "[2m]" in slow["expr"]
        and slow["expr"].endswith("> 0.5")
    )
    assert slow["labels"] == {"severity": "critical", "team": "tts"}
    assert "p99" in slow["annotations"]["description"]
    assert (
        queue["annotations"]["runbook_url"] == "https://git.example/higgs/README.md#higgsaudioqueuebuilding"
    )


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"serverDown": {"for": "2 minutes"}}, "for"),
        ({"kvCacheNearFull": {"threshold": 1.5}}, "threshold"),
        ({"firstAudioSlow": {"sloSeconds": 0}}, "sloSeconds"),
        ({"crashLooping": {"severity": "page"}}, "severity"),
        ({"queueBuilding": {"waitingPerReplicas": 3}}, "waitingPerReplicas"),
    ],
)
def test_bad_values_are_refused_naming_them(values: dict[str, Any], named: str):
    proc = chart.template({"prometheusRule": {"enabled": True, **values}})
    assert proc.returncode != 0, f"accepted: {values}"
    assert "prometheusRule" in proc.stderr and named in proc.stderr, proc.stderr


def test_promtool_checks_the_rendered_rules(rules_file: Path):
    proc = promtool("check", "rules", str(rules_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_promtool_unit_tests_pass_with_a_firing_and_a_silent_case_per_alert(rules_file: Path, tmp_path: Path):
    cases = yaml.safe_load(RULES_TEST.read_text())
    fires: set[str] = set()
    silent: set[str] = set()
    for case in cases["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == silent == set(ALERTS.values()), (fires, silent)
    cases["rule_files"] = [str(rules_file)]
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(cases, sort_keys=False))
    proc = promtool("test", "rules", str(test_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_serving_pod_matcher_is_this_release_s_deployment_pods():
    """The pod regex matches <fullname>-<hash>-<suffix> in Kubernetes' alphabet, not another release or
    the helm test pod."""
    expr = next(r["expr"] for r in rules_of(ON) if r["alert"] == "HiggsAudioServerDown")
    pattern = re.search(r'pod=~"([^"]+)"', expr)
    assert pattern, expr
    regex = re.compile(pattern.group(1))
    assert regex.fullmatch("tts-higgs-audio-7d9f8c6b5-x2k4p")
    for other in (
        "tts-higgs-audio-test-audio",
        "tts-higgs-audio-big-7d9f8c6b5-x2k4p",
        "big-higgs-audio-7d9f8c6b5-x2k4p",
    ):
        assert not regex.fullmatch(other), other
