"""autoscaling.engine: the chart hands the replicas to a HorizontalPodAutoscaler or a KEDA ScaledObject.

The refusals (KEDA without a Prometheus, a quantity as KEDA's threshold, no target, an unknown engine)
are data cases in tests/badinput/cases/values; the API server's own check of the ScaledObject against
KEDA's CRD is in tests/operator/test_cluster_scaling_handoff.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support import chart as ck

PROM = "http://prometheus-operated.monitoring.svc:9090"
BASE: dict[str, Any] = {"modelCache": {"mode": "none"}}


def keda(**autoscaling: Any) -> dict[str, Any]:
    keda_values = {"serverAddress": PROM, **autoscaling.pop("keda", {})}
    return {**BASE, "autoscaling": {"enabled": True, "engine": "keda", "keda": keda_values, **autoscaling}}


def triggers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in ck.one(objects, "ScaledObject")["spec"]["triggers"]}


def test_keda_renders_a_scaled_object_and_no_hpa_and_leaves_replicas_to_it():
    objects = ck.render(keda())
    assert not ck.by_kind(objects, "HorizontalPodAutoscaler"), (
        "KEDA makes its own HPA: a second would fight it"
    )
    assert "replicas" not in ck.one(objects, "Deployment")["spec"]
    so = ck.one(objects, "ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["metadata"]["name"] == "tts-higgs-audio" and so["metadata"]["namespace"] == "higgs"
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tts-higgs-audio",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["pollingInterval"]) == (1, 4, 15)
    # The chart's default behavior (slow scale-down) reaches KEDA's HPA.
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 600}
    }


def test_default_trigger_is_the_waiting_queue_per_pod_from_prometheus():
    (waiting,) = triggers(ck.render(keda())).values()
    assert waiting["type"] == "prometheus" and waiting["name"] == "waiting-requests"
    assert waiting["metricType"] == "AverageValue"  # KEDA's HPA divides the sum by the replicas
    meta = waiting["metadata"]
    assert meta["serverAddress"] == PROM and meta["threshold"] == "2"
    assert all(isinstance(v, str) for v in meta.values()), "KEDA's trigger metadata is a map of strings"
    assert "authenticationRef" not in waiting


def test_default_query_sums_the_gauge_over_this_releases_pods_only():
    query = triggers(ck.render(keda()))["waiting-requests"]["metadata"]["query"]
    match = re.fullmatch(r'sum\(vllm:num_requests_waiting\{namespace="higgs",pod=~"([^"]+)"\}\)', query)
    assert match, query
    pods = re.compile(match.group(1))  # PromQL's =~ is anchored at both ends, like fullmatch
    assert pods.fullmatch("tts-higgs-audio-7d9c5b8f4-x2k4q")
    assert not pods.fullmatch("tts-higgs-audio-canary-7d9c5b8f4-x2k4q"), "another release's pod"
    assert not pods.fullmatch("tts-higgs-audio-test-audio"), "the helm test pod"


def test_running_trigger_queries_custom_auth_and_omni_metric_names():
    values = keda(
        metricName="vllm_omni:num_requests_waiting",
        runningMetricName="vllm_omni:num_requests_running",
        targetAverageValue="0.5",
        targetRunningAverageValue="6",
        keda={"waitingQuery": 'sum(queue{job="tts"})', "authenticationRef": {"name": "prom-auth"}},
    )
    found = triggers(ck.render(values))
    assert set(found) == {"waiting-requests", "running-requests"}
    assert found["waiting-requests"]["metadata"]["query"] == 'sum(queue{job="tts"})'
    assert found["waiting-requests"]["metadata"]["threshold"] == "0.5"
    running = found["running-requests"]["metadata"]
    assert running["query"].startswith("sum(vllm_omni:num_requests_running{") and running["threshold"] == "6"
    for trigger in found.values():
        assert trigger["authenticationRef"] == {"name": "prom-auth", "kind": "TriggerAuthentication"}


def test_only_the_running_target_gives_only_the_running_trigger():
    found = triggers(ck.render(keda(targetAverageValue="", targetRunningAverageValue="3")))
    assert list(found) == ["running-requests"]


def test_behavior_and_polling_are_passed_to_keda():
    behavior = {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}],
        },
        "scaleDown": {"stabilizationWindowSeconds": 900},
    }
    spec = ck.one(ck.render(keda(behavior=behavior, keda={"pollingInterval": 30})), "ScaledObject")["spec"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == behavior
    assert spec["pollingInterval"] == 30


def test_hpa_engine_renders_both_queue_metrics_and_no_scaled_object():
    values = {**BASE, "autoscaling": {"enabled": True, "engine": "hpa", "targetRunningAverageValue": "6"}}
    objects = ck.render(values)
    assert not ck.by_kind(objects, "ScaledObject")
    assert "replicas" not in ck.one(objects, "Deployment")["spec"]
    metrics = ck.one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [(m["pods"]["metric"]["name"], m["pods"]["target"]["averageValue"]) for m in metrics] == [
        ("vllm:num_requests_waiting", "2"),
        ("vllm:num_requests_running", "6"),
    ]


def test_hpa_quantity_targets_stay_quantities():
    values = {**BASE, "autoscaling": {"enabled": True, "targetAverageValue": "500m"}}
    (metric,) = ck.one(ck.render(values), "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["pods"]["target"]["averageValue"] == "500m"


@pytest.mark.parametrize("engine", ["hpa", "keda"])
def test_off_renders_no_autoscaler_and_fixed_replicas(engine):
    values = {**BASE, "replicaCount": 2, "autoscaling": {"enabled": False, "engine": engine}}
    objects = ck.render(values)
    assert not ck.by_kind(objects, "ScaledObject") and not ck.by_kind(objects, "HorizontalPodAutoscaler")
    assert ck.one(objects, "Deployment")["spec"]["replicas"] == 2


def test_engine_left_null_by_an_upgrade_is_hpa():
    values = {**BASE, "autoscaling": {"enabled": True, "engine": None}}
    objects = ck.render(values, extra=["--skip-schema-validation"])
    assert ck.by_kind(objects, "HorizontalPodAutoscaler") and not ck.by_kind(objects, "ScaledObject")


def test_unknown_engine_is_refused_by_the_template_too():
    """The schema's enum says it first; without the schema (--skip-schema-validation) the template does."""
    values = {**BASE, "autoscaling": {"enabled": True, "engine": "both"}}
    proc = ck.template(values, extra=["--skip-schema-validation"])
    assert proc.returncode != 0
    assert (
        'autoscaling.engine must be hpa (a HorizontalPodAutoscaler) or keda (a KEDA ScaledObject), got "both"'
        in (proc.stderr)
    )
