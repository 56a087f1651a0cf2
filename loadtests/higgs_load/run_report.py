"""The end of a run (master or local runner): close the raw JSONL, build the summary from every
collected record, check the --fail-on gates (the exit code) and write the report. Locust-free."""

from __future__ import annotations

import logging
import time

from higgs_load.collector import Collector
from higgs_load.report import build_summary, write_report
from higgs_load.run_config import RunConfig
from higgs_load.thresholds import EXIT_THRESHOLD_MISSED, evaluate

log = logging.getLogger("higgs_load")


def finish_run(cfg: RunConfig, collector: Collector, host: str | None) -> None:
    """Write the report of the records `collector` holds; a missed gate sets collector.exit_code."""
    collector.close()
    t_stop = time.time()
    steps = collector.step_list(t_stop)
    extra = {
        "shape": cfg.shape,
        "arrivals_dropped": collector.dropped_arrivals if cfg.shape == "poisson" else None,
        "host": host,
        "started": collector.t_start,
        "stopped": t_stop,
        "raw_records": str(cfg.raw_out),
        "server_api": cfg.settings.api,
    }
    summary = build_summary(
        collector.records,
        cfg.slo,
        steps if cfg.shape in ("step", "sweep") else [s for s in steps[-1:]],
        min_good_share=cfg.min_good_share,
        replicas=cfg.replicas,
        extra=extra,
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
