"""spec.autoscaling.engine hpa / keda (pure): the chart values the operator renders, the decision not to
scale, the ScalingActive condition, and a prune that leaves KEDA's own HPA alone."""

from pathlib import Path

import pytest

from higgs_operator.constants import FIELD_MANAGER, OWNER_LABEL
from higgs_operator.helm import helm_template
from higgs_operator.permissions import required_rules
from higgs_operator.render import owned_objects, parse_manifests, prune_set, replicas_handover
from higgs_operator.secrets import TokenRef
from higgs_operator.status import handed_off
from higgs_operator.values import (
    autoscaling_values,
    chart_values,
    desired_replicas,
    operator_scales,
    scaling_engine,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "higgs-audio"
OWNER = {"metadata": {"name": "tts", "namespace": "team-a", "uid": "1234-uid"}}
# As the API server stores it: the CRD's defaults filled in.
AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "targetWaitingRequestsPerReplica": 1.5,
    "targetStreamsPerReplica": 4,
    "scaleUpStabilizationSeconds": 30,
    "scaleDownStabilizationSeconds": 600,
    "maxScaleUpStep": 2,
    "maxScaleDownStep": 1,
    "pollSeconds": 20,
}
KEDA = {"serverAddress": "http://prometheus.monitoring.svc:9090"}


def spec_for(engine: str | None, **extra: object) -> dict:
    autoscaling = {**AUTOSCALING, **extra} | ({"engine": engine} if engine else {})
    return {"autoscaling": autoscaling, "modelCache": {"mode": "none"}}


@pytest.mark.parametrize(
    ("spec", "engine", "scales"),
    [
        ({"replicas": 2}, None, False),
        (spec_for(None), "operator", True),  # stored before the engine field existed
        (spec_for("operator"), "operator", True),
        (spec_for("hpa"), "hpa", False),
        (spec_for("keda", keda=KEDA), "keda", False),
    ],
)
def test_only_the_operator_engine_makes_the_operator_scale(spec, engine, scales):
    assert scaling_engine(spec) == engine
    assert operator_scales(spec) is scales


@pytest.mark.parametrize("engine", ["hpa", "keda"])
def test_handed_off_desired_replicas_are_what_the_autoscaler_set(engine):
    spec = spec_for(engine, keda=KEDA) if engine == "keda" else spec_for(engine)
    assert desired_replicas(spec, None) == 1  # min until the autoscaler has acted
    assert desired_replicas(spec, 2) == 2
    assert desired_replicas(spec, 5) == 5  # not clamped: the status says what the Deployment asks for
    assert desired_replicas(spec_for("operator"), 5) == 3  # the operator's own count stays in [min, max]


def test_operator_engine_and_fixed_replicas_keep_the_chart_autoscaler_off():
    assert autoscaling_values({"replicas": 1}) == {"enabled": False}
    assert autoscaling_values(spec_for("operator")) == {"enabled": False}
    assert autoscaling_values(spec_for(None)) == {"enabled": False}


def test_hpa_gets_the_operators_targets_bounds_windows_and_steps():
    values = autoscaling_values(spec_for("hpa"))
    assert values == {
        "enabled": True,
        "engine": "hpa",
        "minReplicas": 1,
        "maxReplicas": 3,
        "metricName": "vllm:num_requests_waiting",
        "targetAverageValue": "1.5",
        "runningMetricName": "vllm:num_requests_running",
        "targetRunningAverageValue": "4",
        "behavior": {
            # maxScale*Step pods per pollSeconds: the operator's own step.
            "scaleUp": {
                "stabilizationWindowSeconds": 30,
                "policies": [{"type": "Pods", "value": 2, "periodSeconds": 20}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 600,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 20}],
            },
        },
    }
    assert "keda" not in values


def test_hpa_metric_names_follow_the_server_generation_or_the_spec():
    omni = {**spec_for("hpa"), "serverGeneration": "omni"}
    values = autoscaling_values(omni)
    assert (values["metricName"], values["runningMetricName"]) == (
        "vllm_omni:num_requests_waiting",
        "vllm_omni:num_requests_running",
    )
    named = spec_for("hpa", hpa={"waitingMetricName": "queue", "streamsMetricName": "streams"})
    values = autoscaling_values(named)
    assert (values["metricName"], values["runningMetricName"]) == ("queue", "streams")


def test_one_target_leaves_the_other_metric_out():
    spec = spec_for("hpa")
    del spec["autoscaling"]["targetStreamsPerReplica"]
    values = autoscaling_values(spec)
    assert (values["targetAverageValue"], values["targetRunningAverageValue"]) == ("1.5", "")


def test_keda_gets_its_prometheus_queries_polling_and_authentication():
    keda = {**KEDA, "streamsQuery": "sum(x)", "authenticationRef": {"name": "prom"}}
    values = autoscaling_values(spec_for("keda", keda=keda))
    assert values["engine"] == "keda" and values["targetAverageValue"] == "1.5"
    assert values["keda"] == {
        "serverAddress": "http://prometheus.monitoring.svc:9090",
        "waitingQuery": "",
        "runningQuery": "sum(x)",
        "pollingInterval": 20,
        "authenticationRef": {"name": "prom", "kind": "TriggerAuthentication"},
    }


