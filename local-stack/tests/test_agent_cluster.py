"""The fake GPU node agent against the real control plane: pods become local processes on loopback.

Each test applies manifests with kubectl and watches what the agent reports in pod status, events,
files on the host and answers from the processes. Traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from localkube.services import resolve_service
from tests.support import kubetest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
ECHO = "localhost/http-echo:test"


def apply(cluster: kubetest.Cluster, namespace: str, *objs: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objs))


def get_pod(cluster: kubetest.Cluster, namespace: str, name: str) -> dict:
    return cluster.api.sanitize_for_serialization(cluster.core.read_namespaced_pod(name, namespace))


def pods(cluster: kubetest.Cluster, namespace: str, selector: str = "") -> list[dict]:
    items = cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
    return [cluster.api.sanitize_for_serialization(p) for p in items]


def wait_pod(
    cluster: kubetest.Cluster, namespace: str, name: str, check, what: str, timeout: float = 60
) -> dict:
    def probe() -> dict | None:
        pod = get_pod(cluster, namespace, name)
        return pod if check(pod) else None

    return kubetest.wait_for(
        probe,
        timeout,
        describe=lambda: kubetest.namespace_report(cluster.api, namespace),
        what=what,
        interval=0.3,
    )


def container_status(pod: dict, name: str | None = None) -> dict:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if name is None or s["name"] == name), {})


def waiting_reason(pod: dict) -> str:
    return ((container_status(pod).get("state") or {}).get("waiting") or {}).get("reason", "")


def waiting_message(pod: dict) -> str:
    return ((container_status(pod).get("state") or {}).get("waiting") or {}).get("message", "")


def is_ready(pod: dict) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def pod_dir(cluster: kubetest.Cluster, pod: dict) -> Path:
    meta = pod["metadata"]
    return cluster.kubeconfig.parent / "agent" / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


def http_get(url: str, timeout: float = 3.0) -> dict:
    assert url.startswith("http://127."), url
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def echo_pod(name: str, args: list[str], **extra) -> dict:
    container = {
        "name": "echo",
        "image": ECHO,
        "args": ["--port", "8080", *args],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        **extra,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "tolerations": [GPU_TOLERATION],
            "terminationGracePeriodSeconds": 5,
            "containers": [container],
        },
    }


@pytest.mark.localstack("kills the pod's process through its pid file in the agent's state directory")
def test_gpu_deployment_ready_after_probe_and_restarts_when_killed(
    cluster: kubetest.Cluster, namespace: str
) -> None:
    template = echo_pod("gpu-echo", ["--startup-delay", "4"])
    template["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    template["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 1,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gpu-echo"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "gpu-echo"}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }
    apply(cluster, namespace, deployment)

    # Running (the process is up) but not Ready while the server is still "starting": the probe fails.
    def running_unready() -> dict | None:
        found = [
            p
            for p in pods(cluster, namespace, "app=gpu-echo")
            if container_status(p).get("state", {}).get("running")
        ]
        return found[0] if found and not is_ready(found[0]) else None

    # Generous: other tests sharing the cluster may hold the GPUs for a while.
    pod = kubetest.wait_for(
        running_unready, 120, describe=lambda: kubetest.namespace_report(cluster.api, namespace)
    )
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"].startswith("gpu-node-")  # placed by the real scheduler on a GPU node
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.42.")
    pod = wait_pod(
        cluster, namespace, name, is_ready, "pod Ready after its readinessProbe passes", timeout=30
    )
    started = container_status(pod)["state"]["running"]["startedAt"]
    assert http_get(f"http://{ip}:8080/x")["pod"] == name
    events = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    assert any(e.reason == "Unhealthy" and "Readiness probe failed" in e.message for e in events)
    assert any(e.reason == "Started" for e in events)

    # SIGKILL the process: exit 137 in lastState, restartCount 1, Ready again.
    pid = int((pod_dir(cluster, pod) / "echo.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    pod = wait_pod(
        cluster,
        namespace,
        name,
        lambda p: container_status(p).get("restartCount") == 1 and is_ready(p),
        "restart after SIGKILL",
        timeout=30,
    )
    last = container_status(pod)["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error" and last["startedAt"] == started
    assert http_get(f"http://{ip}:8080/y")["pod"] == name


@pytest.mark.localstack("checks the local node agent's message for an image the images file does not map")
def test_unmapped_image_has_clear_reason(cluster: kubetest.Cluster, namespace: str) -> None:
    pod = echo_pod("unmapped", [])
    pod["spec"]["containers"][0]["image"] = "registry.example/not-here:1.0"
    apply(cluster, namespace, pod)
    pod = wait_pod(
        cluster, namespace, "unmapped", lambda p: waiting_reason(p) == "ImageNotMapped", "ImageNotMapped"
    )
    message = container_status(pod)["state"]["waiting"]["message"]
    assert "registry.example/not-here:1.0" in message and "localkube-images.yaml" in message
    assert pod["status"]["phase"] == "Pending"


@pytest.mark.localstack("reads the pod's emptyDir from the agent's state directory on this host")
def test_missing_secret_then_starts(cluster: kubetest.Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "needs-secret"},
        "spec": {
            "tolerations": [GPU_TOLERATION],
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo $(TOKEN)-$GREETING > /data/out; exec sleep 60"],
                    "env": [
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                        {"name": "GREETING", "value": "hi"},
                    ],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
        },
    }
    apply(cluster, namespace, pod)
    pod = wait_pod(
        cluster,
        namespace,
        "needs-secret",
        lambda p: waiting_reason(p) == "CreateContainerConfigError",
        "CreateContainerConfigError",
    )
    assert container_status(pod)["state"]["waiting"]["message"] == 'secret "creds" not found'
    cluster.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=t0k")
    pod = wait_pod(
        cluster,
        namespace,
        "needs-secret",
        lambda p: container_status(p).get("state", {}).get("running"),
        "running once the secret exists",
    )
    out = pod_dir(cluster, pod) / "volumes" / "data" / "out"  # /data was rewritten to the emptyDir's host dir
    kubetest.wait_for(out.exists, 10, what=f"{out}")
    assert out.read_text().strip() == "t0k-hi"


@pytest.mark.localstack("calls the pods and the Service on the local stack's loopback IPs from this host")
def test_service_resolves_and_proxy_round_robins(cluster: kubetest.Cluster, namespace: str) -> None:
    objs = [
        echo_pod(f"web-{i}", [], readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1})
        for i in range(2)
    ]
    for obj in objs:
        obj["metadata"]["labels"] = {"app": "web"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    apply(cluster, namespace, *objs, service)
    kubetest.wait_for_pods_ready(cluster.api, namespace, "app=web", 2, timeout=40)
    urls = kubetest.wait_for(
        lambda: len(r := resolve_service(cluster.api, namespace, "web", "http")) == 2 and r, 10
    )
    ips = {p["status"]["podIP"] for p in pods(cluster, namespace, "app=web")}
    assert sorted(urls) == sorted(f"http://{ip}:8080" for ip in ips)
    assert resolve_service(cluster.core, namespace, "web", 80) == urls
    cluster_ip = cluster.core.read_namespaced_service("web", namespace).spec.cluster_ip
    assert cluster_ip.startswith("127.")

    def answers() -> set[str]:
        return {http_get(f"http://{cluster_ip}:80/p")["pod"] for _ in range(4)}

    seen = kubetest.wait_for(
        lambda: len(s := answers()) == 2 and s, 15, what="both pods behind the ClusterIP"
    )
    assert seen == {"web-0", "web-1"}


@pytest.mark.localstack("reads the provisioned volume's host directory")
def test_pvc_provisioned_bound_and_written(cluster: kubetest.Cluster, namespace: str) -> None:
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "cache"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }
    writer = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "writer"},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [GPU_TOLERATION],
            "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "cache"}}],
            "containers": [
                {
                    "name": "w",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo persisted > /cache/sub/file"],
                    "volumeMounts": [{"name": "cache", "mountPath": "/cache/sub", "subPath": "sub"}],
                }
            ],
        },
    }
    apply(cluster, namespace, pvc, writer)
    pod = wait_pod(
        cluster, namespace, "writer", lambda p: p["status"].get("phase") == "Succeeded", "pod Succeeded"
    )
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 0
    claim = cluster.core.read_namespaced_persistent_volume_claim("cache", namespace)
    assert claim.status.phase == "Bound" and claim.spec.storage_class_name == "localkube-hostpath"
    pv = cluster.core.read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.capacity["storage"] == "2Gi"
    host_dir = Path(pv.spec.host_path.path)
    assert (host_dir / "sub" / "file").read_text() == "persisted\n"
    cluster.kubectl("delete", "pod", "writer", "-n", namespace, "--wait=true")
    cluster.kubectl("delete", "pvc", "cache", "-n", namespace, "--wait=true")

    def pv_gone() -> bool:
        names = {v.metadata.name for v in cluster.core.list_persistent_volume().items}
        return pv.metadata.name not in names

    kubetest.wait_for(pv_gone, 30, what=f"released volume {pv.metadata.name} deleted")
    assert not host_dir.exists()


@pytest.mark.localstack("mounts a directory of this host (hostPath) and reads what the pod wrote there")
def test_delete_runs_prestop_then_sigterm_within_grace(
    cluster: kubetest.Cluster, namespace: str, tmp_path: Path
) -> None:
    script = "trap 'echo term >> /shared/order; exit 0' TERM; while true; do sleep 0.1; done"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "graceful"},
        "spec": {
            "tolerations": [GPU_TOLERATION],
            "terminationGracePeriodSeconds": 6,
            "volumes": [{"name": "shared", "hostPath": {"path": str(tmp_path), "type": "Directory"}}],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                    "lifecycle": {
                        "preStop": {
                            "exec": {"command": ["sh", "-c", "sleep 1; echo prestop >> /shared/order"]}
                        }
                    },
                }
            ],
        },
    }
    apply(cluster, namespace, pod)
    wait_pod(
        cluster,
        namespace,
        "graceful",
        lambda p: container_status(p).get("state", {}).get("running"),
        "running",
    )
    time.sleep(0.5)  # let the shell install its trap
    t0 = time.monotonic()
    cluster.kubectl("delete", "pod", "graceful", "-n", namespace, "--wait=true", timeout=30)
    elapsed = time.monotonic() - t0
    assert (tmp_path / "order").read_text().split() == ["prestop", "term"]
    assert 1.0 <= elapsed < 6 + 3, f"deletion took {elapsed:.1f}s with a 6 s grace period"


RUNS_SCRIPT = "test -f /w/flag && echo x >> /w/runs && [ $(wc -l < /w/runs) -ge 3 ]"


def test_init_container_then_job_pod_succeeds_and_failure_backs_off(
    cluster: kubetest.Cluster, namespace: str
) -> None:
    job_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job-like"},
        "spec": {
            "restartPolicy": "OnFailure",
            "tolerations": [GPU_TOLERATION],
            "volumes": [{"name": "w", "emptyDir": {}}],
            "initContainers": [
                {
                    "name": "prep",
                    "image": "busybox:1",
                    "command": ["sh", "-c", "echo ready > /w/flag"],
                    "volumeMounts": [{"name": "w", "mountPath": "/w"}],
                },
            ],
            "containers": [
                # Fails twice (runs counted in the volume), then succeeds: OnFailure restarts it.
                {
                    "name": "main",
                    "image": "busybox:1",
                    "command": ["sh", "-c", RUNS_SCRIPT],
                    "volumeMounts": [{"name": "w", "mountPath": "/w"}],
                },
            ],
        },
    }
    apply(cluster, namespace, job_pod)
    pod = wait_pod(
        cluster, namespace, "job-like", lambda p: p["status"].get("phase") == "Succeeded", "Succeeded", 60
    )
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0 and init["restartCount"] == 0
    main = container_status(pod, "main")
    assert main["restartCount"] == 2 and main["state"]["terminated"]["reason"] == "Completed"
    assert main["lastState"]["terminated"]["exitCode"] == 1
    events = cluster.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=job-like"
    ).items
    assert any(e.reason == "BackOff" for e in events)


@pytest.mark.localstack("the image localhost/http-echo is the images file's echo server")
def test_liveness_failure_restarts_container(cluster: kubetest.Cluster, namespace: str) -> None:
    pod = echo_pod(
        "flaky",
        ["--fail-health-after", "2"],
        livenessProbe={
            "httpGet": {"path": "/healthz", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    )
    apply(cluster, namespace, pod)
    pod = wait_pod(
        cluster,
        namespace,
        "flaky",
        lambda p: container_status(p).get("restartCount", 0) >= 1,
        "restart after liveness failure",
        timeout=40,
    )
    events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=flaky").items
    assert any(e.reason == "Killing" and "failed liveness probe" in e.message for e in events)
    assert any(e.reason == "Unhealthy" and "Liveness probe failed" in e.message for e in events)


TALKER_SCRIPT = "if [ -f /w/ran ]; then echo second; else touch /w/ran; echo first; exit 1; fi"


def test_kubectl_logs_through_the_kubelet_api(cluster: kubetest.Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "talker"},
        "spec": {
            "restartPolicy": "OnFailure",
            "tolerations": [GPU_TOLERATION],
            "volumes": [{"name": "w", "emptyDir": {}}],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1",
                    # First run says "first" and fails; the second says "second" and succeeds.
                    "command": ["sh", "-c", TALKER_SCRIPT],
                    "volumeMounts": [{"name": "w", "mountPath": "/w"}],
                }
            ],
        },
    }
    apply(cluster, namespace, pod)
    wait_pod(cluster, namespace, "talker", lambda p: p["status"].get("phase") == "Succeeded", "Succeeded")
    assert cluster.kubectl("logs", "talker", "-n", namespace).stdout == "second\n"
    assert cluster.kubectl("logs", "talker", "-n", namespace, "--previous").stdout == "first\n"


@pytest.mark.localstack(
    "the image localhost/http-echo is the images file's echo server; localkube.proxy is the local "
    "stack's forwarder"
)
def test_proxy_command_forwards_to_service(cluster: kubetest.Cluster, namespace: str) -> None:
    pod = echo_pod(
        "behind", [], readinessProbe={"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "front"},
        "spec": {
            "selector": {"app": "behind"},
            "ports": [{"name": "http", "port": 8000, "targetPort": 8080}],
        },
    }
    apply(cluster, namespace, pod, service)
    kubetest.wait_for_pods_ready(cluster.api, namespace, "app=behind", 1, timeout=30)
    cmd = [sys.executable, "-m", "localkube.proxy", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
           "--service", "front", "--port", "http", "--listen", "127.0.0.1:0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("Forwarding from 127.0.0.1:"), (
            line,
            proc.stderr.read() if proc.poll() else "",
        )
        port = int(line.split()[2].rsplit(":", 1)[1])
        assert http_get(f"http://127.0.0.1:{port}/via")["pod"] == "behind"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


@pytest.mark.localstack("checks the local node agent's own waiting message for a missing ConfigMap")
def test_configmap_volume_waits_for_its_configmap(cluster: kubetest.Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader"},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [GPU_TOLERATION],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "a", "path": "x/a.txt"}]}}
            ],
            "containers": [
                {
                    "name": "r",
                    "image": "busybox:1",
                    "command": ["sh", "-c", "cat /etc/cfg/x/a.txt"],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                }
            ],
        },
    }
    apply(cluster, namespace, pod)
    wait_pod(
        cluster, namespace, "reader",
        lambda p: 'configmap "settings" not found' in waiting_message(p),
        "the pod waiting for its ConfigMap",
    )  # fmt: skip
    time.sleep(2.5)  # past the first retry: the worker must keep retrying, not give up
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=a=from-configmap")
    wait_pod(
        cluster,
        namespace,
        "reader",
        lambda p: p["status"].get("phase") == "Succeeded",
        "Succeeded",
        timeout=20,
    )
    assert cluster.kubectl("logs", "reader", "-n", namespace).stdout == "from-configmap"


SA_SCRIPT = """
from kubernetes import client, config
config.load_kube_config()
who = client.AuthenticationV1Api().create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
                                                               "kind": "SelfSubjectReview"})
print(who.status.user_info.username)
"""


@pytest.mark.localstack(
    "the python:3.11 image is this host's interpreter (with the kubernetes client) through the images file"
)
def test_pod_reaches_api_as_its_service_account(cluster: kubetest.Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "whoami"},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [GPU_TOLERATION],
            "containers": [{"name": "py", "image": "python:3.11", "command": ["python3", "-c", SA_SCRIPT]}],
        },
    }
    apply(cluster, namespace, pod)
    pod = wait_pod(
        cluster, namespace, "whoami", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"), "done"
    )
    logs = cluster.kubectl("logs", "whoami", "-n", namespace).stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    assert logs.strip() == f"system:serviceaccount:{namespace}:default"
