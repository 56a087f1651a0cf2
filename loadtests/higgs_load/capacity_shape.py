"""--shape capacity in a Locust run: HiggsShape.tick delegates here (the CapacityController kept on the
run state), and at the end of the run the search's section of the summary is built from it."""

from __future__ import annotations

import logging
import time

from higgs_load.capacity_search import CapacityController, CapacitySearch, capacity_summary
from higgs_load.run_config import RunConfig
from higgs_load.run_state import RunState

log = logging.getLogger("higgs_load")


def controller(state: RunState, cfg: RunConfig) -> CapacityController:
    """This run's controller (a new one at each test start: the collector's start time changes)."""
    ctrl = state.capacity
    if not isinstance(ctrl, CapacityController) or ctrl.run_started != state.collector.t_start:
        cap = cfg.capacity
        ctrl = CapacityController(
            CapacitySearch(cap.slo_target, cap.max_streams),
            cfg.slo,
            cap.hold_s,
            cap.min_requests,
            run_started=state.collector.t_start,
        )
        state.capacity = ctrl
    return ctrl


def capacity_tick(state: RunState, cfg: RunConfig) -> tuple[int, float] | None:
    ctrl = controller(state, cfg)
    judged = len(ctrl.search.results)
    users = ctrl.users_at(time.time(), state.collector.records)
    if len(ctrl.search.results) > judged:
        r = ctrl.search.results[-1]
        log.info(
            "capacity: %d streams: %d of %d requests met the SLOs (%.1f %%, target %.1f %%) -> %s",
            r.streams,
            r.good,
            r.requests,
            100 * r.share,
            100 * cfg.capacity.slo_target,
            "done" if users is None else f"{users} streams",
        )
    if users is None:
        return None
    state.collector.note_level(users)
    return users, max(cfg.spawn_rate, float(users))


def capacity_section(state: RunState, cfg: RunConfig, host: str | None, replicas_seen: list[int]) -> dict:
    """The summary's `capacity_search` (empty unless --shape capacity ran)."""
    ctrl = state.capacity
    if cfg.shape != "capacity" or not isinstance(ctrl, CapacityController):
        return {}
    section = capacity_summary(
        ctrl.search,
        cfg.slo,
        ctrl.windows,
        replicas_seen=replicas_seen,
        replicas_stated=cfg.capacity.replicas_stated,
        host=host,
        complete=ctrl.search.done,
        prebuffer_ms=1000 * float(getattr(cfg, "prebuffer_s", 0.0) or 0.0),
    )
    log.info("capacity search: %s", section["sentence"])
    spec = section["autoscaling"]
    if spec["yaml"]:
        log.info("autoscaling spec to paste into the HiggsDeployment's spec:\n%s", spec["yaml"].rstrip())
    return {"capacity_search": section}


def start_cluster_view(state: RunState, cfg: RunConfig) -> None:
    """--higgsdeployment: start sampling it (master or local runner), at test start."""
    if state.cluster is not None:
        state.cluster.stop()
        state.cluster = None
    if cfg.capacity.higgsdeployment:
        from higgs_load.cluster_view import start_view

        state.cluster = start_view(cfg.capacity.higgsdeployment)


def run_extras(state: RunState, cfg: RunConfig, host: str | None) -> dict:
    """The summary's `cluster` and `capacity_search` sections, at test stop."""
    extras: dict = {}
    replicas_seen: list[int] = []
    view = state.cluster
    if view is not None:
        from higgs_load.autoscale_view import cluster_summary, replica_counts

        view.stop()
        state.cluster = None
        events = sorted(view.events.values(), key=lambda e: e["t"] or 0)
        events = [e for e in events if e["t"] is not None and e["t"] >= state.collector.t_start - 1]
        extras["cluster"] = cluster_summary(
            cfg.capacity.higgsdeployment,
            view.samples,
            events,
            state.collector.steps,
            state.collector.records,
            state.collector.t_start,
            view.errors,
        )
        replicas_seen = replica_counts(view.samples)
    extras.update(capacity_section(state, cfg, host, replicas_seen))
    return extras
