"""charts/higgs-operator installed with helm on the local cluster: two peered replicas acting with only
the chart's RBAC run a HiggsDeployment to Available."""

from __future__ import annotations

import secrets
import shutil

import pytest
from kubernetes import client

from tests.support import kubetest
from tests.support.higgsdeployment import create_token, get_hd, hd_body, wait_available
from tests.support.operator import REPO, HubProcess

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.mark.localstack(
    "the operator image localhost/higgs-operator is the images file's mapping to this checkout; the "
    "fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it"
)
def test_helm_installed_operator_runs_a_resource(cluster: kubetest.Cluster, namespace: str):
    release = f"op-{secrets.token_hex(3)}"
    helm = shutil.which("helm") or str(cluster.tools_bin / "helm")
    hub = HubProcess()
    try:
        cluster.helm(
            "install", release, str(REPO / "charts" / "higgs-operator"), "-n", namespace,
            "--set", "image.repository=localhost/higgs-operator", "--set", "image.tag=0.1.0",
            "--set", f"watchNamespaces={{{namespace}}}",
            "--set", "extraEnv[0].name=HELM", "--set", f"extraEnv[0].value={helm}",
            "--set", "statusSeconds=1", "--set", "tests.enabled=false",
            # The local cluster has only (fake) GPU nodes, tainted like real GPU pools.
            "--set", "tolerations[0].key=nvidia.com/gpu", "--set", "tolerations[0].operator=Exists",
        )  # fmt: skip
        selector = f"app.kubernetes.io/instance={release}"
        kubetest.wait_for_pods_ready(cluster.api, namespace, selector, count=2, timeout=90)
        peering = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "kopf.dev", "v1", namespace, "kopfpeerings", "higgs-operator"
        )
        assert peering["metadata"]["name"] == "higgs-operator"

        create_token(cluster, namespace)
        cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=__import__("yaml").safe_dump(hd_body("viahelm", hub))
        )
        wait_available(cluster, namespace, "viahelm", timeout=120)
        hd = get_hd(cluster, namespace, "viahelm")
        assert hd["status"]["phase"] == "Ready"

        # Two replicas, one acting: exactly one Deployment for the resource, and no permission errors.
        assert [
            d.metadata.name
            for d in cluster.apps.list_namespaced_deployment(namespace).items
            if d.metadata.name == "viahelm"
        ] == ["viahelm"]
        logs = "".join(
            cluster.core.read_namespaced_pod_log(p.metadata.name, namespace)
            for p in cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
        )
        assert "Forbidden" not in logs and " 403" not in logs, logs[-3000:]
    except AssertionError:
        for p in cluster.core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        ).items:
            print(
                f"--- {p.metadata.name} ---\n{cluster.core.read_namespaced_pod_log(p.metadata.name, namespace)[-4000:]}"
            )
        raise
    finally:
        cluster.helm("uninstall", release, "-n", namespace, check=False)
        hub.stop()
