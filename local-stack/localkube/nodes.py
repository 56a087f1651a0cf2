"""Fake GPU nodes: the Node objects, their status heartbeat and their Leases in kube-node-lease."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .json_client import ApiError, KubeClient

log = logging.getLogger("localkube.nodes")

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
LEASE_SECONDS = 40
KUBELET_VERSION = "v1.35.4"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    index: int
    gpus: int
    host_ip: str
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"
    ephemeral_storage: str = "100Gi"
    kubelet_port: int = 10250

    @property
    def resources(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
            GPU_RESOURCE: str(self.gpus),
        }


def node_labels(spec: NodeSpec) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "localkube-gpu-h100",
        "nvidia.com/gpu.product": GPU_PRODUCT,
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": str(spec.gpus),
        "nvidia.com/gpu.memory": "81559",
        "localkube.higgs.dev/fake-node": "true",
    }


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_conditions(ts: str, since: str) -> list[dict]:
    def cond(ctype: str, status: str, reason: str, message: str) -> dict:
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": ts,
            "lastTransitionTime": since,
        }

    return [
        cond(
            "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"
        ),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady", "localkube agent is posting ready status (fake GPU node)"),
    ]


def node_status(spec: NodeSpec, ts: str, since: str) -> dict:
    return {
        "capacity": spec.resources,
        "allocatable": spec.resources,
        "conditions": node_conditions(ts, since),
        # InternalIP only: with a Hostname address the API server would resolve the node name through
        # DNS (off the machine) to reach the kubelet API.
        "addresses": [{"type": "InternalIP", "address": spec.host_ip}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": spec.kubelet_port}},
        "nodeInfo": {
            "machineID": f"localkube-{spec.index}",
            "systemUUID": f"localkube-{spec.index}",
            "bootID": f"localkube-{spec.index}",
            "kernelVersion": "localkube",
            "osImage": "localkube fake GPU node (pods are local processes)",
            "containerRuntimeVersion": "localkube://0.1",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def node_object(spec: NodeSpec, ts: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": node_labels(spec)},
        "spec": {"taints": [GPU_TAINT]},
        "status": node_status(spec, ts, ts),
    }


def lease_object(spec: NodeSpec, node_uid: str, ts_micro: str) -> dict:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": spec.name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": spec.name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": spec.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": ts_micro},
    }


class NodeManager(threading.Thread):
    """Registers the nodes, then renews leases every ~10 s and posts node status every ~30 s."""

    def __init__(
        self, api: KubeClient, specs: list[NodeSpec], lease_period: float = 10.0, status_period: float = 30.0
    ) -> None:
        super().__init__(name="node-heartbeat", daemon=True)
        self.api = api
        self.specs = specs
        self.lease_period = lease_period
        self.status_period = status_period
        self.stopped = threading.Event()
        self.since = now()
        self.uids: dict[str, str] = {}

    def register(self, spec: NodeSpec) -> None:
        """Create the node, or bring an existing one's labels, taints and status to ours."""
        ts = now()
        try:
            created = self.api.create("/api/v1/nodes", node_object(spec, ts))
            self.uids[spec.name] = created["metadata"]["uid"]
            log.info("registered node %s (%d GPUs, %s)", spec.name, spec.gpus, spec.host_ip)
        except ApiError as exc:
            if exc.status != 409:
                raise
            existing = self.api.get(f"/api/v1/nodes/{spec.name}") or {}
            taints = [
                t
                for t in (existing.get("spec") or {}).get("taints") or []
                if t.get("key") != GPU_TAINT["key"]
            ]
            patched = self.api.patch(
                f"/api/v1/nodes/{spec.name}",
                {
                    "metadata": {"labels": node_labels(spec)},
                    "spec": {"taints": [*taints, GPU_TAINT], "unschedulable": None},
                },
            )
            self.uids[spec.name] = patched["metadata"]["uid"]
            log.info("node %s already existed: labels and taints updated", spec.name)
        self.post_status(spec)

    def post_status(self, spec: NodeSpec) -> None:
        try:
            self.api.patch(
                f"/api/v1/nodes/{spec.name}/status", {"status": node_status(spec, now(), self.since)}
            )
        except ApiError as exc:
            if exc.status == 404:  # someone deleted the node: register it again
                self.register(spec)
            else:
                raise

    def renew_lease(self, spec: NodeSpec) -> None:
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{spec.name}"
        try:
            self.api.patch(
                path,
                {
                    "spec": {
                        "holderIdentity": spec.name,
                        "leaseDurationSeconds": LEASE_SECONDS,
                        "renewTime": ts,
                    }
                },
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            uid = self.uids.get(spec.name, "")
            self.api.create(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease_object(spec, uid, ts)
            )

    def register_all(self) -> None:
        for spec in self.specs:
            self.register(spec)
            self.renew_lease(spec)

    def run(self) -> None:
        next_status = 0.0
        while not self.stopped.is_set():
            ok = False
            try:
                if len(self.uids) < len(self.specs):
                    self.register_all()
                    next_status = time.monotonic() + self.status_period
                for spec in self.specs:
                    self.renew_lease(spec)
                if time.monotonic() >= next_status:
                    for spec in self.specs:
                        self.post_status(spec)
                    next_status = time.monotonic() + self.status_period
                ok = True
            except ApiError as exc:  # API server down or restarting: keep trying, like a kubelet
                log.warning("node heartbeat failed (retrying in %.0fs): %s", self.lease_period, exc)
            self.stopped.wait(self.lease_period if ok else 2.0)

    def stop(self) -> None:
        self.stopped.set()
