"""Malformed HiggsDeployment resources are refused by the real API server (CRD schema + CEL rules, strict
field validation) with a message naming the field. Cases: cases/resources/*.yaml (complements the
operator's own INVALID list in tests/operator/test_cluster_operator.py)."""

from __future__ import annotations

import pytest
import yaml

from tests.support import kubetest
from tests.support.cases import file_cases

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

RESOURCE_CASES = file_cases("resources", "spec")
HFTOKEN = {"hfToken": {"secretRef": {"name": "hf-token"}}}


def _resource(spec: dict) -> str:
    body = {
        "apiVersion": "audio.higgs.dev/v1alpha1",
        "kind": "HiggsDeployment",
        "metadata": {"name": "bad-input"},
        "spec": {**HFTOKEN, **spec},
    }
    return yaml.safe_dump(body)


def _dry_run(cluster: kubetest.Cluster, namespace: str, spec: dict):
    return cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=_resource(spec), check=False,
    )  # fmt: skip


def test_malformed_resources_are_refused_naming_the_field(
    cluster: kubetest.Cluster, crd: None, namespace: str
) -> None:
    # One namespace for all cases (a namespace per case would cost seconds each on this cluster).
    failures = []
    for case in RESOURCE_CASES:
        proc = _dry_run(cluster, namespace, case.document)
        if proc.returncode == 0:
            failures.append(f"{case.name}: accepted {case.document}")
        elif case.expect not in proc.stderr:
            failures.append(f"{case.name}: error does not name {case.expect}: {proc.stderr.strip()}")
    assert not failures, "\n".join(failures)
    assert _dry_run(cluster, namespace, {"replicas": 1}).returncode == 0, "the valid baseline is refused"


def test_resource_cases_are_distinct_from_the_operator_tests() -> None:
    from tests.support.higgsdeployment import INVALID

    # Same field with another fault (a maximum, a wrong type) is a different case; the same spec is not.
    theirs = [spec for spec, _ in INVALID]
    dup = [c.name for c in RESOURCE_CASES if c.document in theirs]
    assert not dup, f"already covered by tests/operator/test_cluster_operator.py: {dup}"


def test_at_least_twenty_cases_in_total() -> None:
    assert len(RESOURCE_CASES) + len(file_cases("values", "values")) >= 20


def test_case_names_are_unique() -> None:
    names = [c.name for c in RESOURCE_CASES]
    assert len(names) == len(set(names))


# Cache and scaling combinations the CRD's rules must let through (the refused ones are cases/resources/
# rwo-* and rwop-*): a shared or per-pod cache scales out; a one-node cache runs one pod without surge.
ACCEPTED_CACHE_SCALING = [
    {
        "replicas": 3,
        "modelCache": {"pvc": {"accessModes": ["ReadWriteMany"]}},
        "strategy": {"type": "RollingUpdate"},
    },
    {"autoscaling": {"maxReplicas": 4, "targetWaitingRequestsPerReplica": 1}, "modelCache": {"mode": "none"}},
    {
        "replicas": 2,
        "modelCache": {"pvc": {"create": False, "existingClaim": "m", "accessModes": ["ReadOnlyMany"]}},
    },
    {"replicas": 2, "modelCache": {"mode": "existing", "existing": {"hostPath": "/models"}}},
    {"replicas": 1, "strategy": {"type": "Recreate"}},
    {"autoscaling": {"maxReplicas": 1, "targetWaitingRequestsPerReplica": 1}},
    {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}},
    {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 1}}},
]


def test_cache_and_scaling_combinations_that_work_are_accepted(
    cluster: kubetest.Cluster, crd: None, namespace: str
) -> None:
    refused = []
    for spec in ACCEPTED_CACHE_SCALING:
        proc = _dry_run(cluster, namespace, spec)
        if proc.returncode != 0:
            refused.append(f"{spec}: {proc.stderr.strip()}")
    assert not refused, "\n".join(refused)
