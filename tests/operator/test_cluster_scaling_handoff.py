"""spec.autoscaling.engine hpa / keda against the real API server: the operator renders the chart's
HorizontalPodAutoscaler or KEDA ScaledObject and then never touches the replicas (no tug of war).

The local stack runs a real kube-controller-manager, so a real HPA controller watches the HPA; there is no
metrics API, so it scales nothing by itself and the test plays it: `kubectl scale` on the Deployment, as
an HPA (or KEDA's) writes the scale subresource. KEDA's own controller is not run: its CRD (the pinned
release's, from hack/install-crds.sh) is loaded so the API server validates the ScaledObject.
Over several forced resyncs (2 s here), a re-apply of the Deployment with new content and the repair of
a deleted autoscaler, with a queue on the pods that would make the operator's own autoscaler scale up
(tests/operator/test_cluster_operator.py, test_autoscale_up_on_queue_and_down_after_window), the replicas
stay what the autoscaler set and the operator records no `Scaled` event and no scale write.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from higgs_operator.constants import FIELD_MANAGER
from tests.support import crds, kubetest
from tests.support.higgsdeployment import (
    MODEL,
    OWNER_LABEL,
    condition,
    create_token,
    get_hd,
    hd_body,
    wait_available,
)
from tests.support.operator import HubProcess, OperatorProcess, speech_load

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(120),
    pytest.mark.localstack(
        "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it; "
        "the load goes to the pods' IPs from this host"
    ),
]

RESYNC_S = 2  # the operator's forced full re-apply period in this module
WINDOW_S = 5 * RESYNC_S + 2  # observed: several resyncs and status refreshes
PROMETHEUS = "http://127.0.0.1:9"  # nothing queries it here: no KEDA controller runs
KINDS = {"hpa": ("HorizontalPodAutoscaler", "HandedToHPA"), "keda": ("ScaledObject", "HandedToKEDA")}


@pytest.fixture(scope="module")
def keda_crds(cluster: kubetest.Cluster) -> None:
    """KEDA's CRDs (pinned in hack/versions.txt, cached by `make tools`) served by the API server."""
    crds.install(cluster, "keda")


@pytest.fixture(scope="module")
def fast_operator(
    cluster: kubetest.Cluster, crd: None, keda_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator with a short forced resync, started after KEDA's CRD exists (so it watches them)."""
    op = OperatorProcess(
        tmp_path_factory.mktemp("operator") / "operator.log", "--resync-seconds", str(RESYNC_S)
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


def _autoscaler(cluster: kubetest.Cluster, ns: str, engine: str, name: str) -> dict[str, Any] | None:
    if engine == "hpa":
        api = client.AutoscalingV2Api(cluster.api)
        try:
            return cluster.api.sanitize_for_serialization(
                api.read_namespaced_horizontal_pod_autoscaler(name, ns)
            )
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
    custom = client.CustomObjectsApi(cluster.api)
    try:
        return custom.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", name)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise


def _operator_owns_replicas(deployment: client.V1Deployment) -> bool:
    for entry in deployment.metadata.managed_fields or []:
        if entry.manager == FIELD_MANAGER and "f:replicas" in (entry.fields_v1 or {}).get("f:spec", {}):
            return True
    return False


def _strict_dry_run(cluster: kubetest.Cluster, ns: str, obj: dict[str, Any]) -> None:
    """The object as rendered, created anew under strict field validation: an unknown field is refused."""
    fresh = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": "strict-check", "labels": obj["metadata"].get("labels", {})},
        "spec": obj["spec"],
    }
    proc = cluster.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(fresh),
        check=False,
    )
    assert proc.returncode == 0, (
        f"{obj['kind']} refused by the API server's strict validation:\n{proc.stderr}"
    )


def _autoscaling(engine: str) -> dict[str, Any]:
    autoscaling: dict[str, Any] = {
        "engine": engine,
        "minReplicas": 1,
        "maxReplicas": 3,
        "targetWaitingRequestsPerReplica": 1,
        "scaleUpStabilizationSeconds": 0,
        "pollSeconds": 1,
    }
    if engine == "keda":
        autoscaling["keda"] = {"serverAddress": PROMETHEUS}
    return autoscaling


def _apply(cluster: kubetest.Cluster, ns: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))


def _check_autoscaler(cluster: kubetest.Cluster, ns: str, engine: str, uid: str) -> None:
    """The chart's autoscaler, owned by the resource, with the spec's bounds, valid under strict field
    validation; a Deployment whose replicas the operator's server-side apply does not own."""
    kind, _ = KINDS[engine]
    scaler = kubetest.wait_for(lambda: _autoscaler(cluster, ns, engine, "hand"), 20, what=kind)
    assert scaler["metadata"]["ownerReferences"][0]["uid"] == uid
    assert scaler["metadata"]["labels"][OWNER_LABEL] == uid
    if engine == "hpa":
        assert (scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]) == (1, 3)
        assert scaler["spec"]["scaleTargetRef"]["name"] == "hand"
    else:
        assert (scaler["spec"]["minReplicaCount"], scaler["spec"]["maxReplicaCount"]) == (1, 3)
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["type"] == "prometheus" and trigger["metadata"]["serverAddress"] == PROMETHEUS
        assert trigger["metadata"]["threshold"] == "1" and ns in trigger["metadata"]["query"]
        assert scaler["spec"]["pollingInterval"] == 1
    _strict_dry_run(cluster, ns, scaler)
    assert not _operator_owns_replicas(cluster.apps.read_namespaced_deployment("hand", ns))


