"""The end of a run (master or local runner): close the raw JSONL, build the summary from every
collected record, check the --fail-on gates (the exit code) and write the report. Locust-free."""

from __future__ import annotations

import logging
import time

from higgs_load.collector import Collector
from higgs_load.metrics import with_warmup
from higgs_load.plans import StepPlan
from higgs_load.report import build_summary, write_report
from higgs_load.run_config import RunConfig
from higgs_load.sessions import session_summary
from higgs_load.thresholds import EXIT_THRESHOLD_MISSED, evaluate

log = logging.getLogger("higgs_load")


def finish_run(cfg: RunConfig, collector: Collector, host: str | None, more: dict | None = None) -> None:
    """Write the report of the records `collector` holds; a missed gate sets collector.exit_code."""
    collector.close()
    t_stop = time.time()
    steps = collector.step_list(t_stop)
    stepped = cfg.shape in ("step", "sweep")
    if stepped:  # each level's figures from after its warm-up (higgs_load.metrics.summarize_steps)
        steps = [with_warmup(s, cfg.step_warmup) for s in steps]
    extra = {
        "shape": cfg.shape,
        "mix": cfg.mix,
        "step_hold_s": cfg.plan.hold_s if isinstance(cfg.plan, StepPlan) else None,
        "step_warmup": cfg.step_warmup if stepped else None,
        "arrivals_dropped": collector.dropped_arrivals if cfg.shape == "poisson" else None,
        "host": host,
        "started": collector.t_start,
        "stopped": t_stop,
        "raw_records": str(cfg.raw_out),
        "server_api": cfg.settings.api,
        **(more or {}),  # capacity_search, cluster (higgs_load.capacity_shape.run_extras)
    }
    summary = build_summary(
        collector.records,
        cfg.slo,
        steps if stepped else [s for s in steps[-1:]],
        min_good_share=cfg.min_good_share,
        replicas=cfg.replicas,
        extra=extra,
        prebuffer_s=cfg.prebuffer_s,
    )
    if cfg.sessions is not None:
        # --shape sessions: offered Erlangs beside the measured concurrency (higgs_load.sessions)
        summary["sessions"] = session_summary(
            collector.records, collector.t_start, t_stop, capped=collector.dropped_arrivals
        )
        summary["offered_erlangs"] = summary["sessions"]["offered_erlangs"]
        summary["concurrency_mean"] = summary["sessions"]["concurrency_mean"]
        summary["sessions_capped"] = collector.dropped_arrivals
        log.info(
            "sessions: offered %.2f Erlangs, streams in flight %.2f on average (p95 %s), %d refused (cap)",
            summary["offered_erlangs"] or 0.0,
            summary["concurrency_mean"],
            summary["sessions"]["concurrency_p95"],
            collector.dropped_arrivals,
        )
    if cfg.gates:
        passed, lines = evaluate(cfg.gates, summary)
        summary["gates"], summary["gates_passed"] = lines, passed
        collector.exit_code = 0 if passed else EXIT_THRESHOLD_MISSED
        for line in lines:
            log.info("threshold %s", line)
    paths = write_report(cfg.report_dir, summary, collector.records, raw_out=None, plots=cfg.plots)
    log.info("report written: %s (raw records: %s)", ", ".join(str(p) for p in paths), cfg.raw_out)
    if summary.get("capacity"):
        log.info("capacity: %s", summary["capacity"]["sentence"])
