"""HiggsDeployment resources for the cluster tests: the body the operator tests apply, its token
Secret, reads and waits, and the resources the API server must refuse (the CRD's validation)."""

from __future__ import annotations

from kubernetes import client

from tests.support import kubetest
from tests.support.operator import HubProcess

GROUP, VERSION, PLURAL = "audio.higgs.dev", "v1alpha1", "higgsdeployments"
OWNER_LABEL = "audio.higgs.dev/owner"
TOKEN = "hf_TestTokenValue_do_not_leak_42"
MODEL = "higgs-audio-v2-generation-3B-base"


def hd_body(name: str, hub: HubProcess, **spec: object) -> dict:
    base: dict = {
        "image": {"repository": "localhost/higgs-audio-simulator", "tag": "0.1.0"},
        "servedModelName": MODEL,
        "gpuCount": 0,  # the two fake GPU nodes could not place a rolling update's surge pod
        "extraArgs": ["--sim-startup-seconds", "1"],
        "hfToken": {"secretRef": {"name": "hf-token"}},
        "modelCache": {"mode": "none", "hfEndpoint": hub.url, "emptyDir": {"sizeLimit": "1Gi"}},
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        "shm": {"sizeLimit": "64Mi"},
        "scratch": {"sizeLimit": "256Mi"},
        "startupProbe": {"periodSeconds": 1, "failureThreshold": 120},
        "readinessProbe": {"periodSeconds": 1},
        "livenessProbe": {"periodSeconds": 5},
        "lifecycle": {"preStopSleepSeconds": 0},
        "terminationGracePeriodSeconds": 2,
        "podDisruptionBudget": {"enabled": False},
        # Spec changes roll without an outage, as before the chart's default became Recreate (the
        # per-pod emptyDir cache allows a surge pod; gpuCount 0 gives it room).
        "strategy": {"type": "RollingUpdate"},
    }
    base.update(spec)
    if "autoscaling" not in base:
        base.setdefault("replicas", 1)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HiggsDeployment",
        "metadata": {"name": name},
        "spec": base,
    }


def create_token(cluster: kubetest.Cluster, ns: str, value: str = TOKEN, name: str = "hf-token") -> None:
    body = {"metadata": {"name": name}, "stringData": {"hf_access_token": value}}
    try:
        cluster.core.create_namespaced_secret(ns, body)
    except client.ApiException as err:
        if err.status != 409:
            raise
        cluster.core.replace_namespaced_secret(name, ns, body)


def get_hd(cluster: kubetest.Cluster, ns: str, name: str) -> dict:
    return client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def condition(hd: dict, ctype: str) -> dict:
    return next((c for c in (hd.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def wait_available(cluster: kubetest.Cluster, ns: str, name: str, timeout: float = 90) -> dict:
    return kubetest.wait_for_condition(
        cluster.api, f"higgsdeployment/{name}", "Available", namespace=ns, timeout=timeout
    )


# --- validation: (spec, the text the refusal names) -----------------------------------------------
INVALID = [
    (
        {"replicas": 1, "autoscaling": {"maxReplicas": 2, "targetWaitingRequestsPerReplica": 1}},
        "spec.replicas and spec.autoscaling",
    ),
    (
        {"autoscaling": {"minReplicas": 3, "maxReplicas": 2, "targetWaitingRequestsPerReplica": 1}},
        "spec.autoscaling.minReplicas",
    ),
    ({"autoscaling": {"maxReplicas": 2}}, "targetWaitingRequestsPerReplica"),
    (
        {"autoscaling": {"maxReplicas": 2, "targetWaitingRequestsPerReplica": 0}},
        "spec.autoscaling.targetWaitingRequestsPerReplica",
    ),
    (
        {"autoscaling": {"maxReplicas": 2, "targetStreamsPerReplica": 1, "pollSeconds": 0}},
        "spec.autoscaling.pollSeconds",
    ),
    ({"gpuMemoryUtilization": 0}, "spec.gpuMemoryUtilization"),
    ({"gpuMemoryUtilization": 1.5}, "spec.gpuMemoryUtilization"),
    ({"maxModelLen": 0}, "spec.maxModelLen"),
    ({"port": 70000}, "spec.port"),
    ({"image": {"repository": "x", "tag": "latest"}}, "spec.image.tag"),
    ({"hfToken": {}}, "spec.hfToken"),
    ({"hfToken": {"secretRef": {"name": "a"}, "mirrorFrom": {"name": "b"}}}, "spec.hfToken"),
    ({"serverGeneration": "current"}, "spec.serverGeneration must be fork"),
    ({"omni": {"deployConfig": "deploy/higgs_audio_v2.yaml"}}, "spec.omni.deployConfig"),
    ({"extraArgs": ["--port", "9000"]}, "spec.extraArgs"),
    ({"replicas": -1}, "spec.replicas"),
    ({"model": {"revision": "main"}}, "spec.model.revision"),
    ({"maxNumSeqs": 0}, "spec.maxNumSeqs"),
    ({"servedModelName": ""}, "spec.servedModelName"),
    ({"modelCache": {"mode": "pvc"}, "hfToken": None}, "spec.hfToken is required"),
    ({"networkPolicy": {"operatorNamespace": "elsewhere"}}, "spec.networkPolicy.operatorNamespace"),
]
