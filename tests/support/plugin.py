"""The test suites' shared pytest plugin (``-p tests.support.plugin`` in pyproject's addopts).

The cluster (session) and a fresh namespace per test; the operator, the fake Hugging Face hub and the
HiggsDeployment CRD (module-scoped, for every suite that runs the operator against the cluster); the
simulator the chart and docs tests talk to.

Tests that use the cluster are marked `cluster`. Without options the cluster fixture starts the local
stack when none is up (`higgs-localkube up`, idempotent) and fails with the CLI's message if it cannot:
no silent skip. With ``--kubeconfig PATH`` (e2e mode) it uses the cluster that file names and never
starts, stops or clears anything; tests marked ``localstack("why")`` need the local stack's process
control (a private control plane, host processes pods reach on 127.0.0.1, the pods' process files)
and are skipped there with their reason. Tests marked `disruptive` run at the end of the session.
"""

from __future__ import annotations

import re
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import kubetest
from tests.support.operator import REPO, HubProcess, OperatorProcess
from tests.support.simulator import start_as_chart

SKIP_PREFIX = "needs the local stack's process control: "


# --- options, markers, order ---------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("higgs", "Higgs Audio cluster tests")
    group.addoption(
        "--kubeconfig",
        metavar="PATH",
        default=None,
        help="run the cluster tests against the cluster this kubeconfig names (e2e mode): the local "
        "stack is neither started nor cleared, and tests marked `localstack` are skipped",
    )


def e2e(config: pytest.Config) -> bool:
    """True when the tests run against a cluster named by --kubeconfig."""
    return bool(config.getoption("kubeconfig", None))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `disruptive` tests (they stop parts of a control plane) go last, keeping everyone's order.
    items[:] = [i for i in items if not i.get_closest_marker("disruptive")] + [
        i for i in items if i.get_closest_marker("disruptive")
    ]
    for item in items:
        marker = item.get_closest_marker("localstack")
        if marker is None:
            continue
        why = marker.args[0] if marker.args else marker.kwargs.get("reason")
        if not why:
            raise pytest.UsageError(
                f"{item.nodeid}: give @pytest.mark.localstack its reason: localstack('...')"
            )
        if e2e(config):
            item.add_marker(pytest.mark.skip(reason=SKIP_PREFIX + why))


# --- the cluster -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> kubetest.Cluster:
    kubeconfig = request.config.getoption("kubeconfig")
    try:
        if kubeconfig:
            return kubetest.connect_cluster(Path(kubeconfig))
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


# --- the operator, its CRD and the fake hub ------------------------------------------------------------
@pytest.fixture(scope="module")
def crd(cluster: kubetest.Cluster) -> None:
    """The HiggsDeployment CRD applied (server-side, so a rerun updates it) and Established."""
    crds = REPO / "charts" / "higgs-operator" / "crds"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/higgsdeployments.audio.higgs.dev", "--timeout=30s"
    )


@pytest.fixture(scope="module")
def operator(
    cluster: kubetest.Cluster,
    crd: None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:
    """`higgs-operator run --all-namespaces` against the cluster; its log printed if a test failed."""
    op = OperatorProcess(tmp_path_factory.mktemp("operator") / "operator.log")
    failed_before = request.session.testsfailed
    op.start()
    try:
        yield op
    finally:
        op.stop()
        if request.session.testsfailed > failed_before:
            print(f"\n--- operator log (last 6000 chars) ---\n{op.log()[-6000:]}")


@pytest.fixture(scope="module")
def hub() -> Iterator[HubProcess]:
    """The simulator's fake Hugging Face hub on a loopback port (the model download goes there)."""
    h = HubProcess()
    try:
        yield h
    finally:
        h.stop()


# --- the simulator the chart's and the docs' tests talk to ---------------------------------------------
@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a simulator requiring API key `k-123`."""
    sim = start_as_chart(tmp_path_factory.mktemp("sim"), "--api-key", "k-123")
    try:
        yield sim.url
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def simulator_no_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a simulator without an API key."""
    sim = start_as_chart(tmp_path_factory.mktemp("sim"))
    try:
        yield sim.url
    finally:
        sim.stop()