@pytest.mark.parametrize(
    ("number", "text"), [(1, "1"), (1.0, "1"), (0.25, "0.25"), (1e-05, "0.00001"), (100, "100")]
)
def test_targets_are_plain_decimals_for_an_hpa_quantity_and_a_keda_float(number, text):
    spec = spec_for("hpa", targetWaitingRequestsPerReplica=number)
    assert autoscaling_values(spec)["targetAverageValue"] == text


def _render(engine: str) -> list[dict]:
    spec = spec_for(engine, keda=KEDA) if engine == "keda" else spec_for(engine)
    values = chart_values(
        "tts", spec, TokenRef("hf", "hf_access_token"), None, 1, operator_namespace="higgs-system"
    )
    return owned_objects(parse_manifests(helm_template(str(CHART), "tts", "team-a", values, "1.35.0")), OWNER)


@pytest.mark.parametrize(("engine", "kind"), [("hpa", "HorizontalPodAutoscaler"), ("keda", "ScaledObject")])
def test_the_operator_renders_the_autoscaler_and_a_deployment_without_replicas(engine, kind):
    objects = _render(engine)
    kinds = [o["kind"] for o in objects]
    assert kind in kinds
    other = ({"HorizontalPodAutoscaler", "ScaledObject"} - {kind}).pop()
    assert other not in kinds, "one autoscaler at a time"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"], "server-side apply would own .spec.replicas"
    scaler = next(o for o in objects if o["kind"] == kind)
    assert scaler["metadata"]["labels"][OWNER_LABEL] == "1234-uid"
    assert (scaler["spec"].get("minReplicaCount") or scaler["spec"].get("minReplicas")) == 1
    # The spec's windows and steps, nothing of the chart's default behavior mixed in.
    behavior = (
        scaler["spec"].get("behavior")
        or scaler["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    )
    assert behavior == autoscaling_values(spec_for(engine))["behavior"]


def test_with_the_operator_engine_no_autoscaler_is_rendered():
    kinds = {o["kind"] for o in _render("operator")}
    assert "Deployment" in kinds and not {"HorizontalPodAutoscaler", "ScaledObject"} & kinds


def test_the_operator_may_apply_and_prune_both_autoscalers():
    rules = required_rules()
    for resource in (("autoscaling", "horizontalpodautoscalers"), ("keda.sh", "scaledobjects")):
        assert {"create", "patch", "delete", "list", "watch"} <= rules[resource]


def _hpa(name: str, owner_refs: list[dict]) -> dict:
    meta = {"name": name, "labels": {OWNER_LABEL: "1234-uid"}, "ownerReferences": owner_refs}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta}


def test_prune_leaves_the_hpa_keda_makes_though_it_carries_the_owner_label():
    ours = {"uid": "1234-uid", "controller": True}
    kedas = {"uid": "so-uid", "controller": True, "kind": "ScaledObject"}
    live = [_hpa("keda-hpa-tts", [kedas]), _hpa("tts", [ours])]
    assert [o["metadata"]["name"] for o in prune_set(live, [], "1234-uid")] == ["tts"]


@pytest.mark.parametrize(
    ("engine", "reason", "kind"),
    [("hpa", "HandedToHPA", "HorizontalPodAutoscaler"), ("keda", "HandedToKEDA", "ScaledObject")],
)
def test_scaling_active_says_who_scales(engine, reason, kind):
    cond = handed_off(engine, "tts")
    assert (cond.type, cond.status, cond.reason) == ("ScalingActive", "True", reason)
    assert f"{kind} tts sets the replicas" in cond.message and "does not scrape or scale" in cond.message


def _deployment(replicas: int | None, *entries: tuple[str, str, bool]) -> dict:
    managed = [
        {
            "manager": m,
            "operation": op,
            "fieldsV1": {"f:spec": {"f:replicas": {}} if owns else {"f:template": {}}},
        }
        for m, op, owns in entries
    ]
    spec = {} if replicas is None else {"replicas": replicas}
    return {"metadata": {"name": "tts", "namespace": "team-a", "managedFields": managed}, "spec": spec}


def test_replicas_the_operator_applied_are_handed_over_before_it_stops_sending_them():
    live = _deployment(3, (FIELD_MANAGER, "Apply", True), ("kube-controller-manager", "Update", False))
    assert replicas_handover(live) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "tts", "namespace": "team-a"},
        "spec": {"replicas": 3},
    }


@pytest.mark.parametrize(
    "live",
    [
        None,  # not applied yet
        _deployment(3, (FIELD_MANAGER, "Apply", False)),  # already without replicas
        _deployment(3, (FIELD_MANAGER, "Update", True), ("kubectl", "Update", True)),  # scale writes only
        _deployment(None, (FIELD_MANAGER, "Apply", True)),
    ],
)
def test_no_handover_when_the_operators_apply_owns_no_replicas(live):
    assert replicas_handover(live) is None
