"""Fixtures of the chart tests: a simulator process on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chart_sim import start_simulator, stop


@pytest.fixture
def simulator() -> Iterator[str]:
    """The simulator requiring API key `k-123`."""
    proc, url = start_simulator("--api-key", "k-123")
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture
def simulator_no_key() -> Iterator[str]:
    proc, url = start_simulator()
    try:
        yield url
    finally:
        stop(proc)
