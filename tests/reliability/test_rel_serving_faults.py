"""Faults while serving, on the local cluster with the operator running: a serving process killed
mid-stream, the token Secret deleted, the operator killed while scaling, a fake GPU node deleted.
Every wait is bounded; figures (time to error, recovery) are printed (`pytest -s` shows them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.support import kubetest
from tests.support.faults import pids_listening_on, sigkill, start_stream
from tests.support.higgsdeployment import (
    OWNER_LABEL,
    condition,
    create_token,
    get_hd,
    hd_body,
    wait_available,
)
from tests.support.operator import HubProcess, OperatorProcess

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.localstack(
        "kills serving processes found in this host's /proc and removes a fake GPU node; "
        "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it"
    ),
    pytest.mark.timeout(240),
]

STREAM_ERROR_WITHIN_S = 5.0  # a killed server must surface to a streaming client this fast


def deploy(cluster: kubetest.Cluster, ns: str, hub: HubProcess, name: str = "tts", **spec: object) -> str:
    """Token + HiggsDeployment, waited to Available; returns its uid."""
    create_token(cluster, ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(hd_body(name, hub, **spec)))
    wait_available(cluster, ns, name, timeout=120)
    return get_hd(cluster, ns, name)["metadata"]["uid"]


def ready_pods(cluster: kubetest.Cluster, ns: str, uid: str) -> list[client.V1Pod]:
    pods = cluster.core.list_namespaced_pod(ns, label_selector=f"{OWNER_LABEL}={uid}").items
    return [p for p in pods if kubetest._pod_ready(p) and p.metadata.deletion_timestamp is None]


def owned_counts(cluster: kubetest.Cluster, ns: str, uid: str) -> dict[str, int]:
    sel = f"{OWNER_LABEL}={uid}"
    return {
        "Deployment": len(cluster.apps.list_namespaced_deployment(ns, label_selector=sel).items),
        "Service": len(cluster.core.list_namespaced_service(ns, label_selector=sel).items),
        "ConfigMap": len(cluster.core.list_namespaced_config_map(ns, label_selector=sel).items),
        "ReplicaSet": len(cluster.apps.list_namespaced_replica_set(ns, label_selector=sel).items),
    }


def test_server_killed_mid_stream_errors_promptly_and_recovers(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess
) -> None:
    uid = deploy(cluster, namespace, hub)
    pod = kubetest.wait_for(lambda: ready_pods(cluster, namespace, uid), 30, what="a ready pod")[0]
    kubetest.wait_for(
        lambda: get_hd(cluster, namespace, "tts").get("status", {}).get("readyReplicas") == 1,
        30,
        what="the HiggsDeployment to report its ready replica",
    )
    ip = pod.status.pod_ip
    result, thread = start_stream(f"http://{ip}:8000", max_tokens=4000)
    assert result.first_event.wait(30) and result.first_audio, f"no audio streamed: {result.error}"
    pids = pids_listening_on(ip)
    assert pids, f"no server process found for pod IP {ip}"
    killed_at = time.monotonic()
    sigkill(pids)
    thread.join(STREAM_ERROR_WITHIN_S + 5)
    assert not thread.is_alive(), "the streaming client hangs after its server was killed"
    time_to_error = result.ended - killed_at
    print(f"\n[figure] killed mid-stream: client error after {time_to_error:.2f} s ({result.error})")
    assert not result.done and result.error, "a killed stream looked complete"
    assert time_to_error < STREAM_ERROR_WITHIN_S

    # The resource reports fewer ready replicas than desired (or Degraded), then recovers by itself.
    def not_ready() -> bool:
        hd = get_hd(cluster, namespace, "tts")
        status = hd.get("status") or {}
        return status.get("readyReplicas", 0) < 1 or condition(hd, "Available").get("status") != "True"

    kubetest.wait_for(not_ready, 30, what="HiggsDeployment to notice the dead server")

    def restarted_and_ready() -> bool:
        for p in ready_pods(cluster, namespace, uid):
            restarts = sum(cs.restart_count for cs in p.status.container_statuses or [])
            if p.metadata.uid != pod.metadata.uid or restarts >= 1:
                return True
        return False

    kubetest.wait_for(
        restarted_and_ready,
        90,
        lambda: kubetest.namespace_report(cluster.api, namespace),
        what="the killed server restarted (or replaced) and ready",
    )
    wait_available(cluster, namespace, "tts", timeout=90)
    recovered = time.monotonic() - killed_at
    print(f"[figure] killed mid-stream: Available again after {recovered:.1f} s")
    new_pod = ready_pods(cluster, namespace, uid)[0]
    again, t2 = start_stream(f"http://{new_pod.status.pod_ip}:8000", max_tokens=50)
    t2.join(60)
    assert again.done and again.frames > 0, f"no complete stream after recovery: {again.error}"


def test_token_secret_deleted_while_serving(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess
) -> None:
    uid = deploy(cluster, namespace, hub)
    before = {p.metadata.uid for p in ready_pods(cluster, namespace, uid)}
    cluster.core.delete_namespaced_secret("hf-token", namespace)
    hd = kubetest.wait_for_condition(
        cluster.api, "higgsdeployment/tts", "SecretReady", "False", namespace=namespace, timeout=30
    )
    assert "hf-token" in condition(hd, "SecretReady")["message"]
    events = kubetest.wait_for(
        lambda: [
            e
            for e in cluster.core.list_namespaced_event(namespace).items
            if e.type == "Warning"
            and e.involved_object.kind == "HiggsDeployment"
            and "hf-token" in (e.message or "")
        ],
        30,
        what="a Warning event naming the missing Secret",
    )
    assert events
    # Serving goes on: the same pods, ready, answering.
    time.sleep(3)
    pods = ready_pods(cluster, namespace, uid)
    assert {p.metadata.uid for p in pods} == before, "pods were replaced after the Secret disappeared"
    result, thread = start_stream(f"http://{pods[0].status.pod_ip}:8000", max_tokens=50)
    thread.join(60)
    assert result.done, f"serving stopped after the Secret was deleted: {result.error}"
    # Putting the Secret back clears the condition.
    create_token(cluster, namespace)
    kubetest.wait_for_condition(
        cluster.api, "higgsdeployment/tts", "SecretReady", namespace=namespace, timeout=30
    )


def test_operator_killed_while_scaling_converges_without_duplicates(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess, tmp_path: Path
) -> None:
    uid = deploy(cluster, namespace, hub)
    baseline = owned_counts(cluster, namespace, uid)
    operator.stop(kill=True)
    try:
        cluster.kubectl("scale", "hd/tts", "-n", namespace, "--replicas=3")
        time.sleep(0.5)
        extra = OperatorProcess(tmp_path / "op2.log")
        extra.start()  # a restart that races with the scale-up ...
        time.sleep(1.0)
        extra.stop(kill=True)  # ... killed again mid-reconcile
    finally:
        operator.start()
    t0 = time.monotonic()
    kubetest.wait_for(
        lambda: (
            len(ready_pods(cluster, namespace, uid)) == 3
            and (get_hd(cluster, namespace, "tts")["status"] or {}).get("readyReplicas") == 3
        ),
        120,
        describe=lambda: kubetest.namespace_report(cluster.api, namespace),
        what="3 ready replicas after the operator restarts",
    )
    print(f"\n[figure] operator killed while scaling: converged {time.monotonic() - t0:.1f} s after restart")
    counts = owned_counts(cluster, namespace, uid)
    assert {k: counts[k] for k in ("Deployment", "Service", "ConfigMap")} == {
        k: baseline[k] for k in ("Deployment", "Service", "ConfigMap")
    }, (baseline, counts)
    assert counts["Deployment"] == 1
    deployment = cluster.apps.read_namespaced_deployment("tts", namespace)
    assert deployment.spec.replicas == 3


def test_fake_gpu_node_removed_pods_are_rescheduled_and_serving_recovers(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess
) -> None:
    """A node taken out the way a cluster autoscaler or an operator does it: drained (evictions honour
    the PodDisruptionBudget), then its Node object deleted. Its pods are replaced by new ones, and the
    resource serves again; the agent then registers the machine as a new node."""
    uid = deploy(cluster, namespace, hub, replicas=2)
    pods = ready_pods(cluster, namespace, uid)
    node = pods[0].spec.node_name
    evicted = {p.metadata.uid for p in pods if p.spec.node_name == node}
    old_node_uid = cluster.core.read_node(node).metadata.uid
    t0 = time.monotonic()
    cluster.kubectl(
        "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s", "--pod-selector",
        f"{OWNER_LABEL}={uid}",
    )  # fmt: skip
    cluster.core.delete_node(node)
    drained = time.monotonic() - t0
    # The agent notices (404 on its heartbeat) and registers the machine again: a new object, new uid.
    kubetest.wait_for(
        lambda: cluster.core.read_node(node).metadata.uid != old_node_uid,
        60,
        what=f"node {node} registered again",
    )

    def replaced() -> bool:
        now = ready_pods(cluster, namespace, uid)
        return len(now) == 2 and not evicted & {p.metadata.uid for p in now}

    kubetest.wait_for(
        replaced,
        120,
        describe=lambda: kubetest.namespace_report(cluster.api, namespace),
        what="2 ready replicas, none of them a pod of the removed node",
    )
    wait_available(cluster, namespace, "tts", timeout=60)
    print(
        f"\n[figure] node removed: drained and deleted in {drained:.1f} s, "
        f"serving whole again after {time.monotonic() - t0:.1f} s"
    )
    result, thread = start_stream(
        f"http://{ready_pods(cluster, namespace, uid)[0].status.pod_ip}:8000", max_tokens=50
    )
    thread.join(60)
    assert result.done, result.error
