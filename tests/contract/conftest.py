"""Fixtures of the contract suite: simulator processes started the way the chart starts the server.

Every test names the rows of docs/server-contract.md it checks with ``@pytest.mark.contract(...)``;
tests/contract/test_contract_rows.py fails when a row has no test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.contract import BASE_ARGS, StartSim
from tests.support.simulator import Fleet, Sim, launch

SLOWDOWN = "0.2"  # raw H100 steps x 0.2: a 3 s clip decodes in ~0.1 s


@pytest.fixture(scope="module")
def start_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartSim]:
    """Start simulators (the chart's flags, raw profile, plus ``extra``) for this module."""
    tmp = tmp_path_factory.mktemp("contract")
    fleet = Fleet()

    def start(*extra: str, slowdown: str = SLOWDOWN, wait: bool = True) -> Sim:
        return fleet.add(launch([*BASE_ARGS, "--sim-slowdown", slowdown, *extra], tmp), wait)

    yield start
    fleet.stop()


@pytest.fixture(scope="module")
def sim(start_sim: StartSim) -> Sim:
    """One simulator per module with the default flags."""
    return start_sim()
