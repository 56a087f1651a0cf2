"""Where the local cluster lives and how it is wired: paths, ports and sizes, read from the environment.

Every knob has a default and an environment variable; a bad value is reported by name, never guessed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The project root: the checkout whose hack/ (versions.txt, localkube-images.yaml), .cache/ and charts the
# local stack works with, and the {repo} placeholder of the images file. $HIGGS_REPO_ROOT sets it; by
# default it is the checkout this package was installed from editable (<root>/local-stack/localkube).
# An installed (non-editable) copy has no checkout around it: set HIGGS_REPO_ROOT then.
ROOT_ENV = "HIGGS_REPO_ROOT"
DEFAULT_REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(Exception):
    """A setting (environment variable or file) has a value we cannot use."""


def project_root(env: Mapping[str, str] | None = None) -> Path:
    """The project root ($HIGGS_REPO_ROOT, else the checkout around this package), checked: it must hold
    hack/versions.txt. A wrong root raises ConfigError naming the variable, the path and what is missing."""
    env = os.environ if env is None else env
    raw = env.get(ROOT_ENV, "").strip()
    root = Path(raw).expanduser().absolute() if raw else DEFAULT_REPO_ROOT
    marker = root / "hack" / "versions.txt"
    if not marker.is_file():
        origin = f"{ROOT_ENV}={raw!r}" if raw else f"the checkout around {Path(__file__).parent} ({root})"
        raise ConfigError(
            f"{origin} is not the project root: it has no {marker.relative_to(root)}; set {ROOT_ENV} to the "
            "directory of the higgs-k8s checkout (the one with hack/ and charts/)"
        )
    return root


def _int_env(env: Mapping[str, str], name: str, default: int, low: int, high: int, what: str) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what} (an integer {low}-{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range for {what} ({low}-{high})")
    return value


def _port_env(env: Mapping[str, str], name: str, default: int) -> int:
    return _int_env(env, name, default, 1, 65535, "a TCP port")


def _cidr_env(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    try:
        net = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a network in CIDR form such as {default} ({exc})") from None
    if net.version != 4 or net.num_addresses < 16:
        raise ConfigError(f"{name}={raw!r} must be an IPv4 network with at least 16 addresses")
    return str(net)


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The binaries cache: $HIGGS_CACHE, else $XDG_CACHE_HOME/higgs-k8s, else ~/.cache/higgs-k8s."""
    env = os.environ if env is None else env
    return Path(
        env.get("HIGGS_CACHE") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "higgs-k8s"
    )


def pod_ip_octet(env: Mapping[str, str] | None = None) -> int:
    """The second octet of the pod IPs (127.<octet>.<node + 1>.<2..254>): $HIGGS_POD_IP_OCTET, default 42.
    A second cluster on the same host (a private test cluster) takes another one, so pods never collide."""
    env = os.environ if env is None else env
    return _int_env(env, "HIGGS_POD_IP_OCTET", 42, 1, 254, "the second octet of the loopback pod IPs")


def pinned_k8s_version(repo_root: Path | None = None) -> str:
    """The Kubernetes version pinned in hack/versions.txt (the one hack/build-k8s.sh builds)."""
    versions = (repo_root or project_root()) / "hack" / "versions.txt"
    try:
        for line in versions.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "k8s":
                return fields[1]
    except OSError as exc:
        raise ConfigError(f"cannot read {versions}: {exc.strerror}") from None
    raise ConfigError(f"{versions} has no 'k8s <version>' line")


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    cache_dir: Path
    k8s_version: str
    apiserver_port: int
    etcd_port: int
    etcd_peer_port: int
    controller_manager_port: int
    scheduler_port: int
    service_cidr: str
    nodes: int
    gpus_per_node: int
    images_file: Path
    repo_root: Path = DEFAULT_REPO_ROOT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        cache = cache_dir(env)
        root = project_root(env)
        state = Path(env.get("HIGGS_CLUSTER_DIR") or root / ".cache" / "cluster")
        images = Path(env.get("HIGGS_LOCALKUBE_IMAGES") or root / "hack" / "localkube-images.yaml")
        settings = cls(
            state_dir=state.absolute(),
            cache_dir=cache.absolute(),
            k8s_version=env.get("K8S_VERSION") or pinned_k8s_version(root),
            apiserver_port=_port_env(env, "HIGGS_APISERVER_PORT", 6443),
            etcd_port=_port_env(env, "HIGGS_ETCD_PORT", 23790),
            etcd_peer_port=_port_env(env, "HIGGS_ETCD_PEER_PORT", 23800),
            controller_manager_port=_port_env(env, "HIGGS_CONTROLLER_MANAGER_PORT", 10257),
            scheduler_port=_port_env(env, "HIGGS_SCHEDULER_PORT", 10259),
            service_cidr=_cidr_env(env, "HIGGS_SERVICE_CIDR", "127.100.0.0/16"),
            nodes=_int_env(env, "HIGGS_FAKE_GPU_NODES", 2, 0, 100, "a node count"),
            gpus_per_node=_int_env(env, "HIGGS_GPUS_PER_NODE", 1, 0, 64, "a GPU count per node"),
            images_file=images.absolute(),
            repo_root=root,
        )
        settings.check_distinct_ports()
        pod_ip_octet(env)  # checked here, read by the agent (it inherits the environment)
        return settings

    # Ports and the environment variable that moves each one: used in messages that say what to do.
    def ports(self) -> dict[str, tuple[int, str]]:
        return {
            "etcd": (self.etcd_port, "HIGGS_ETCD_PORT"),
            "etcd-peer": (self.etcd_peer_port, "HIGGS_ETCD_PEER_PORT"),
            "kube-apiserver": (self.apiserver_port, "HIGGS_APISERVER_PORT"),
            "kube-controller-manager": (self.controller_manager_port, "HIGGS_CONTROLLER_MANAGER_PORT"),
            "kube-scheduler": (self.scheduler_port, "HIGGS_SCHEDULER_PORT"),
        }

    def check_distinct_ports(self) -> None:
        seen: dict[int, str] = {}
        for _name, (port, var) in self.ports().items():
            if port in seen:
                raise ConfigError(
                    f"{var}={port} is the same port as {seen[port]}; give each component its own"
                )
            seen[port] = var

    # --- derived paths -------------------------------------------------------------------------------
    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def etcd_data_dir(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def agent_state_dir(self) -> Path:
        return self.state_dir / "agent"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        return self.state_dir / f"{component}.kubeconfig"

    @property
    def tools_bin(self) -> Path:
        """etcd, kubectl and helm (hack/install-tools.sh)."""
        return self.cache_dir / "bin"

    @property
    def k8s_bin(self) -> Path:
        """kube-apiserver, kube-controller-manager, kube-scheduler (hack/build-k8s.sh)."""
        return self.cache_dir / "k8s" / self.k8s_version / "bin"

    @property
    def first_service_ip(self) -> str:
        """The ClusterIP of the `kubernetes` Service: it must be in the apiserver's certificate."""
        return str(ipaddress.ip_network(self.service_cidr)[1])

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"
