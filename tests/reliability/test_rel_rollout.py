"""No request lost to planned changes: a rolling update (a HiggsDeployment spec change) while streams run
through the Service, and a scale-down under a steady load. Relies on the chart's preStop sleep, the
grace period, maxUnavailable 0 and the server draining its streams on SIGTERM."""

from __future__ import annotations

import threading
import time

import pytest
import yaml

from tests.support import kubetest
from tests.support.faults import StreamResult, start_stream, stream_chat
from tests.support.higgsdeployment import OWNER_LABEL, create_token, get_hd, hd_body, wait_available
from tests.support.operator import HubProcess, OperatorProcess

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.localstack(
        "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it; "
        "the streams go to the Service's local ClusterIP"
    ),
    pytest.mark.timeout(240),
]

# Every stream pauses STALL_S after 2 frames: streams last long enough to straddle the change.
STALL_S = 4
DRAINING = {
    "extraArgs": [
        "--sim-startup-seconds",
        "1",
        "--sim-stall-after-frames",
        "2",
        "--sim-stall-seconds",
        str(STALL_S),
    ],
    "lifecycle": {"preStopSleepSeconds": 2},
    "terminationGracePeriodSeconds": 30,
    # maxUnavailable 0 and a surge pod (the chart's default is Recreate); the emptyDir cache allows it.
    "strategy": {"type": "RollingUpdate"},
}


def _deploy(cluster: kubetest.Cluster, ns: str, hub: HubProcess, replicas: int, **spec: object) -> str:
    create_token(cluster, ns)
    body = hd_body("tts", hub, **{**DRAINING, **spec, "replicas": replicas})
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))
    wait_available(cluster, ns, "tts", timeout=120)
    uid = get_hd(cluster, ns, "tts")["metadata"]["uid"]
    kubetest.wait_for_pods_ready(cluster.api, ns, f"{OWNER_LABEL}={uid}", replicas, timeout=60)
    return uid


def _failures(results: list[StreamResult]) -> list[str]:
    return [
        f"stream {i}: {r.error} ({r.frames} frames)"
        for i, r in enumerate(results)
        if not r.done or not r.frames
    ]


def test_rolling_update_breaks_no_running_stream(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess
) -> None:
    uid = _deploy(cluster, namespace, hub, replicas=2)
    url = kubetest.routed_service_url(cluster, namespace, "tts", backends=2)
    old_pods = {
        p.metadata.name
        for p in cluster.core.list_namespaced_pod(namespace, label_selector=f"{OWNER_LABEL}={uid}").items
    }
    streams = [start_stream(url, max_tokens=400, read_timeout=STALL_S + 20) for _ in range(4)]
    for result, _ in streams:
        assert result.first_event.wait(30) and result.first_audio, f"a stream did not start: {result.error}"
    t0 = time.monotonic()
    # A spec change that changes the pod template: the operator applies it, the Deployment rolls.
    cluster.kubectl(
        "patch", "hd/tts", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"podAnnotations": {"higgs.test/rollout": "2"}}}',
    )  # fmt: skip

    def rolled() -> bool:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"{OWNER_LABEL}={uid}").items
        new_ready = [p for p in pods if p.metadata.name not in old_pods and kubetest._pod_ready(p)]
        return len(new_ready) == 2 and not [p for p in pods if p.metadata.name in old_pods]

    for _, thread in streams:
        thread.join(STALL_S + 40)
    results = [r for r, _ in streams]
    assert not _failures(results), _failures(results)
    kubetest.wait_for(
        rolled, 120, describe=lambda: kubetest.namespace_report(cluster.api, namespace), what="rollout"
    )
    print(
        f"\n[figure] rolling update: {len(results)} running streams all completed; rollout done after "
        f"{time.monotonic() - t0:.1f} s"
    )


def test_scale_down_drops_no_request(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess
) -> None:
    uid = _deploy(cluster, namespace, hub, replicas=3)
    url = kubetest.routed_service_url(cluster, namespace, "tts", backends=3)
    results: list[StreamResult] = []
    stop_at = time.monotonic() + 14
    lock = threading.Lock()

    def client_loop() -> None:
        while time.monotonic() < stop_at:
            result = StreamResult()
            stream_chat(url, result, max_tokens=200, read_timeout=STALL_S + 20)
            with lock:
                results.append(result)

    workers = [threading.Thread(target=client_loop, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(2)
    cluster.kubectl("scale", "hd/tts", "-n", namespace, "--replicas=1")
    for w in workers:
        w.join(14 + STALL_S + 40)
    assert not any(w.is_alive() for w in workers), "a client hangs"
    kubetest.wait_for(
        lambda: (
            len(cluster.core.list_namespaced_pod(namespace, label_selector=f"{OWNER_LABEL}={uid}").items) == 1
        ),
        60,
        what="scaled down to one pod",
    )
    print(f"\n[figure] scale-down 3->1 under load: {len(results)} requests, {len(_failures(results))} failed")
    assert len(results) >= 8, "too little load to mean anything"
    assert not _failures(results), _failures(results)
