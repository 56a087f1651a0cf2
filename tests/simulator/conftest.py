"""Fixtures for the simulator tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.simulator import Fleet, Sim, launch


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    """Start simulators with extra args (model defaults to a hub id); all are stopped at teardown."""
    fleet = Fleet()

    def start(*args: str, model: str = "bosonai/higgs-audio-v2-generation-3B-base", wait: bool = True) -> Sim:
        return fleet.add(launch(["--model", model, *args], tmp_path), wait)

    yield start
    fleet.stop()
