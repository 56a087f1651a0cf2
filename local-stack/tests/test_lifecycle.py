"""up/down/status of a private cluster (its own state directory, ports and service range), so crashes
and port conflicts are exercised without disturbing the shared cluster other tests use."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from localkube.daemons import all_processes, is_running
from localkube.ports import listeners_on
from tests.support import kubetest
from tests.support.private_cluster import Private, private_env, processes_of

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.localstack("starts, kills and restarts private local control planes"),
    pytest.mark.timeout(300),
]

GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    state = tmp_path_factory.mktemp("localkube") / "cluster"
    cluster = Private(state, private_env(state))
    cluster.up()
    yield cluster
    cluster.run("down", "--purge", timeout=120)
    leftovers = processes_of(state)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"down --purge left processes running: {leftovers}"


def test_up_again_is_quick_and_says_so(private: Private) -> None:
    started = time.monotonic()
    proc = private.up()
    assert "already up and healthy" in proc.stdout
    assert f"export KUBECONFIG={private.state_dir / 'kubeconfig'}" in proc.stdout
    assert time.monotonic() - started < 15
    status = private.run("status", timeout=60)
    assert status.returncode == 0, status.stdout
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node-agent"):
        assert any(line.startswith(name) and " ok " in line for line in status.stdout.splitlines()), (
            status.stdout
        )
    assert "gpu-node-0" in status.stdout


def test_everything_listens_on_loopback_only(private: Private) -> None:
    ours = set(processes_of(private.state_dir))
    ports = {int(private.env[v]) for v in ("HIGGS_APISERVER_PORT", "HIGGS_ETCD_PORT", "HIGGS_SCHEDULER_PORT")}
    listening = [lst for lst in listeners_on(set(range(1, 65536))) if lst.pid in ours]
    assert ports <= {lst.port for lst in listening}, listening
    assert all(lst.address.startswith("127.") for lst in listening), listening


def test_up_recovers_after_apiserver_is_killed(private: Private) -> None:
    core = private.core()
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata={"name": "survivor"}, data={"a": "1"})
    )
    others = {c: private.pid(c) for c in ("etcd", "kube-controller-manager", "kube-scheduler", "node-agent")}
    apiserver = private.pid("kube-apiserver")
    os.kill(apiserver, signal.SIGKILL)
    kubetest.wait_for(lambda: not is_running(apiserver), 10, what="the apiserver to die")

    status = private.run("status", timeout=60)
    assert status.returncode == 3
    assert any(line.startswith("kube-apiserver") and " no " in line for line in status.stdout.splitlines())

    proc = private.up()
    assert "recovering: kube-apiserver was not running" in proc.stdout
    assert private.pid("kube-apiserver") != apiserver
    # Data in etcd survived; the other components were kept, not restarted.
    assert private.core().read_namespaced_config_map("survivor", "default").data == {"a": "1"}
    assert {c: private.pid(c) for c in others} == others


def test_up_recovers_when_everything_was_killed_and_ignores_foreign_pids(private: Private) -> None:
    """A machine crash leaves every pid file behind; one now names an unrelated live process."""
    pids = {
        c: private.pid(c) for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    }
    agent_children = [p.pid for p in all_processes() if p.ppid == private.pid("node-agent")]
    for pid in [private.pid("node-agent"), *pids.values(), *agent_children]:
        os.kill(pid, signal.SIGKILL)
    foreign = subprocess.Popen(["sleep", "120"])
    try:
        (private.state_dir / "run" / "etcd.pid").write_text(f"{foreign.pid}\n")
        proc = private.up()
        assert "recovering: etcd was not running (stale pid file" in proc.stdout
        assert foreign.poll() is None, "up must never kill a process that is not the cluster's"
        assert private.pid("etcd") != foreign.pid
        nodes = private.core().list_node().items
        assert [n.metadata.name for n in nodes] == ["gpu-node-0"]
    finally:
        foreign.kill()
        foreign.wait()


def _echo_pod(name: str, port: int) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="echo",
                    image="localhost/http-echo:1",
                    args=["--port", str(port)],
                    resources=client.V1ResourceRequirements(limits={GPU: "1"}),
                    readiness_probe=client.V1Probe(
                        http_get=client.V1HTTPGetAction(path="/healthz", port=port), period_seconds=1
                    ),
                )
            ],
            tolerations=[client.V1Toleration(key=GPU, operator="Exists", effect="NoSchedule")],
        ),
    )


def test_down_stops_pod_processes_and_up_brings_the_nodes_back(private: Private) -> None:
    core = private.core()
    port = random.randint(20000, 29999)  # the shared cluster's pods may use the same loopback IPs
    core.create_namespaced_pod("default", _echo_pod("echo", port))
    pods = kubetest.wait_for_pods_ready(core.api_client, "default", "app=echo", 1, timeout=90)
    pod_ip = pods[0].status.pod_ip
    assert pod_ip.startswith("127.")
    assert any(lst.address == pod_ip for lst in listeners_on({port})), "the pod's process listens on its IP"

    started = time.monotonic()
    down = private.run("down", timeout=120)
    took = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert "stopped node-agent" in down.stdout
    assert "child process(es) behind" not in down.stdout, "the agent must stop its pods on SIGTERM"
    assert not any(lst.address == pod_ip for lst in listeners_on({port})), "pod process still listening"
    assert processes_of(private.state_dir) == []
    assert took < 60
    status = private.run("status", timeout=60)
    assert status.returncode == 3

    up = private.up()
    assert "1 nodes Ready" in up.stdout, up.stdout
    # The node is Ready because the agent posted it again, not because of the status left in etcd.
    node = private.core().read_node("gpu-node-0")
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert time.time() - ready.last_heartbeat_time.timestamp() < 120


def test_port_taken_by_another_process_gives_one_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    env = private_env(state, nodes=0)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    env["HIGGS_APISERVER_PORT"] = str(port)
    try:
        proc = kubetest.localkube("up", env=env, timeout=120)
    finally:
        blocker.close()
    assert proc.returncode == 1
    error = proc.stderr.strip()
    assert error.startswith(f"ERROR [ports]: port {port} (kube-apiserver) is already in use on 127.0.0.1")
    assert f"by pid {os.getpid()} (" in error
    assert "HIGGS_APISERVER_PORT=<port>" in error
    assert "\n" not in error and "Traceback" not in error
    assert processes_of(state) == [], "nothing may be left running after a refused start"
