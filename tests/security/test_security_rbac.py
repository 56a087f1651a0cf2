"""Least privilege of the operator: a `kubectl auth can-i --as=<operator ServiceAccount>` matrix against the
RBAC that charts/higgs-operator installs (ServiceAccount, ClusterRole, ClusterRoleBinding applied for real)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import yaml

from tests.support import kubetest
from tests.support.operator import REPO

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
OTHER_NS = "kube-system"  # a namespace the operator has no business in when told to watch one namespace

# (verb, resource, namespace or "*" for --all-namespaces or "" for cluster-scoped): what the operator uses.
NEEDED = [
    ("list", "higgsdeployments.audio.higgs.dev", "*"),
    ("watch", "higgsdeployments.audio.higgs.dev", "*"),
    ("patch", "higgsdeployments.audio.higgs.dev/status", "{ns}"),
    ("update", "higgsdeployments.audio.higgs.dev/finalizers", "{ns}"),
    ("create", "deployments.apps", "{ns}"),
    ("patch", "deployments.apps", "{ns}"),
    ("delete", "deployments.apps", "{ns}"),
    ("patch", "deployments.apps/scale", "{ns}"),
    ("create", "services", "{ns}"),
    ("create", "configmaps", "{ns}"),
    ("get", "secrets", "{ns}"),
    ("watch", "secrets", "{ns}"),
    ("list", "pods", "{ns}"),
    ("create", "events", "{ns}"),
    ("create", "poddisruptionbudgets.policy", "{ns}"),
]
# Never needed: each would turn an operator compromise into a cluster compromise.
FORBIDDEN = [
    ("create", "pods/exec", "{ns}"),
    ("create", "pods", "{ns}"),  # it makes Deployments, never bare pods
    ("delete", "pods", "{ns}"),
    ("update", "nodes", ""),
    ("delete", "nodes", ""),
    ("patch", "nodes", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", "{ns}"),
    ("impersonate", "serviceaccounts", "{ns}"),
    ("create", "serviceaccounts/token", "{ns}"),
    ("delete", "namespaces", ""),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("update", "higgsdeployments.audio.higgs.dev", "{ns}"),  # only its own annotations, by patch
    ("delete", "higgsdeployments.audio.higgs.dev", "{ns}"),
    ("update", "deployments.apps", "{ns}"),  # server-side apply is a patch
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", ""),
    ("get", "nodes/proxy", ""),
]


def _install_rbac(cluster: kubetest.Cluster, namespace: str, *values: str) -> tuple[str, list[dict]]:
    """Render the chart and apply only its RBAC objects (no operator pod needed to ask can-i)."""
    release = f"rbac-{secrets.token_hex(3)}"
    rendered = cluster.helm(
        "template", release, str(REPO / "charts" / "higgs-operator"), "-n", namespace, *values
    ).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o and o["kind"] in RBAC_KINDS]
    for obj in objects:
        obj["metadata"].setdefault("namespace", namespace) if obj["kind"] in {
            "ServiceAccount",
            "Role",
            "RoleBinding",
        } else None
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    sa = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    return sa, objects


def _delete(cluster: kubetest.Cluster, objects: list[dict]) -> None:
    cluster.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(objects)
    )


def can_i(cluster: kubetest.Cluster, namespace: str, sa: str, verb: str, resource: str, where: str) -> bool:
    # "pods/exec" is a subresource; kubectl would read "TYPE/NAME", so pass it with --subresource.
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{namespace}:{sa}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    if where == "*":
        args.append("--all-namespaces")
    elif where:
        args += ["-n", where.format(ns=namespace)]
    proc = cluster.kubectl(*args, check=False)
    assert proc.stdout.strip() in {"yes", "no"}, f"kubectl auth can-i: {proc.stdout} {proc.stderr}"
    return proc.stdout.strip() == "yes"


@pytest.fixture
def operator_sa(cluster: kubetest.Cluster, namespace: str) -> Iterator[str]:
    sa, objects = _install_rbac(cluster, namespace)
    kubetest.wait_for(
        lambda: can_i(cluster, namespace, sa, "list", "pods", "{ns}"), timeout=20, what="RBAC in effect"
    )
    yield sa
    _delete(cluster, objects)


def test_operator_can_do_what_it_needs(cluster: kubetest.Cluster, namespace: str, operator_sa: str) -> None:
    denied = [
        f"{v} {r} in {w or 'cluster'}"
        for v, r, w in NEEDED
        if not can_i(cluster, namespace, operator_sa, v, r, w)
    ]
    assert not denied, f"the operator's ServiceAccount lacks: {denied}"


def test_operator_cannot_do_what_it_does_not_need(
    cluster: kubetest.Cluster, namespace: str, operator_sa: str
) -> None:
    allowed = [
        f"{v} {r} in {w or 'cluster'}"
        for v, r, w in FORBIDDEN
        if can_i(cluster, namespace, operator_sa, v, r, w)
    ]
    assert not allowed, f"the operator's ServiceAccount may also: {allowed}"


def test_namespaced_operator_cannot_touch_secrets_elsewhere(
    cluster: kubetest.Cluster, namespace: str
) -> None:
    sa, objects = _install_rbac(cluster, namespace, "--set", f"watchNamespaces={{{namespace}}}")
    try:
        kubetest.wait_for(
            lambda: can_i(cluster, namespace, sa, "get", "secrets", "{ns}"), timeout=20, what="RBAC in effect"
        )
        leaks = [
            f"{verb} {resource} in {OTHER_NS}"
            for verb, resource in (("get", "secrets"), ("delete", "secrets"), ("patch", "deployments.apps"))
            if can_i(cluster, namespace, sa, verb, resource, OTHER_NS)
        ]
        assert not leaks, f"an operator watching only {namespace} may: {leaks}"
    finally:
        _delete(cluster, objects)
