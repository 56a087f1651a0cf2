"""A private local cluster: its own state directory, ports and ClusterIP range, so tests can crash and
restart a control plane without disturbing the shared cluster other tests use."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from localkube.daemons import all_processes
from tests.support import kubetest
from tests.support.ports import free_ports


def private_env(state_dir: Path, nodes: int = 1) -> dict[str, str]:
    etcd, peer, api, cm, sched = free_ports(5)
    return {
        **os.environ,
        "HIGGS_CLUSTER_DIR": str(state_dir),
        "HIGGS_ETCD_PORT": str(etcd),
        "HIGGS_ETCD_PEER_PORT": str(peer),
        "HIGGS_APISERVER_PORT": str(api),
        "HIGGS_CONTROLLER_MANAGER_PORT": str(cm),
        "HIGGS_SCHEDULER_PORT": str(sched),
        # Another ClusterIP range than the shared cluster's, so the two service proxies never collide.
        "HIGGS_SERVICE_CIDR": "127.101.0.0/16",
        "HIGGS_FAKE_GPU_NODES": str(nodes),
    }


def processes_of(state_dir: Path) -> list[int]:
    marker = f"{state_dir}/"
    return [p.pid for p in all_processes() if marker in p.cmdline and p.pid != os.getpid()]


@dataclass
class Private:
    state_dir: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return kubetest.localkube(*args, env=self.env, timeout=timeout)

    def up(self) -> subprocess.CompletedProcess[str]:
        proc = self.run("up")
        assert proc.returncode == 0, f"up failed:\n{proc.stderr}\n{proc.stdout}"
        return proc

    def pid(self, component: str) -> int:
        return int((self.state_dir / "run" / f"{component}.pid").read_text())

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(config.new_client_from_config(config_file=str(self.state_dir / "kubeconfig")))
