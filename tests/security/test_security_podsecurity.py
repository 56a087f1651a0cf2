"""Pod Security "restricted": the serving chart's pods are admitted by a namespace that enforces it.

The API server's PodSecurity admission judges Pods (for a Deployment it only warns), so the test builds a
Pod from the rendered Deployment's pod template and creates it with --dry-run=server: admission runs in
full, nothing is scheduled. The memory-backed /dev/shm emptyDir is an allowed volume type under restricted.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.support import chart as ck
from tests.support import kubetest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

ENFORCE = "pod-security.kubernetes.io/enforce"
VALUE_SETS = {
    "chart-defaults": [],
    "values-local": [ck.EXAMPLES / "values-local.yaml"],
}


@pytest.fixture
def restricted_ns(cluster: kubetest.Cluster, namespace: str) -> str:
    cluster.kubectl("label", "namespace", namespace, f"{ENFORCE}=restricted", f"{ENFORCE}-version=latest")
    return namespace


def _pods_of(objects: list[dict], namespace: str, cluster: kubetest.Cluster) -> list[dict]:
    """A Pod per Deployment or Job pod template, plus the chart's own (test hook) Pods; their
    ServiceAccount is created for real (the ServiceAccount admission plugin looks it up)."""
    for sa in ck.by_kind(objects, "ServiceAccount"):
        sa = copy.deepcopy(sa)
        sa["metadata"]["namespace"] = namespace
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sa))
    pods = []
    for deployment in ck.by_kind(objects, "Deployment") + ck.by_kind(objects, "Job"):
        template = deployment["spec"]["template"]
        meta = {"name": f"{deployment['metadata']['name']}-psa", "namespace": namespace}
        meta["labels"] = template["metadata"].get("labels", {})
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
    for pod in ck.by_kind(objects, "Pod"):
        pod = copy.deepcopy(pod)
        pod["metadata"]["namespace"] = namespace
        pod["metadata"].pop("annotations", None)  # helm hook annotations do not matter here
        pods.append(pod)
    assert pods, "the chart rendered no pod"
    return pods


def _create_dry_run(cluster: kubetest.Cluster, pod: dict):
    return cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_pods_are_admitted_under_restricted(
    cluster: kubetest.Cluster, restricted_ns: str, value_set: str
) -> None:
    objects = ck.render(files=VALUE_SETS[value_set], namespace=restricted_ns)
    pod_spec = ck.deployment_pod(objects)
    assert any((v.get("emptyDir") or {}).get("medium") == "Memory" for v in pod_spec.get("volumes", [])), (
        "expected the memory-backed /dev/shm emptyDir the chart documents"
    )
    refused = []
    for pod in _pods_of(objects, restricted_ns, cluster):
        proc = _create_dry_run(cluster, pod)
        if proc.returncode != 0:
            refused.append(f"{pod['metadata']['name']}: {proc.stderr.strip()}")
    assert not refused, "\n".join(refused)


def test_restricted_namespace_really_enforces(cluster: kubetest.Cluster, restricted_ns: str) -> None:
    """Control: the same pod made root-capable is refused, with PodSecurity's message naming the rule."""
    pod = _pods_of(ck.render(namespace=restricted_ns), restricted_ns, cluster)[0]
    server = ck.container(pod["spec"], "server")
    server["securityContext"] = {**server.get("securityContext", {}), "allowPrivilegeEscalation": True}
    pod["spec"]["securityContext"] = {**pod["spec"].get("securityContext", {}), "runAsNonRoot": False}
    proc = _create_dry_run(cluster, pod)
    assert proc.returncode != 0, "a privilege-escalating pod was admitted in a restricted namespace"
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
    assert "allowPrivilegeEscalation" in proc.stderr and "runAsNonRoot" in proc.stderr, proc.stderr


def _render_chart(cluster: kubetest.Cluster, chart: str, namespace: str, *sets: str) -> list[dict]:
    args = ["template", "psa", str(ck.REPO_ROOT / "charts" / chart), "-n", namespace]
    for value in sets:
        args += ["--set", value]
    return [o for o in yaml.safe_load_all(cluster.helm(*args).stdout) if o]


@pytest.mark.parametrize(
    ("chart", "sets"),
    [
        ("higgs-loadtest", ["host=http://tts-higgs-audio:8000"]),
        ("higgs-loadtest", ["host=http://tts-higgs-audio:8000", "podSecurityContext=null"]),
        ("higgs-operator", []),
    ],
    ids=["loadtest-jobs", "loadtest-jobs-no-pod-context", "operator-and-its-test-pod"],
)
def test_other_charts_pods_are_admitted_under_restricted(
    cluster: kubetest.Cluster, restricted_ns: str, chart: str, sets: list[str]
) -> None:
    """The load test's master and worker Jobs, the operator and the operator chart's test pod."""
    objects = _render_chart(cluster, chart, restricted_ns, *sets)
    pods = _pods_of(objects, restricted_ns, cluster)
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]  # master + workers; operator + its test
    refused = []
    for pod in pods:
        proc = _create_dry_run(cluster, pod)
        if proc.returncode != 0:
            refused.append(f"{pod['metadata']['name']}: {proc.stderr.strip()}")
    assert not refused, "\n".join(refused)
