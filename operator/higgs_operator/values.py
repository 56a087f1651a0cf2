"""HiggsDeployment spec -> values of charts/higgs-audio (pure).

The spec uses the chart's own value names, so most keys copy over unchanged; the operator owns the
keys that tie the release to the resource: names, the token Secret, checksums, replicas (the
operator scales, or hands scaling to the chart's HPA or KEDA ScaledObject: ``spec.autoscaling.engine``)
and the chart's test hook (not applied).
"""

from __future__ import annotations

import copy
from decimal import Decimal

from .metrics import OMNI_RUNNING, OMNI_WAITING, RUNNING, WAITING
from .secrets import TokenRef

# Spec keys with the chart's names and meaning: copied verbatim when present.
PASS_THROUGH = (
    "image",
    "imagePullSecrets",
    "serverGeneration",
    "omni",
    "model",
    "audioTokenizer",
    "semanticModel",
    "servedModelName",
    "limitMmPerPrompt",
    "maxModelLen",
    "gpuMemoryUtilization",
    "disableMmPreprocessorCache",
    "maxNumSeqs",
    "port",
    "extraArgs",
    "env",
    "envFrom",
    "extraVolumes",
    "extraVolumeMounts",
    "extraInitContainers",
    "extraContainers",
    "disableUsageStats",
    "compileCache",
    "gpuCount",
    "gpuResourceName",
    "resources",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "runtimeClassName",
    "priorityClassName",
    "schedulerName",
    "podAnnotations",
    "podLabels",
    "modelCache",
    "voicePresets",
    "startupProbe",
    "readinessProbe",
    "livenessProbe",
    "lifecycle",
    "terminationGracePeriodSeconds",
    "strategy",
    "networkPolicy",
    "shm",
    "scratch",
    "service",
    "podDisruptionBudget",
    "podSecurityContext",
    "securityContext",
)


# spec.autoscaling.engine values that hand the replicas to another controller (the chart renders it).
HANDED_OFF = ("hpa", "keda")


def scaling_engine(spec: dict) -> str | None:
    """Who sets the replicas: None (spec.replicas, fixed), "operator", "hpa" or "keda"."""
    autoscaling = spec.get("autoscaling")
    if not autoscaling:
        return None
    return str(autoscaling.get("engine") or "operator")


def operator_scales(spec: dict) -> bool:
    """Whether the operator scrapes the pods and writes replicas itself (never with engine hpa or keda:
    two controllers writing one Deployment's replicas would undo each other)."""
    return scaling_engine(spec) == "operator"


def desired_replicas(spec: dict, current: int | None) -> int:
    """Replicas wanted now: spec.replicas; the operator's count within [min, max]; or, handed to an HPA
    or KEDA, whatever that controller last set (min until it has)."""
    autoscaling = spec.get("autoscaling")
    if not autoscaling:
        return int(spec.get("replicas", 1))
    low, high = int(autoscaling.get("minReplicas", 1)), int(autoscaling.get("maxReplicas", 1))
    if scaling_engine(spec) in HANDED_OFF:
        return current if current is not None else low
    return max(low, min(high, current if current is not None else low))


def _plain(number: object) -> str:
    """A target as the chart takes it: a plain decimal string (an HPA quantity and KEDA's float alike)."""
    return "" if number is None else format(Decimal(str(number)).normalize(), "f")


def autoscaling_values(spec: dict) -> dict:
    """The chart's ``autoscaling`` block: off unless spec.autoscaling.engine hands scaling to the chart's
    HorizontalPodAutoscaler or KEDA ScaledObject, which then get the operator's own targets, bounds,
    stabilization windows and steps (a step is at most that many pods per pollSeconds)."""
    engine = scaling_engine(spec)
    if engine not in HANDED_OFF:
        return {"enabled": False}  # the operator scales (scale subresource), or spec.replicas is fixed
    a = spec["autoscaling"]
    omni = spec.get("serverGeneration") == "omni"
    names = a.get("hpa") or {}
    period = int(a.get("pollSeconds", 15))
    values: dict = {
        "enabled": True,
        "engine": engine,
        "minReplicas": int(a.get("minReplicas", 1)),
        "maxReplicas": int(a.get("maxReplicas", 4)),
        "metricName": names.get("waitingMetricName") or (OMNI_WAITING if omni else WAITING),
        "targetAverageValue": _plain(a.get("targetWaitingRequestsPerReplica")),
        "runningMetricName": names.get("streamsMetricName") or (OMNI_RUNNING if omni else RUNNING),
        "targetRunningAverageValue": _plain(a.get("targetStreamsPerReplica")),
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": int(a.get("scaleUpStabilizationSeconds", 0)),
                "policies": [
                    {"type": "Pods", "value": int(a.get("maxScaleUpStep", 4)), "periodSeconds": period}
                ],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": int(a.get("scaleDownStabilizationSeconds", 300)),
                "policies": [
                    {"type": "Pods", "value": int(a.get("maxScaleDownStep", 1)), "periodSeconds": period}
                ],
            },
        },
    }
    if engine == "keda":
        keda = a.get("keda") or {}
        auth = keda.get("authenticationRef") or {}
        values["keda"] = {
            "serverAddress": keda.get("serverAddress", ""),
            "waitingQuery": keda.get("waitingQuery", ""),
            "runningQuery": keda.get("streamsQuery", ""),
            "pollingInterval": period,
            "authenticationRef": {
                "name": auth.get("name", ""),
                "kind": auth.get("kind", "TriggerAuthentication"),
            },
        }
    return values


def chart_values(
    name: str,
    spec: dict,
    token: TokenRef | None,
    token_checksum: str | None,
    replicas: int,
    *,
    operator_namespace: str,
) -> dict:
    """Values for ``helm template <name> charts/higgs-audio``."""
    values: dict = {key: copy.deepcopy(spec[key]) for key in PASS_THROUGH if key in spec}
    values["fullnameOverride"] = name
    values["replicaCount"] = replicas
    values["autoscaling"] = autoscaling_values(spec)
    values["tests"] = {"enabled": False}
    # The chart's NetworkPolicy (on by default) must admit the operator, which scrapes and probes the pods.
    values.setdefault("networkPolicy", {})["operatorNamespace"] = operator_namespace
    values["hfToken"] = {
        "existingSecret": token.name if token else "",
        "key": token.key if token else "hf_access_token",
    }
    api_key = (spec.get("apiKey") or {}).get("secretRef")
    if api_key:
        values["apiKey"] = {"existingSecret": api_key["name"], "key": api_key.get("key", "api_key")}
    if token_checksum:
        values["checksums"] = {"hf-token": token_checksum}
    return values