def _replicas(cluster: kubetest.Cluster, ns: str) -> int:
    return cluster.apps.read_namespaced_deployment("hand", ns).spec.replicas


def _no_tug_of_war(
    cluster: kubetest.Cluster, op: OperatorProcess, ns: str, engine: str, uid: str, replicas: int
) -> None:
    """The autoscaler set `replicas` (kubectl scale): with a queue on the pods, a re-apply of the
    Deployment with new content (its strategy: no new pods) and a deleted autoscaler for the operator to
    put back, over several resyncs, they stay; no Scaled event, no scale write, the status says who."""
    kind, reason = KINDS[engine]
    pods = kubetest.wait_for_pods_ready(cluster.api, ns, f"{OWNER_LABEL}={uid}", replicas, timeout=40)
    stop = threading.Event()
    text = "hello there " * 6
    threads = [
        t for pod in pods for t in speech_load(f"http://{pod.status.pod_ip}:8000", MODEL, text, 4, stop)
    ]
    generation = cluster.apps.read_namespaced_deployment("hand", ns).metadata.generation
    seen: list[int] = []
    try:
        deadline = time.monotonic() + WINDOW_S
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
        patch = json.dumps({"spec": {"strategy": strategy}})
        cluster.kubectl("patch", "hd/hand", "-n", ns, "--type=merge", "-p", patch)
        plural = "horizontalpodautoscalers.autoscaling" if engine == "hpa" else "scaledobjects.keda.sh"
        cluster.kubectl("delete", plural, "hand", "-n", ns, "--wait=false")
        while time.monotonic() < deadline:
            seen.append(_replicas(cluster, ns))
            time.sleep(0.5)
    finally:
        stop.set()
    assert set(seen) == {replicas}, f"the Deployment's replicas moved while {kind} owned them: {seen}"

    deployment = cluster.apps.read_namespaced_deployment("hand", ns)
    assert deployment.metadata.generation > generation, "the operator did not re-apply the changed Deployment"
    assert deployment.spec.strategy.rolling_update.max_unavailable == 1
    assert deployment.spec.replicas == replicas and not _operator_owns_replicas(deployment)
    assert kubetest.wait_for(lambda: _autoscaler(cluster, ns, engine, "hand"), 10, what=f"{kind} put back")
    events = [e for e in cluster.core.list_namespaced_event(ns).items if e.reason == "Scaled"]
    assert not events, [e.message for e in events]
    writes = op.health().get("writes") or {}
    assert not writes.get("scale Deployment"), writes

    hd = kubetest.wait_for(
        lambda: (h := get_hd(cluster, ns, "hand"))["status"].get("desiredReplicas") == replicas and h,
        10,
        describe=lambda: json.dumps(get_hd(cluster, ns, "hand").get("status"), indent=1),
        what=f"status desiredReplicas {replicas} (the autoscaler's count)",
    )
    scaling = condition(hd, "ScalingActive")
    assert (scaling["status"], scaling["reason"]) == ("True", reason), scaling
    assert f"{kind} hand sets the replicas" in scaling["message"]
    assert "metrics" not in hd["status"] and "lastScaling" not in hd["status"], (
        "the operator scraped or scaled"
    )
    for t in threads:
        t.join(timeout=35)


def test_hpa_owns_the_replicas_and_the_operator_never_changes_them(
    cluster: kubetest.Cluster, fast_operator: OperatorProcess, hub: HubProcess, namespace: str
) -> None:
    create_token(cluster, namespace)
    _apply(cluster, namespace, hd_body("hand", hub, maxNumSeqs=1, autoscaling=_autoscaling("hpa")))
    wait_available(cluster, namespace, "hand", timeout=60)
    uid = get_hd(cluster, namespace, "hand")["metadata"]["uid"]
    _check_autoscaler(cluster, namespace, "hpa", uid)
    cluster.kubectl("scale", "deployment/hand", "-n", namespace, "--replicas=2")  # as the HPA would
    _no_tug_of_war(cluster, fast_operator, namespace, "hpa", uid, 2)


def test_switch_to_keda_keeps_the_replicas_and_the_operator_never_changes_them(
    cluster: kubetest.Cluster, fast_operator: OperatorProcess, hub: HubProcess, namespace: str
) -> None:
    """From fixed replicas to KEDA: the operator's apply stops sending replicas, which it owned; they must
    not fall back to the Deployment's default of 1 on the way (render.replicas_handover)."""
    create_token(cluster, namespace)
    body = hd_body("hand", hub, maxNumSeqs=1, replicas=2)
    _apply(cluster, namespace, body)
    uid = get_hd(cluster, namespace, "hand")["metadata"]["uid"]
    kubetest.wait_for_pods_ready(cluster.api, namespace, f"{OWNER_LABEL}={uid}", 2, timeout=60)
    del body["spec"]["replicas"]
    body["spec"]["autoscaling"] = _autoscaling("keda")
    _apply(cluster, namespace, body)
    seen = []
    deadline = time.monotonic() + 2 * RESYNC_S + 1
    while time.monotonic() < deadline:
        seen.append(_replicas(cluster, namespace))
        time.sleep(0.25)
    assert set(seen) == {2}, f"the replicas moved when KEDA took over: {seen}"
    _check_autoscaler(cluster, namespace, "keda", uid)
    cluster.kubectl("scale", "deployment/hand", "-n", namespace, "--replicas=1")  # as KEDA's HPA would
    _no_tug_of_war(cluster, fast_operator, namespace, "keda", uid, 1)
