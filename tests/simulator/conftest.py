"""Fixtures for the simulator tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sim_helpers import Sim, launch


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    """Start simulators with extra args (model defaults to a hub id); all are stopped at teardown."""
    started: list[Sim] = []

    def start(*args: str, model: str = "bosonai/higgs-audio-v2-generation-3B-base", wait: bool = True) -> Sim:
        sim = launch(["--model", model, *args], tmp_path)
        started.append(sim)
        if wait:
            sim.wait_healthy()
        return sim

    yield start
    for sim in started:
        sim.stop()
