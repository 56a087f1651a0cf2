"""HiggsDeployment spec -> values of charts/higgs-audio (pure).

The spec uses the chart's own value names, so most keys copy over unchanged; the operator owns the
keys that tie the release to the resource: names, the token Secret, checksums, replicas (the
operator, not an HPA, scales) and the chart's test hook (not applied).
"""

from __future__ import annotations

import copy

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
    "shm",
    "scratch",
    "service",
    "podDisruptionBudget",
    "podSecurityContext",
    "securityContext",
)


def desired_replicas(spec: dict, current: int | None) -> int:
    """Replicas the operator wants now: spec.replicas, or the autoscaler's count within [min, max]."""
    autoscaling = spec.get("autoscaling")
    if not autoscaling:
        return int(spec.get("replicas", 1))
    low, high = int(autoscaling.get("minReplicas", 1)), int(autoscaling.get("maxReplicas", 1))
    return max(low, min(high, current if current is not None else low))


def chart_values(
    name: str, spec: dict, token: TokenRef | None, token_checksum: str | None, replicas: int
) -> dict:
    """Values for ``helm template <name> charts/higgs-audio``."""
    values: dict = {key: copy.deepcopy(spec[key]) for key in PASS_THROUGH if key in spec}
    values["fullnameOverride"] = name
    values["replicaCount"] = replicas
    values["autoscaling"] = {"enabled": False}  # the operator scales through the scale subresource
    values["tests"] = {"enabled": False}
    # The chart's NetworkPolicy (on by default under Helm) is not among the kinds the operator applies:
    # its sources are the edge's business; turned off here so that the render stays appliable.
    values["networkPolicy"] = {"enabled": False}
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
