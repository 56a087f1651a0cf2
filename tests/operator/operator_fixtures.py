"""Module-scoped `operator` and `hub` fixtures for the suites that run the operator against the cluster
(reliability, security, soak): their conftests import them. tests/operator keeps its own, which also
wait for the CRD and print the operator's log on failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from operator_proc import HubProcess, OperatorProcess, hub_running, operator_running

from tests.support import kubetest


@pytest.fixture(scope="module")
def operator(
    cluster: kubetest.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with operator_running(cluster, tmp_path_factory.mktemp("operator") / "operator.log") as op:
        yield op


@pytest.fixture(scope="module")
def hub() -> Iterator[HubProcess]:
    with hub_running() as h:
        yield h
