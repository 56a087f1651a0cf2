"""HiggsShape: --shape constant | step | poisson | sweep, from the run's plan (higgs_load.plans); the
sweep stops at the first level whose goodput share misses --min-good-share."""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust import LoadTestShape  # isort: skip

import logging
import time

from higgs_load.collector import Collector
from higgs_load.metrics import Step, summarize_steps, with_warmup
from higgs_load.run_config import RunConfig
from higgs_load.run_state import RunState, state_of

log = logging.getLogger("higgs_load")


class HiggsShape(LoadTestShape):
    """--shape constant | step | poisson | sweep (see loadtests/README.md). Uses -u/-r/-t."""

    use_common_options = True

    def _state(self) -> RunState | None:
        return state_of(self.runner.environment) if self.runner is not None else None

    def reset_time(self) -> None:
        """A shape run begins (Locust calls this before the first tick, and the first tick before
        test_start): the levels are noted from here."""
        super().reset_time()
        state = self._state()
        if state is not None:
            state.collector.begin_levels()

    def tick(self) -> tuple[int, float] | None:
        state = self._state()
        cfg = state.config if state is not None else None
        if state is None or cfg is None:
            return None
        if cfg.shape == "capacity":
            from higgs_load.capacity_shape import capacity_tick

            return capacity_tick(state, cfg)
        idx = cfg.plan.index_at(self.get_run_time())
        if idx is None:
            state.collector.end_levels()  # the last level ends now; its requests in flight are awaited
            return None
        users = cfg.plan.levels[idx]
        if (
            cfg.shape == "sweep"
            and not cfg.sweep_continue
            and self._previous_level_failed(cfg, state.collector, users)
        ):
            log.info("sweep: stopping, level below %d users missed the SLOs", users)
            state.collector.end_levels()
            return None
        state.collector.note_level(users)
        return users, cfg.spawn_rate

    @staticmethod
    def _previous_level_failed(cfg: RunConfig, collector: Collector, users: int) -> bool:
        if not collector.steps or collector.steps[-1][0] == users:
            return False
        prev_users, begin = collector.steps[-1]
        step = with_warmup(Step(prev_users, begin, time.time()), cfg.step_warmup)
        row = summarize_steps(collector.records, [step], cfg.slo)[0]
        if not row.get("requests"):
            return True
        return bool(row["goodput_share"] < cfg.min_good_share)
