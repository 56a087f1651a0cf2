"""Records between processes: a worker batches its records (and dropped arrivals) to the master in
RECORDS_MESSAGE every FLUSH_INTERVAL_S, the last batch marked final; the master keeps them and, at the
end, waits for every worker's final batch before the report is built."""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust.env import Environment  # isort: skip

import logging
import time
from dataclasses import asdict
from typing import Any

import gevent
import gevent.event
from locust.rpc.protocol import Message
from locust.runners import MasterRunner, WorkerRunner

from higgs_load.records import RequestRecord
from higgs_load.run_state import state_of

log = logging.getLogger("higgs_load")
RECORDS_MESSAGE = "higgs_records"
FLUSH_INTERVAL_S = 0.5
FINAL_BATCH_WAIT_S = 10.0


def hand_in(environment: Environment, rec: RequestRecord) -> None:
    """A measured record: kept here (master or local runner), or queued for the master (worker)."""
    collector = state_of(environment).collector
    if isinstance(environment.runner, WorkerRunner):
        collector.outbox.append(asdict(rec))
    else:
        collector.keep(rec)


def count_dropped(environment: Environment, n: int) -> None:
    """Poisson arrivals dropped for lateness: counted here, or sent to the master (worker)."""
    collector = state_of(environment).collector
    if isinstance(environment.runner, WorkerRunner):
        collector.outbox_dropped += n
    else:
        collector.dropped_arrivals += n


def on_records_message(environment: Environment, msg: Message, **_kw: Any) -> None:
    """Master: a worker's batch."""
    collector = state_of(environment).collector
    for data in msg.data["records"]:
        collector.keep(RequestRecord.from_dict(data))
    collector.dropped_arrivals += msg.data.get("dropped", 0)
    if msg.data.get("final"):
        collector.final_batches += 1


def flush(environment: Environment, final: bool = False) -> None:
    """Worker: send what is queued (and, when `final`, the final batch even if empty)."""
    collector, runner = state_of(environment).collector, environment.runner
    if runner is not None and (collector.outbox or collector.outbox_dropped or final):
        batch, collector.outbox = collector.outbox, []
        dropped, collector.outbox_dropped = collector.outbox_dropped, 0
        runner.send_message(RECORDS_MESSAGE, {"records": batch, "dropped": dropped, "final": final})


def _flush_loop(environment: Environment, stop: gevent.event.Event) -> None:
    # Ends on `stop` between sends: killing it mid-send could lose the batch it had taken.
    while not stop.wait(FLUSH_INTERVAL_S):
        flush(environment)


def start_flusher(environment: Environment) -> None:
    """Worker, at test start: send batches every FLUSH_INTERVAL_S."""
    state = state_of(environment)
    state.flusher_stop = gevent.event.Event()
    state.flusher = gevent.spawn(_flush_loop, environment, state.flusher_stop)


def stop_flusher(environment: Environment) -> None:
    """Worker, at test stop: end the flusher between sends, then send the final batch (before Locust's
    client_stopped message)."""
    state = state_of(environment)
    if state.flusher is not None and state.flusher_stop is not None:
        state.flusher_stop.set()
        state.flusher.join(timeout=5.0)
        state.flusher = None
    flush(environment, final=True)


def collect_final_batches(runner: MasterRunner) -> None:
    """Master: make sure every worker's last records are in before the report is built.

    A headless master ends with runner.quit(), which fires test_stop here *before* telling the workers
    anything, so their users would still be running. Stop them ourselves (each worker's test_stop then
    sends a final batch, before Locust's client_stopped), wait for the batches (bounded), and hand out
    the quit Locust would have sent, which carries their final stats."""
    collector = state_of(runner.environment).collector
    expected = collector.worker_ids
    if collector.final_batches < len(expected):
        for client_id in expected:
            runner.send_message("stop", None, client_id)
    deadline = time.monotonic() + FINAL_BATCH_WAIT_S
    while collector.final_batches < len(expected) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if collector.final_batches < len(expected):
        log.warning("only %d of %d workers sent their last records", collector.final_batches, len(expected))
    opts = runner.environment.parsed_options
    if opts is not None and opts.headless:
        for client_id in expected:
            runner.send_message("quit", None, client_id)
