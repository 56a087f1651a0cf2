"""Locust's events, wired to the run: options at parser time, the run state at init, config and
collection at test start, the report at test stop, the exit code at quitting. register(events) is
called once, by the locustfile."""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust.env import Environment  # isort: skip

import logging
import sys
from typing import Any

import gevent
from locust.event import Events
from locust.runners import MasterRunner, WorkerRunner

from higgs_load.capacity_shape import run_extras, start_cluster_view
from higgs_load.messages import (
    RECORDS_MESSAGE,
    collect_final_batches,
    on_records_message,
    start_flusher,
    stop_flusher,
)
from higgs_load.options import add_options
from higgs_load.run_config import drain_s
from higgs_load.run_report import finish_run
from higgs_load.run_state import config_of, state_of

log = logging.getLogger("higgs_load")


def on_init(environment: Environment, **_kw: Any) -> None:
    state_of(environment)  # this process's RunState goes on the Environment now
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return  # a worker gets the master's options with its first spawn message
    if environment.parsed_options is None:
        return
    try:
        # A headless run knows its host now; the web UI's form may change it: the server at test start.
        config_of(environment, server=bool(environment.parsed_options.headless))
    except ValueError as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        sys.exit(2)
    if isinstance(runner, MasterRunner):
        runner.register_message(RECORDS_MESSAGE, on_records_message)


def on_test_start(environment: Environment, **_kw: Any) -> None:
    state = state_of(environment)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        state.config = None  # rebuild from the options the master just sent
        try:
            config_of(environment)
        except ValueError as exc:
            log.error("cannot start with the master's options: %s", exc)
            raise
        state.worker_id = runner.client_id
        state.collector.reset(None)
        start_flusher(environment)
        return
    if environment.web_ui is not None:
        state.config = None  # the swarm form may have changed the options: rebuild from them
    try:
        cfg = config_of(environment)
    except ValueError as exc:
        # Only the web UI can get here (the command line and a headless run's voices were checked at
        # start): a bad option in the swarm form, or voices the server does not list. The shape then
        # spawns nobody and the run ends at once.
        log.error("cannot start: %s; the run stops", exc)
        if runner is not None:
            gevent.spawn(runner.stop)
        return
    state.collector.reset(cfg.raw_out)  # before the first user (Locust spawns after test_start)
    start_cluster_view(state, cfg)  # --higgsdeployment (higgs_load.cluster_view)
    if isinstance(runner, MasterRunner):
        state.collector.worker_ids = [c.id for c in runner.clients.all]
    if cfg.shape in ("step", "sweep") and not environment.stop_timeout:
        # The last level keeps its requests in flight: at the plan's end each user finishes the request
        # it is reading (Locust's --stop-timeout, sent to the workers with the spawn), so the audio it
        # received before the level ended counts; the level's window still ends at the plan's end.
        environment.stop_timeout = drain_s(cfg)


def on_test_stop(environment: Environment, **_kw: Any) -> None:
    state = state_of(environment)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        stop_flusher(environment)  # the final batch goes before Locust's client_stopped message
        return
    cfg = state.config
    if cfg is None:
        return  # the run never started (bad options in the swarm form)
    if isinstance(runner, MasterRunner):
        collect_final_batches(runner)
    finish_run(cfg, state.collector, environment.host, more=run_extras(state, cfg, environment.host))


def on_quitting(environment: Environment, **_kw: Any) -> None:
    exit_code = state_of(environment).collector.exit_code
    if exit_code is not None and not isinstance(environment.runner, WorkerRunner):
        environment.process_exit_code = exit_code


def register(events: Events) -> None:
    """Add our listeners to Locust's events (once per process: the locustfile's import)."""
    events.init_command_line_parser.add_listener(add_options)
    events.init.add_listener(on_init)
    events.test_start.add_listener(on_test_start)
    events.test_stop.add_listener(on_test_stop)
    events.quitting.add_listener(on_quitting)
