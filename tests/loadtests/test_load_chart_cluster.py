"""charts/higgs-loadtest in the local cluster: master + 2 workers against a simulator Deployment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "higgs-loadtest"
MODEL = "higgs-audio-v2-generation-3B-base"
SIMULATOR = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sim}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: sim}}}}
  template:
    metadata: {{labels: {{app: sim}}}}
    spec:
      tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
      containers:
        - name: sim
          image: localhost/higgs-audio-simulator:0.1.0
          args: [--model, bosonai/higgs-audio-v2-generation-3B-base, --served-model-name, {MODEL}, --port, "8000"]
          ports: [{{containerPort: 8000, name: http}}]
          readinessProbe: {{httpGet: {{path: /health, port: 8000}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: sim}}
spec:
  selector: {{app: sim}}
  ports: [{{port: 8000, targetPort: 8000, name: http}}]
"""
# The local nodes are GPU nodes with the usual NoSchedule taint.
TOLERATIONS = "tolerations:\n  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n"


@pytest.mark.localstack("the load-test and simulator images are the local stack's images file entries")
@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_in_cluster_run_writes_the_report(cluster, namespace):
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=SIMULATOR)
    cluster.kubectl("-n", namespace, "rollout", "status", "deploy/sim", "--timeout=90s", timeout=100)
    # The ClusterIP, not the DNS name: the local node agent serves Service IPs but runs no cluster DNS.
    ip = cluster.kubectl("-n", namespace, "get", "svc", "sim", "-o", "jsonpath={.spec.clusterIP}").stdout
    cluster.helm(
        "install",
        "lt",
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"host=http://{ip}:8000",
        "--set",
        "users=4",
        "--set",
        "runTime=6s",
        "--set",
        "keepSeconds=30",
        "--set-string",
        "options.fail-on=error_rate<=0.0",
        "-f",
        "-",
        input=TOLERATIONS,
    )
    deadline = time.monotonic() + 180
    log = ""
    while time.monotonic() < deadline:
        proc = cluster.kubectl("-n", namespace, "logs", "job/lt-higgs-loadtest-master", check=False)
        log = proc.stdout
        if "locust exited" in log:
            break
        time.sleep(2)
    pods = cluster.kubectl("-n", namespace, "get", "pods", "-o", "wide", check=False).stdout
    assert "locust exited 0" in log, f"master log:\n{log[-3000:]}\npods:\n{pods}"
    # The summary printed by the master: requests from both workers, no failures, the gate met.
    assert "| requests (ok / failed) |" in log and "error_rate <= 0: 0 ok" in log, log[-3000:]
