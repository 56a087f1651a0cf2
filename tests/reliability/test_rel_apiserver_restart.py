"""The API server killed (-9) under a running operator and recovered with `higgs-localkube up`: the
operator resumes (it still reconciles a change made afterwards) and creates no duplicate objects.

Runs on a private cluster (own state directory, ports and ClusterIP range: the pattern of
local-stack/tests/test_lifecycle.py), so the shared session cluster other tests use is never disturbed.
Marked `disruptive`: it runs after the other tests of the session (it kills a control plane's apiserver)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import config

from localkube.daemons import is_running
from tests.support import kubetest
from tests.support.higgsdeployment import OWNER_LABEL, create_token, get_hd, hd_body, wait_available
from tests.support.operator import REPO, HubProcess, OperatorProcess
from tests.support.private_cluster import Private, private_env, processes_of

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.disruptive,
    pytest.mark.localstack("a private local control plane whose apiserver the test kills and restarts"),
    pytest.mark.timeout(400),
]


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Private, kubetest.Cluster]]:
    state = tmp_path_factory.mktemp("localkube") / "cluster"
    priv = Private(state, private_env(state))
    priv.up()
    kubeconfig = state / "kubeconfig"
    tools_bin = Path(priv.env.get("HIGGS_CACHE", Path.home() / ".cache" / "higgs-k8s")) / "bin"
    handle = kubetest.Cluster(
        kubeconfig, config.new_client_from_config(config_file=str(kubeconfig)), tools_bin
    )
    yield priv, handle
    priv.run("down", "--purge", timeout=120)
    for pid in processes_of(state):
        os.kill(pid, signal.SIGKILL)


def test_operator_survives_apiserver_kill_without_duplicates(
    private: tuple[Private, kubetest.Cluster], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    priv, cluster = private
    ns = "apiserver-restart"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "charts/higgs-operator/crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/higgsdeployments.audio.higgs.dev", "--timeout=30s"
    )
    kubetest.wait_for(
        lambda: cluster.core.read_namespaced_service_account("default", ns), 30, what="default SA"
    )
    # The operator subprocess inherits these: the private cluster, and helm for rendering.
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("PATH", f"{cluster.tools_bin}:{os.environ.get('PATH', '')}")
    hub = HubProcess()
    op = OperatorProcess(tmp_path / "operator.log")
    try:
        op.start()
        create_token(cluster, ns)
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(hd_body("tts", hub)))
        wait_available(cluster, ns, "tts", timeout=150)
        uid = get_hd(cluster, ns, "tts")["metadata"]["uid"]

        apiserver = priv.pid("kube-apiserver")
        os.kill(apiserver, signal.SIGKILL)
        kubetest.wait_for(lambda: not is_running(apiserver), 10, what="the apiserver to die")
        time.sleep(3)  # the operator's watches fail and retry meanwhile
        t0 = time.monotonic()
        proc = priv.up()
        assert "recovering: kube-apiserver" in proc.stdout, proc.stdout
        recovered = time.monotonic() - t0
        assert op.proc is not None and op.proc.poll() is None, f"operator died:\n{op.log()[-3000:]}"

        # The operator resumed: a change made after the restart is reconciled.
        t1 = time.monotonic()
        cluster.kubectl("scale", "hd/tts", "-n", ns, "--replicas=2")
        kubetest.wait_for(
            lambda: (get_hd(cluster, ns, "tts").get("status") or {}).get("readyReplicas") == 2,
            150,
            describe=lambda: kubetest.namespace_report(cluster.api, ns) + "\n" + op.log()[-3000:],
            what="2 ready replicas reconciled after the apiserver restart",
        )
        print(
            f"\n[figure] apiserver kill -9: `up` recovered it in {recovered:.1f} s; the operator reconciled a "
            f"scale-up {time.monotonic() - t1:.1f} s later"
        )
        sel = f"{OWNER_LABEL}={uid}"
        assert len(cluster.apps.list_namespaced_deployment(ns, label_selector=sel).items) == 1
        assert len(cluster.core.list_namespaced_service(ns, label_selector=sel).items) == 1
        assert len(cluster.apps.list_namespaced_deployment(ns).items) == 1
    finally:
        op.stop()
        hub.stop()
