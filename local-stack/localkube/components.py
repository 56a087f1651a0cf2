"""The daemons of the local cluster and their command lines.

Everything binds to 127.0.0.1 and speaks TLS with certificates from certs.py.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .api_checks import HttpsClient
from .certs import Pki
from .settings import Settings

SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
AGENT_MODULE = "localkube.agent"


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    port: int | None  # the port it serves (health checks, port conflicts); None for the agent
    health: Callable[[], bool]  # True once it serves correctly
    ready_timeout_s: float

    def log_path(self, settings: Settings) -> Path:
        return settings.log_dir / f"{self.name}.log"


def etcd(settings: Settings, pki: Pki) -> Component:
    client_url = f"https://127.0.0.1:{settings.etcd_port}"
    peer_url = f"https://127.0.0.1:{settings.etcd_peer_port}"
    cert, key = pki.cert("etcd-server"), pki.key("etcd-server")
    argv = (
        str(settings.tools_bin / "etcd"),
        "--name=higgs-local",
        f"--data-dir={settings.etcd_data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=higgs-local={peer_url}",
        f"--cert-file={cert}",
        f"--key-file={key}",
        "--client-cert-auth=true",
        f"--trusted-ca-file={pki.ca_cert}",
        f"--peer-cert-file={cert}",
        f"--peer-key-file={key}",
        "--peer-client-cert-auth=true",
        f"--peer-trusted-ca-file={pki.ca_cert}",
        # A throwaway dev cluster: skip fsync, which is slow on shared disks and buys nothing here.
        "--unsafe-no-fsync=true",
        # One member, no peers to wait for: a short election timeout makes it leader sooner at start.
        "--heartbeat-interval=100",
        "--election-timeout=500",
        "--log-level=warn",
    )
    client = HttpsClient(
        settings.etcd_port, pki.ca_cert, pki.cert("apiserver-etcd-client"), pki.key("apiserver-etcd-client")
    )
    return Component("etcd", argv, settings.etcd_port, lambda: client.ok("/health"), 30)


def apiserver_client(settings: Settings, pki: Pki) -> HttpsClient:
    return HttpsClient(settings.apiserver_port, pki.ca_cert, pki.cert("admin"), pki.key("admin"))


def kube_apiserver(settings: Settings, pki: Pki) -> Component:
    argv = (
        str(settings.k8s_bin / "kube-apiserver"),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={settings.apiserver_port}",
        f"--etcd-servers=https://127.0.0.1:{settings.etcd_port}",
        f"--etcd-cafile={pki.ca_cert}",
        f"--etcd-certfile={pki.cert('apiserver-etcd-client')}",
        f"--etcd-keyfile={pki.key('apiserver-etcd-client')}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert}",
        f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={settings.service_cidr}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        # The reconciler would write 127.0.0.1 into the `kubernetes` Endpoints, which the API rejects
        # ("may not be in the loopback range") every 10 s; clients reach the apiserver at 127.0.0.1 directly.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        f"--cert-dir={settings.run_dir / 'kube-apiserver'}",
        "--profiling=false",
        "--v=1",
    )
    client = apiserver_client(settings, pki)
    return Component("kube-apiserver", argv, settings.apiserver_port, lambda: client.ok("/readyz"), 90)


def _common_client_flags(settings: Settings, name: str, port: int) -> tuple[str, ...]:
    kubeconfig = settings.component_kubeconfig(name)
    return (
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={settings.run_dir / name}",
        "--leader-elect=false",  # one instance: skip the lease round trips at start
        "--profiling=false",
        "--v=1",
    )


def kube_controller_manager(settings: Settings, pki: Pki) -> Component:
    port = settings.controller_manager_port
    argv = (
        str(settings.k8s_bin / "kube-controller-manager"),
        *_common_client_flags(settings, "kube-controller-manager", port),
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={settings.service_cidr}",
        "--cluster-name=higgs-local",
    )
    client = HttpsClient(port)
    return Component("kube-controller-manager", argv, port, lambda: client.ok("/healthz"), 60)


def kube_scheduler(settings: Settings, pki: Pki) -> Component:
    port = settings.scheduler_port
    argv = (str(settings.k8s_bin / "kube-scheduler"), *_common_client_flags(settings, "kube-scheduler", port))
    client = HttpsClient(port)
    return Component("kube-scheduler", argv, port, lambda: client.ok("/healthz"), 60)


def agent_available() -> bool:
    """The fake GPU node agent is a separate module; the control plane works without it."""
    return importlib.util.find_spec(AGENT_MODULE) is not None


def node_agent(settings: Settings, pki: Pki) -> Component:
    argv = (
        sys.executable,
        "-m",
        "localkube.cli",
        "agent",
        f"--kubeconfig={settings.component_kubeconfig('agent')}",
        f"--state-dir={settings.agent_state_dir}",
        f"--nodes={settings.nodes}",
        f"--gpus-per-node={settings.gpus_per_node}",
        f"--images={settings.images_file}",
    )
    # Its readiness is "the nodes are Ready", checked by the cluster against the API.
    return Component("node-agent", argv, None, lambda: True, 60)


def control_plane(settings: Settings, pki: Pki) -> list[Component]:
    """In start order: each needs the one before it."""
    return [
        etcd(settings, pki),
        kube_apiserver(settings, pki),
        kube_controller_manager(settings, pki),
        kube_scheduler(settings, pki),
    ]
