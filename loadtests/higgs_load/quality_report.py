"""The report's playback and correctness parts: summary fields, Markdown rows, and the plot of the
correctness error kinds against concurrency (higgs_load.playback, higgs_load.correctness).

`judge_quality` runs before the run's figures are computed: it applies the length band (which fails
requests) and, given a pre-buffer, re-counts every stream's underruns at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from higgs_load.correctness import CORRECTNESS_KINDS, correctness_counts, judge_lengths
from higgs_load.playback import min_prebuffer_s, simulate_underruns
from higgs_load.plotting import save_figure
from higgs_load.records import RequestRecord

PREBUFFER_PERCENTILES = (50, 95, 99)
CORRECTNESS_PLOT = "correctness_vs_concurrency.png"


def judge_quality(records: Sequence[RequestRecord], prebuffer_s: float | None = None) -> dict:
    """Apply the length band and the pre-buffer to `records` (in place); return the summary fields.

    `prebuffer_s` None keeps the underruns the records carry (counted at the run's `--prebuffer-ms`).
    """
    band = judge_lengths(records)
    mins: list[float] = []
    for rec in records:
        if not (rec.streamed and rec.chunks):
            continue
        rec.min_prebuffer_s = min_prebuffer_s(rec.chunks)
        if prebuffer_s is not None:
            under = simulate_underruns(rec.chunks, prebuffer_s=prebuffer_s)
            rec.underruns, rec.stall_s = under.count, under.stall_s
        if rec.ok and rec.min_prebuffer_s is not None:
            mins.append(rec.min_prebuffer_s * 1000)
    dist = {f"p{p}": (float(np.percentile(mins, p)) if mins else None) for p in PREBUFFER_PERCENTILES}
    counts = correctness_counts(records)
    return {
        "prebuffer_ms": None if prebuffer_s is None else prebuffer_s * 1000,
        "min_prebuffer_ms": dist,
        **{f"min_prebuffer_{p}_ms": v for p, v in dist.items()},
        "length_band": band,
        "correctness": counts,
        **counts,
    }


def markdown_rows(summary: dict) -> list[str]:
    """The summary.md table rows of the playback model and the correctness checks."""
    dist = summary.get("min_prebuffer_ms") or {}
    rows = []
    if dist:
        fmt = ["n/a" if dist.get(p) is None else f"{dist[p]:.0f}" for p in ("p50", "p95", "p99")]
        rows.append(f"| pre-buffer for no stall p50 / p95 / p99 (ms) | {' / '.join(fmt)} |")
    if summary.get("prebuffer_ms") is not None:
        rows.append(f"| pre-buffer the underruns are counted at (ms) | {summary['prebuffer_ms']:g} |")
    counts = summary.get("correctness")
    if counts is not None:
        wrong = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"
        rows.append(f"| wrong payloads (correctness checks) | {wrong} |")
    band = summary.get("length_band") or {}
    if band and not band.get("judged"):
        rows.append("| audio length vs text | not judged: too few low-load requests |")
    elif band.get("all"):
        b = band["all"]
        rows.append(
            f"| audio length band (ms per character, low-load) | {1000 * b['low_s_per_char']:.1f} - "
            f"{1000 * b['high_s_per_char']:.1f} (median {1000 * b['median_s_per_char']:.1f}) |"
        )
    return rows


def by_concurrency(summary: dict, records: Sequence[RequestRecord]) -> dict[int, dict[str, int]]:
    """Correctness error counts per concurrency level: the steps' when the run had several, else by
    the user count each request was sent at."""
    steps = [row for row in summary.get("steps") or [] if row.get("requests")]
    out: dict[int, dict[str, int]] = {}
    if len(steps) > 1:
        for row in steps:
            errors = row.get("errors") or {}
            level = out.setdefault(int(row["users"]), dict.fromkeys(CORRECTNESS_KINDS, 0))
            for kind in CORRECTNESS_KINDS:
                level[kind] += int(errors.get(kind, 0))
        return out
    for rec in records:
        level = out.setdefault(int(rec.users or 0), dict.fromkeys(CORRECTNESS_KINDS, 0))
        if rec.error in level:
            level[rec.error] += 1
    return out


def plot_correctness(summary: dict, records: Sequence[RequestRecord], out_dir: Path) -> Path:
    """correctness_vs_concurrency.png: requests failed with each correctness kind per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = by_concurrency(summary, records)
    levels = sorted(table)
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind in CORRECTNESS_KINDS:
        ax.plot(levels, [table[u][kind] for u in levels], "o-", label=kind)
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("requests failed")
    ax.set_title("Wrong payloads by kind vs concurrency")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return save_figure(fig, out_dir / CORRECTNESS_PLOT)
