"""The report's capacity-search and operator sections (summary.md lines, capacity_curve.png and
replicas.png), from the summary's `capacity_search` and `cluster` entries."""

from __future__ import annotations

from pathlib import Path

from higgs_load.autoscale_view import cluster_markdown
from higgs_load.plotting import save_figure

CAPACITY_PLOT = "capacity_curve.png"
REPLICAS_PLOT = "replicas.png"


def capacity_markdown(c: dict) -> list[str]:
    lines = [
        "",
        "## Capacity search",
        "",
        "| streams (run order) | requests | good share | 95 % Wilson | margin to target | TTFA p95 (ms) | "
        "RTF p99 | underruns | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in c["levels"]:
        verdict = ("pass" if r["passed"] else "fail") + ("" if r["confident"] else " (within noise)")
        lines.append(
            f"| {r['streams']} | {r['requests']} | {100 * r['share']:.1f} % | {100 * r['wilson_low']:.1f}-"
            f"{100 * r['wilson_high']:.1f} % | {100 * r['margin']:+.1f} | {_f(r.get('ttfa_p95_ms'), 0)} | "
            f"{_f(r.get('rtf_p99'), 2)} | {r.get('streams_with_underrun') or 0} | {verdict} |"
        )
    lines += ["", f"**Capacity: {c['sentence']}.**"]
    spec = c.get("autoscaling") or {}
    if spec.get("yaml"):
        lines += [
            "",
            f"**Autoscaling spec to paste** into the HiggsDeployment's spec: `targetStreamsPerReplica` at "
            f"{100 * spec['headroom']:.0f} % of the measured real-time streams per replica (the operator adds "
            "pods at 10 % over the target, at its next poll, and a new pod needs its start-up time):",
            "",
            "```yaml",
            *spec["yaml"].rstrip("\n").splitlines(),
            "```",
        ]
    elif spec.get("why_not"):
        lines += ["", f"No autoscaling spec: {spec['why_not']}."]
    return lines


def extra_markdown(summary: dict) -> list[str]:
    lines: list[str] = []
    if summary.get("capacity_search"):
        lines += capacity_markdown(summary["capacity_search"])
    if summary.get("cluster"):
        lines += cluster_markdown(summary["cluster"])
    return lines


def extra_plots(summary: dict, out_dir: Path) -> list[Path]:
    """capacity_curve.png (good share, TTFA p95 and RTF p99 per level, with the SLO lines) and
    replicas.png (replica counts over time, with the load steps)."""
    if not summary.get("capacity_search") and not summary.get("cluster"):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    c = summary.get("capacity_search")
    slo = summary.get("slo") or {}
    if c and c["levels"]:
        rows = sorted(c["levels"], key=lambda r: r["streams"])
        x = [r["streams"] for r in rows]
        fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
        ax = axes[0]
        ax.plot(x, [r["share"] for r in rows], "o-", label="good share")
        ax.fill_between(x, [r["wilson_low"] for r in rows], [r["wilson_high"] for r in rows], alpha=0.2)
        ax.axhline(c["target"], color="k", linestyle=":", label=f"target {c['target']:g}")
        ax.axvline(c["streams"], color="tab:green", linestyle="--", label=f"capacity {c['streams']}")
        ax.set_ylabel("share meeting SLOs")
        ax.legend(fontsize=8)
        ax = axes[1]
        ax.plot(x, [r.get("ttfa_p95_ms") or float("nan") for r in rows], "s-", color="tab:red")
        if slo.get("ttfa_ms") is not None:
            ax.axhline(slo["ttfa_ms"], color="k", linestyle=":", label="TTFA SLO")
            ax.legend(fontsize=8)
        ax.set_ylabel("TTFA p95 (ms)")
        ax = axes[2]
        ax.plot(x, [r.get("rtf_p99") or float("nan") for r in rows], "^-", color="tab:purple")
        ax.axhline(slo.get("rtf") or 1.0, color="k", linestyle=":", label="RTF SLO / real time")
        ax.legend(fontsize=8)
        ax.set_ylabel("RTF p99")
        ax.set_xlabel("concurrent streams")
        axes[0].set_title(f"Capacity search: {c['streams']} streams ({c['unit']})")
        paths.append(save_figure(fig, out_dir / CAPACITY_PLOT))
    cl = summary.get("cluster")
    if cl and cl["samples"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        t = [s["t_rel"] for s in cl["samples"]]
        for key, style in (("desired", "--"), ("replicas", "-"), ("ready", "-")):
            ax.step(
                t,
                [s[key] if s[key] is not None else float("nan") for s in cl["samples"]],
                style,
                where="post",
                label=key,
            )
        for u in cl["scale_ups"]:
            ax.axvline(u["step_at"] - (summary.get("started") or 0), color="grey", linestyle=":")
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("replicas")
        ax.set_title(f"Replicas over time ({cl['higgsdeployment']}; dotted: the load step before a scale-up)")
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out_dir / REPLICAS_PLOT))
    return paths


def _f(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
