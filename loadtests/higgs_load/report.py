"""Build and write the load-test report: summary JSON, Markdown table, PNG plots.

Every figure is computed from the raw records (exact percentiles), never from Locust's histogram.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from higgs_load.capacity_report import extra_markdown, extra_plots
from higgs_load.metrics import SLO, Step, capacity, summarize, summarize_steps, timeline
from higgs_load.plotting import save_figure
from higgs_load.quality_report import judge_quality, markdown_rows, plot_correctness
from higgs_load.records import RequestRecord, write_jsonl
from higgs_load.sessions import session_markdown

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
PLOTS = ("throughput_vs_concurrency.png", "ttfa_cdf.png", "rtf_hist.png", "timeline.png")


def build_summary(
    records: Sequence[RequestRecord],
    slo: SLO,
    steps: Sequence[Step] = (),
    *,
    min_good_share: float = 0.95,
    replicas: int = 1,
    extra: dict | None = None,
    prebuffer_s: float | None = None,
) -> dict:
    quality = judge_quality(records, prebuffer_s)  # length band, pre-buffer: before any figure
    summary = summarize(records, slo)
    summary.update(quality)
    summary["slo"] = {"ttfa_ms": slo.ttfa_ms, "rtf": slo.rtf, "underrun_s": slo.underrun_s}
    by_kind = {}
    for kind in sorted({r.kind for r in records}):
        sub = summarize([r for r in records if r.kind == kind], slo)
        by_kind[kind] = {
            k: sub.get(k) for k in ("requests", "error_rate", "ttfa_p50_ms", "ttfa_p99_ms", "rtf_p50")
        }
    summary["by_kind"] = by_kind
    # Which clock stamped the first audio (higgs_load.body_reader): "process" stamps include the load
    # generator's own read lag.
    summary["ttfa_clock"] = dict(Counter(r.ttfa_clock for r in records if r.ttfa_clock))
    summary["steps"] = summarize_steps(records, steps, slo) if steps else []
    cap = capacity(summary["steps"], min_good_share, replicas) if len(steps) > 1 else None
    summary["capacity"] = cap
    summary["capacity_users"] = cap["users"] if cap else None
    if extra:
        summary.update(extra)
    return summary


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(summary: dict) -> str:
    if summary.get("requests", 0) == 0:
        return "# Load-test report\n\nNo requests were completed.\n"
    s = summary
    lines = [
        "# Load-test report",
        "",
        "| metric | value |",
        "|---|---|",
        f"| requests (ok / failed) | {s['requests']} ({s['successes']} / {s['failures']}) |",
        f"| audio throughput (audio-s/s) | {_fmt(s['audio_throughput'], 2)} |",
        f"| TTFA p50 / p90 / p99 (ms) | {_fmt(s['ttfa_p50_ms'])} / {_fmt(s['ttfa_p90_ms'])} / "
        f"{_fmt(s['ttfa_p99_ms'])} |",
        f"| RTF p50 / p90 / p99 | {_fmt(s['rtf_p50'], 3)} / {_fmt(s['rtf_p90'], 3)} / "
        f"{_fmt(s['rtf_p99'], 3)} |",
        f"| streams with underruns | {s['streams_with_underrun']} of {s['streams']} "
        f"(stall {_fmt(s['underrun_stall_s'], 2)} s) |",
        f"| error rate | {100 * s['error_rate']:.2f} % {json.dumps(s['errors']) if s['errors'] else ''} |",
        f"| audio implausibly long for its text (K1) | {s.get('implausible_length', 0)} of {s['requests']} |",
        *markdown_rows(s),  # higgs_load.quality_report: pre-buffer, correctness checks
        f"| goodput (req/s meeting all SLOs) | {_fmt(s['goodput'], 3)} ({100 * s['goodput_share']:.1f} %) |",
        f"| wall time (s) | {_fmt(s['wall_s'])} |",
    ]
    if s.get("arrivals_dropped") is not None:
        lines.append(f"| Poisson arrivals dropped (pool busy) | {s['arrivals_dropped']} |")
    by_process = s.get("ttfa_clock", {}).get("process")
    if by_process:
        lines += [
            "",
            f"TTFA of {by_process} requests was stamped by the load generator's clock, not the kernel's "
            "(TLS to the server, or not Linux), so it includes the generator's own read lag.",
        ]
    slo = s["slo"]
    limits = [
        f"{name} <= {slo[key]}{unit}"
        for name, key, unit in (
            ("TTFA", "ttfa_ms", " ms"),
            ("RTF", "rtf", ""),
            ("underrun", "underrun_s", " s"),
        )
        if slo.get(key) is not None
    ]
    lines += ["", f"SLOs: {', '.join(limits)}." if limits else "SLOs: none given (--slo-ttfa-ms, --slo-rtf)."]
    if s["steps"]:
        lines += [
            "",
            "| users | requests | audio-s/s | TTFA p90 (ms) | RTF p90 | error rate | goodput share |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in s["steps"]:
            if row.get("requests", 0) == 0:
                lines.append(f"| {row['users']} | 0 | | | | | |")
                continue
            lines.append(
                f"| {row['users']} | {row['requests']} | {_fmt(row['audio_throughput'], 2)} | "
                f"{_fmt(row['ttfa_p90_ms'])} | {_fmt(row['rtf_p90'], 3)} | {100 * row['error_rate']:.1f} % | "
                f"{100 * row['goodput_share']:.1f} % |"
            )
    if s.get("capacity"):
        lines += ["", f"**Capacity: {s['capacity']['sentence']}.**"]
    elif len(s["steps"]) > 1:
        lines += ["", "**Capacity: no level met the SLOs.**"]
    if s.get("sessions"):
        lines += session_markdown(s["sessions"])  # --shape sessions (higgs_load.sessions)
    lines += extra_markdown(s)  # capacity search, the operator's view (higgs_load.capacity_report)
    if s.get("gates"):
        lines += ["", "Thresholds:", *[f"- {g}" for g in s["gates"]]]
    return "\n".join(lines) + "\n"


def plot(summary: dict, records: Sequence[RequestRecord], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    ok = [r for r in records if r.ok]

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [row for row in summary["steps"] if row.get("requests", 0)] or (
        [{"users": max((r.users or 0) for r in records) or 1, **summary}] if records else []
    )
    users = [row["users"] for row in steps]
    ax.plot(users, [row["audio_throughput"] for row in steps], "o-", color="tab:blue", label="audio-s/s")
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("audio-seconds per second", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(users, [row["ttfa_p90_ms"] or np.nan for row in steps], "s--", color="tab:red", label="TTFA p90")
    ax2.set_ylabel("TTFA p90 (ms)", color="tab:red")
    if summary.get("slo", {}).get("ttfa_ms") is not None:
        ax2.axhline(summary["slo"]["ttfa_ms"], color="tab:red", linestyle=":", label="TTFA SLO")
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax.set_title(f"Audio throughput and TTFA p90 vs concurrency\n{run_title(summary)}", fontsize=9)
    paths.append(save_figure(fig, out_dir / PLOTS[0]))

    fig, ax = plt.subplots(figsize=(7, 4))
    ttfa = np.sort([r.ttfa_s * 1000 for r in ok if r.ttfa_s is not None])
    if ttfa.size:
        ax.step(ttfa, np.arange(1, ttfa.size + 1) / ttfa.size, where="post")
    ax.set_xlabel("TTFA (ms)")
    ax.set_ylabel("share of requests")
    if summary.get("slo", {}).get("ttfa_ms") is not None:
        ax.axvline(summary["slo"]["ttfa_ms"], color="tab:red", linestyle=":", label="TTFA SLO")
        ax.legend()
    ax.set_ylim(0, 1.02)
    ax.set_title(f"TTFA CDF ({ttfa.size} requests)\n{run_title(summary)}", fontsize=9)
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, out_dir / PLOTS[1]))

    fig, ax = plt.subplots(figsize=(7, 4))
    rtf = [r.rtf for r in ok if r.rtf is not None]
    if rtf:
        ax.hist(rtf, bins=min(50, max(5, len(rtf) // 5)))
    ax.axvline(1.0, color="k", linestyle=":", label="real time")
    ax.set_xlabel("RTF (wall time / audio duration)")
    ax.set_ylabel("requests")
    if summary.get("slo", {}).get("rtf") is not None:
        ax.axvline(summary["slo"]["rtf"], color="tab:red", linestyle=":", label="RTF SLO")
    ax.set_title(f"RTF histogram\n{run_title(summary)}", fontsize=9)
    ax.legend()
    paths.append(save_figure(fig, out_dir / PLOTS[2]))

    fig, ax = plt.subplots(figsize=(7, 4))
    tl = timeline(records)
    ax.plot(tl["t"], tl["audio_throughput"], color="tab:blue", label="audio-s/s")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("audio-seconds per second")
    ax2 = ax.twinx()
    ax2.bar(tl["t"], tl["errors"], width=0.8, color="tab:red", alpha=0.5, label="errors/s")
    ax2.set_ylabel("errors per second", color="tab:red")
    ax.set_ylim(bottom=0)
    ax2.set_ylim(0, max(1.0, max(tl["errors"], default=0.0) * 1.1))  # counts: never below zero
    t0 = min((r.t_start for r in records), default=0.0)  # the timeline's zero: the first request
    for row in summary.get("steps", [])[1:]:  # level changes
        ax.axvline(row["t_begin"] - t0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_title(f"Throughput and errors over time\n{run_title(summary)}", fontsize=9)
    paths.append(save_figure(fig, out_dir / PLOTS[3]))
    paths.append(plot_correctness(summary, records, out_dir))  # higgs_load.quality_report
    return paths


def run_title(summary: dict) -> str:
    """What was run, for the plots' titles: shape, levels (or users), mix, host."""
    shape = summary.get("shape") or "run"
    levels = [row["users"] for row in summary.get("steps", [])]
    what = shape
    if shape in ("step", "sweep") and levels:
        what += f" {','.join(str(u) for u in levels)} users"
        if summary.get("step_hold_s"):
            what += f" x {summary['step_hold_s']:g} s"
    elif levels:
        what += f" {levels[-1]} users"
    mix = summary.get("mix") or {}
    if mix:
        what += " | " + ",".join(f"{k}={v}" for k, v in mix.items())
    if summary.get("host"):
        what += f" | {summary['host']}"
    return what


def write_report(
    out_dir: Path,
    summary: dict,
    records: Sequence[RequestRecord],
    raw_out: Path | None = None,
    plots: bool = True,
) -> list[Path]:
    """Write summary.json, summary.md, the plots and (when given) the raw JSONL; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if raw_out is not None:
        write_jsonl(raw_out, records)
        written.append(raw_out)
    (out_dir / SUMMARY_JSON).write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (out_dir / SUMMARY_MD).write_text(markdown(summary), encoding="utf-8")
    written += [out_dir / SUMMARY_JSON, out_dir / SUMMARY_MD]
    if plots:
        written += plot(summary, records, out_dir)
        written += extra_plots(summary, out_dir)  # capacity_curve.png, replicas.png
    return written
