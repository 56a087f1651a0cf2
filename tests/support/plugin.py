"""Shared fixtures: the local Kubernetes cluster (session) and a fresh namespace per test.

Tests that use them are marked `cluster`. The cluster fixture starts the cluster when none is up
(`higgs-localkube up`, idempotent) and fails with the CLI's message if it cannot: no silent skip.
"""

from __future__ import annotations

import re
import secrets
import warnings
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import kubetest


@pytest.fixture(scope="session")
def cluster() -> kubetest.Cluster:
    try:
        cluster = kubetest.ensure_cluster()
        for what in kubetest.clear_leftovers(cluster):
            warnings.warn(f"removed from the local cluster before the tests: {what}", stacklevel=1)
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
    return cluster


def _namespace_name(test_name: str) -> str:
    short = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")[:24].strip("-")
    return f"t-{short or 'x'}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: kubetest.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace `t-<test>-<random>`, with its default ServiceAccount ready; deleted afterwards."""
    core = client.CoreV1Api(cluster.api)
    name = _namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={kubetest.NAMESPACE_LABEL: "true"}))
    )
    # Pods are refused until the serviceaccount controller has made `default` in the new namespace.
    kubetest.wait_for(
        lambda: core.read_namespaced_service_account("default", name),
        timeout=30,
        what=f"ServiceAccount default in namespace {name}",
    )
    yield name
    try:
        # Background deletion: the namespace controller finishes it; the test does not wait.
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise
