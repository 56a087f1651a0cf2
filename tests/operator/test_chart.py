"""charts/higgs-operator: renders, RBAC grants exactly what the operator uses, CRD is well-formed."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from higgs_operator.constants import GROUP, KIND, PLURAL
from higgs_operator.permissions import required_rules
from tests.support import chart as ck
from tests.support import k8s_schemas
from tests.support.crds import THIRD_PARTY_GROUPS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "higgs-operator"
pytestmark = pytest.mark.skipif(shutil.which("helm") is None, reason="helm not on PATH")


def render(*args: str) -> list[dict]:
    out = subprocess.run(
        ["helm", "template", "op", str(CHART), "-n", "higgs-system", "--kube-version", "1.35.0", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def granted(*roles: dict) -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    out.setdefault((group, res), set()).update(rule["verbs"])
    return {k: frozenset(v) for k, v in out.items()}


def test_rbac_is_exactly_what_the_operator_uses():
    docs = render()
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert granted(role) == required_rules()
    assert not any("*" in v for v in granted(role).values())
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]


def test_namespaced_watch_confines_rbac_to_the_watched_namespaces():
    docs = render("--set", "watchNamespaces={a,b}")
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole")
    # Cluster-wide: only reading CRDs and namespaces (kopf's scanning), nothing namespaced.
    assert set(granted(cluster_role)) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("", "namespaces"),
    }
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"a", "b", "higgs-system"}
    wanted = {k: v for k, v in required_rules().items() if k[1] != "clusterkopfpeerings"}
    assert granted(roles["a"], cluster_role) == granted(roles["b"], cluster_role) == wanted
    # The release's namespace only for reading the Secrets mirrored tokens are copied from.
    assert granted(roles["higgs-system"]) == {("", "secrets"): frozenset({"get"})}
    for ns, binding in bindings.items():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[ns]["metadata"]["name"],
        }
        assert binding["subjects"][0]["namespace"] == "higgs-system"


def test_two_replicas_with_peering_and_probes():
    docs = render()
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 2
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--peering=higgs-operator" in c["args"] and "--all-namespaces" in c["args"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert any(d["kind"] == "ClusterKopfPeering" for d in docs)


def test_namespaced_watch_renders_kopfpeerings():
    docs = render("--set", "watchNamespaces={a,b}")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=a" in args and "--namespace=b" in args and "--all-namespaces" not in args
    assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "KopfPeering") == ["a", "b"]


def test_schema_rejects_bad_values():
    proc = subprocess.run(
        ["helm", "template", "op", str(CHART), "--set", "image.tag=latest"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "tag" in proc.stderr


def test_crd_names_subresources_columns():
    crd = yaml.safe_load((CHART / "crds" / f"{PLURAL}.{GROUP}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == KIND
    assert set(crd["spec"]["names"]["shortNames"]) == {"hd", "higgs"}
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready",
        "Phase",
        "Model",
        "Endpoint",
        "Reason",
        "Message",
        "Age",
    ]
    wide_only = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) > 0]
    assert wide_only == ["Message"]  # `kubectl get hd -o wide`


@pytest.mark.parametrize("case", sorted(ck.operator_cases("higgs-system")))
def test_rendered_objects_valid_against_kubernetes_schemas(case):
    docs = render("--include-crds", *ck.operator_cases("higgs-system")[case])
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole"} <= kinds
    if case == "optional-parts-on":
        assert {"ServiceMonitor", "Role", "KopfPeering"} <= kinds
    # Custom resources (kopf's peerings, ServiceMonitor): the dry-run of tests/chart/test_chart_crd_dry_run.py.
    skip = {"kopf.dev", *THIRD_PARTY_GROUPS}
    errors = k8s_schemas.failures("higgs-operator", case, docs, ck.K8S_VERSIONS, skip_groups=skip)
    assert not errors, "\n".join(errors)


def test_operator_asks_the_api_server_for_its_version_unless_overridden():
    """Under `helm template`/GitOps .Capabilities.KubeVersion is Helm's default, not the cluster's: the
    chart passes no --kube-version, so the operator reads the API server's (kube.ServerVersion)."""

    def args(*values: str) -> list[str]:
        docs = render(*values)
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        return deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    assert not [a for a in args() if a.startswith("--kube-version")]
    assert "--kube-version=1.31.2" in args("--set", "kubeVersion=v1.31.2")
    with pytest.raises(subprocess.CalledProcessError):
        render("--set", "kubeVersion=latest")


def test_helm_test_pod_is_restricted_with_resources():
    for extra in ((), ("--set", "podSecurityContext=null", "--set", "securityContext=null")):
        pod = next(d for d in render(*extra) if d["kind"] == "Pod")["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert "emptyDir" in pod["volumes"][0] and container["volumeMounts"][0]["mountPath"] == "/tmp"


def test_namespaced_watch_needs_no_cluster_wide_secret_access():
    docs = render("--set", "watchNamespaces={a,b}")
    for cluster_role in (d for d in docs if d["kind"] == "ClusterRole"):
        for rule in cluster_role["rules"]:
            assert "secrets" not in rule["resources"] and "*" not in rule["resources"], rule
    secret_roles = {
        d["metadata"]["namespace"]
        for d in docs
        if d["kind"] == "Role" and any("secrets" in r["resources"] for r in d["rules"])
    }
    assert secret_roles == {"a", "b", "higgs-system"}
