"""This process's run state, held on Locust's Environment (`environment.higgs_run`, a RunState):
the config, the collected records, the worker's id and its flusher. Nothing of a run lives in module
globals; a test can build an Environment of its own and get a fresh RunState with it."""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust.env import Environment  # isort: skip

from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event

from higgs_load.collector import Collector
from higgs_load.run_config import DEFAULT_HOST, RunConfig, build_config, with_server

STATE_ATTR = "higgs_run"  # the attribute of Locust's Environment that holds the RunState


@dataclass
class RunState:
    """One process's run: built at Locust's init (higgs_load.listeners), reset at each test start."""

    config: RunConfig | None = None  # None until built from the options; dropped to be rebuilt
    collector: Collector = field(default_factory=Collector)
    worker_id: str = "local"  # a worker's client id once its test starts: each record's `worker`
    flusher: gevent.Greenlet | None = None  # worker: sends record batches to the master
    flusher_stop: gevent.event.Event | None = None
    capacity: Any = None  # --shape capacity: its CapacityController (higgs_load.capacity_shape)
    cluster: Any = None  # --higgsdeployment: the ClusterView sampling it (higgs_load.cluster_view)


def state_of(environment: Environment) -> RunState:
    """The RunState of this Environment, created on first use."""
    state = getattr(environment, STATE_ATTR, None)
    if not isinstance(state, RunState):
        state = RunState()
        setattr(environment, STATE_ATTR, state)
    return state


def config_of(environment: Environment, *, server: bool = True) -> RunConfig:
    """The run's config, built once from the options; with `server`, also what the server is (its API,
    hence the default mix) and its voice list."""
    state = state_of(environment)
    if state.config is None:
        o = environment.parsed_options
        if o is None:
            raise ValueError("no parsed options: run under `locust -f loadtests/locustfile.py`")
        cfg = build_config(o)
        if server:
            host = environment.host or DEFAULT_HOST
            cfg = with_server(cfg, host, getattr(o, "tags", None), getattr(o, "exclude_tags", None))
        state.config = cfg
    return state.config
