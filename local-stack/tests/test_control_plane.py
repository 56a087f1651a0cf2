"""The shared local control plane works like a real cluster: nodes, RBAC, ServiceAccount tokens, helm,
and the real scheduler refusing a GPU request nothing can satisfy."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from localkube.settings import Settings
from tests.support import kubetest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

CHART = Path(__file__).parent / "charts" / "tiny"
GPU = "nvidia.com/gpu"


@pytest.mark.localstack("compares the nodes with the local stack's settings (fake GPU nodes and their size)")
def test_fake_gpu_nodes_are_ready_and_advertise_gpus(cluster: kubetest.Cluster) -> None:
    settings = Settings.from_env()
    nodes = cluster.core.list_node(label_selector="nvidia.com/gpu.present=true").items
    ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)]
    assert len(ready) >= settings.nodes, f"{len(ready)} Ready GPU nodes, want {settings.nodes}: {nodes}"
    for node in ready:
        assert node.status.allocatable.get(GPU) == str(settings.gpus_per_node)
        assert any(t.key == GPU and t.effect == "NoSchedule" for t in node.spec.taints or [])


@pytest.mark.localstack("checks the local stack's own admin kubeconfig (system:masters)")
def test_admin_may_do_everything(cluster: kubetest.Cluster) -> None:
    proc = cluster.kubectl("auth", "can-i", "*", "*", "--all-namespaces")
    assert proc.stdout.strip() == "yes"
    whoami = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}").stdout
    assert "system:masters" in whoami


@pytest.mark.localstack("compares the Service range with the local stack's settings")
def test_system_namespaces_and_service_cidr(cluster: kubetest.Cluster) -> None:
    names = {ns.metadata.name for ns in cluster.core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    svc = cluster.core.read_namespaced_service("kubernetes", "default")
    cidr = ipaddress.ip_network(Settings.from_env().service_cidr)
    assert ipaddress.ip_address(svc.spec.cluster_ip) in cidr
    # The controller-manager's root-ca publisher runs: pods can verify the apiserver.
    ca = cluster.core.read_namespaced_config_map("kube-root-ca.crt", "default")
    assert "BEGIN CERTIFICATE" in ca.data["ca.crt"]


def _token_client(cluster: kubetest.Cluster, token: str) -> client.ApiClient:
    admin = cluster.api.configuration
    cfg = client.Configuration()
    cfg.host = admin.host
    cfg.ssl_ca_cert = admin.ssl_ca_cert  # verify the apiserver; no client certificate: the token only
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def test_service_account_token_authenticates_and_rbac_decides(
    cluster: kubetest.Cluster, namespace: str
) -> None:
    core, rbac = cluster.core, client.RbacAuthorizationV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata={"name": "reader"}))
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(expiration_seconds=600))
    token = core.create_namespaced_service_account_token("reader", namespace, request).status.token
    assert token.count(".") == 2, "a TokenRequest returns a signed JWT"

    as_reader = client.CoreV1Api(_token_client(cluster, token))
    with pytest.raises(ApiException) as denied:
        as_reader.list_namespaced_pod(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in denied.value.body

    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata={"name": "pod-reader"},
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata={"name": "reader-reads-pods"},
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )
    # RBAC changes reach the authorizer through an informer: allow it a moment.
    kubetest.wait_for(
        lambda: as_reader.list_namespaced_pod(namespace) is not None, 15, what="list pods as reader"
    )
    with pytest.raises(ApiException) as still_denied:
        as_reader.delete_collection_namespaced_pod(namespace)
    assert still_denied.value.status == 403
    with pytest.raises(ApiException) as other_namespace:
        as_reader.list_namespaced_pod("kube-system")
    assert other_namespace.value.status == 403


@pytest.mark.localstack("compares the Service IP with the local stack's Service range")
def test_helm_install_and_uninstall(cluster: kubetest.Cluster, namespace: str) -> None:
    cluster.helm("install", "demo", str(CHART), "-n", namespace, "--set", "greeting=hi there", "--wait")
    cm = cluster.core.read_namespaced_config_map("demo-tiny", namespace)
    assert cm.data == {"greeting": "hi there"}
    svc = cluster.core.read_namespaced_service("demo-tiny", namespace)
    assert ipaddress.ip_address(svc.spec.cluster_ip) in ipaddress.ip_network(Settings.from_env().service_cidr)
    status = cluster.helm("status", "demo", "-n", namespace, "-o", "json").stdout
    assert '"status":"deployed"' in status.replace(" ", "")

    cluster.helm("uninstall", "demo", "-n", namespace, "--wait")
    assert cluster.helm("list", "-n", namespace, "-q").stdout.strip() == ""
    for read in (cluster.core.read_namespaced_config_map, cluster.core.read_namespaced_service):
        with pytest.raises(ApiException) as gone:
            read("demo-tiny", namespace)
        assert gone.value.status == 404


def _gpu_deployment(name: str, gpus: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="server",
        image="higgs-test/greedy:1",
        resources=client.V1ResourceRequirements(limits={GPU: str(gpus)}, requests={GPU: str(gpus)}),
    )
    spec = client.V1PodSpec(
        containers=[container],
        tolerations=[client.V1Toleration(key=GPU, operator="Exists", effect="NoSchedule")],
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=spec),
        ),
    )


@pytest.mark.localstack("sizes the request from the local stack's fake GPU nodes")
def test_more_gpus_than_any_node_has_stays_pending(cluster: kubetest.Cluster, namespace: str) -> None:
    settings = Settings.from_env()
    too_many = settings.gpus_per_node * max(settings.nodes, 1) + 1
    cluster.apps.create_namespaced_deployment(namespace, _gpu_deployment("greedy", too_many))

    def unschedulable_pod() -> client.V1Pod | None:
        for pod in cluster.core.list_namespaced_pod(namespace, label_selector="app=greedy").items:
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                    return pod
        return None

    pod = kubetest.wait_for(
        unschedulable_pod,
        60,
        describe=lambda: kubetest.namespace_report(cluster.api, namespace),
        what="the scheduler to mark the pod Unschedulable",
    )
    message = next(c.message for c in pod.status.conditions if c.type == "PodScheduled")
    assert f"Insufficient {GPU}" in message, message

    def failed_scheduling_event() -> list:
        events = cluster.core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling").items
        return [e for e in events if e.involved_object.name == pod.metadata.name]

    events = kubetest.wait_for(failed_scheduling_event, 30, what="a FailedScheduling event")
    assert f"Insufficient {GPU}" in events[0].message
    assert (
        events[0].source.component == "default-scheduler"
        or events[0].reporting_component == "default-scheduler"
    )
    # Still pending a little later: nothing binds it.
    latest = cluster.core.read_namespaced_pod(pod.metadata.name, namespace)
    assert latest.spec.node_name is None and latest.status.phase == "Pending"

    # The wait helpers' failure report carries what explains it: conditions, events, pod statuses.
    with pytest.raises(AssertionError) as timed_out:
        kubetest.wait_for_condition(
            cluster.api, "deployment/greedy", "Available", namespace=namespace, timeout=2
        )
    report = str(timed_out.value)
    assert "timed out after 2 s waiting for deployment/greedy condition Available=True" in report
    assert "Available=False (MinimumReplicasUnavailable" in report
    assert (
        f"pod {pod.metadata.name}: phase=Pending node=None" in report
        and "PodScheduled=False(Unschedulable)" in report
    )
    assert "Warning FailedScheduling Pod/" in report and f"Insufficient {GPU}" in report


@pytest.mark.localstack("the image localhost/http-echo is the images file's echo server")
def test_wait_helpers_see_a_deployment_become_available(cluster: kubetest.Cluster, namespace: str) -> None:
    """No GPU requested (other tests may hold the few there are); the toleration lets it onto GPU nodes."""
    labels = {"app": "echo"}
    probe = client.V1Probe(http_get=client.V1HTTPGetAction(path="/healthz", port=8080), period_seconds=1)
    spec = client.V1PodSpec(
        containers=[client.V1Container(name="echo", image="localhost/http-echo:1", readiness_probe=probe)],
        tolerations=[client.V1Toleration(key=GPU, operator="Exists", effect="NoSchedule")],
    )
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="echo", labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=spec),
        ),
    )
    cluster.apps.create_namespaced_deployment(namespace, deployment)
    pods = kubetest.wait_for_pods_ready(cluster.api, namespace, "app=echo", 2, timeout=90)
    assert len({p.status.pod_ip for p in pods}) == 2
    obj = kubetest.wait_for_condition(
        cluster.api, "deploy/echo", "Available", namespace=namespace, timeout=60
    )
    assert obj["status"]["readyReplicas"] == 2
