"""The operator's view of a run (--higgsdeployment), from the HiggsDeployment's status and events sampled
during it (higgs_load.cluster_view): replica counts over time, the time from a load step to the new
replica being Ready, and the TTFA of requests sent while it was not. Pure: samples in, figures out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from higgs_load.metrics import percentiles
from higgs_load.records import RequestRecord


@dataclass(frozen=True)
class Sample:
    """One read of the HiggsDeployment's status (unix time; None where the status has no such field)."""

    t: float
    replicas: int | None
    ready: int | None
    desired: int | None


def replica_counts(samples: Sequence[Sample]) -> list[int]:
    """The replica counts the deployment served with (ready replicas, else replicas) during the run."""
    out = []
    for s in samples:
        n = s.ready if s.ready is not None else s.replicas
        if n is not None:
            out.append(n)
    return out


def scale_ups(
    samples: Sequence[Sample], steps: Sequence[tuple[int, float]], records: Sequence[RequestRecord]
) -> list[dict]:
    """Each rise of desiredReplicas: the load step before it, when the operator decided, when the ready
    count reached the new desired count, and the TTFA of requests sent from the step until then."""
    out = []
    prev: Sample | None = None
    for i, s in enumerate(samples):
        if (
            prev is not None
            and s.desired is not None
            and prev.desired is not None
            and s.desired > prev.desired
        ):
            step = max((st for st in steps if st[1] <= s.t), key=lambda st: st[1], default=None)
            ready_at = next((x.t for x in samples[i:] if x.ready is not None and x.ready >= s.desired), None)
            t0 = step[1] if step else prev.t
            t1 = ready_at if ready_at is not None else samples[-1].t
            ttfa = [
                r.ttfa_s * 1000 for r in records if r.ok and r.ttfa_s is not None and t0 <= r.t_start < t1
            ]
            p = percentiles(ttfa, (50, 95, 99))
            out.append(
                {
                    "from": prev.desired,
                    "to": s.desired,
                    "step_users": step[0] if step else None,
                    "step_at": t0,
                    "decided_at": s.t,
                    "ready_at": ready_at,
                    "step_to_decision_s": s.t - t0,
                    "step_to_ready_s": (ready_at - t0) if ready_at is not None else None,
                    "requests_before_ready": len(ttfa),
                    "ttfa_before_ready_ms": p,
                }
            )
        if s.desired is not None:
            prev = s
    return out


def cluster_summary(
    name: str,
    samples: Sequence[Sample],
    events: Sequence[dict],
    steps: Sequence[tuple[int, float]],
    records: Sequence[RequestRecord],
    t0: float,
    errors: Sequence[str] = (),
) -> dict:
    """The summary's `cluster` section."""
    counts = replica_counts(samples)
    ups = scale_ups(samples, steps, records)
    after = [
        r.ttfa_s * 1000
        for r in records
        if r.ok and r.ttfa_s is not None and all(u["ready_at"] and r.t_start >= u["ready_at"] for u in ups)
    ]
    return {
        "higgsdeployment": name,
        "samples": [{**asdict(s), "t_rel": s.t - t0} for s in samples],
        "events": [{**e, "t_rel": e["t"] - t0} for e in events if e.get("t") is not None],
        "replicas_min": min(counts) if counts else None,
        "replicas_max": max(counts) if counts else None,
        "replicas_changed": len(set(counts)) > 1,
        "scale_ups": ups,
        "ttfa_after_ready_ms": percentiles(after, (50, 95, 99)) if ups else None,
        "errors": list(errors)[:5],
    }


def cluster_markdown(c: dict) -> list[str]:
    lines = [
        "",
        f"## The operator's view ({c['higgsdeployment']})",
        "",
        f"Replicas (ready) during the run: {c['replicas_min']} to {c['replicas_max']}, "
        f"{len(c['samples'])} status samples, {len(c['events'])} events.",
    ]
    if c["scale_ups"]:
        lines += [
            "",
            "| scale-up | after the step to | decided after | Ready after | requests before Ready | "
            "their TTFA p50 / p95 (ms) |",
            "|---|---|---|---|---|---|",
        ]
        for u in c["scale_ups"]:
            p = u["ttfa_before_ready_ms"]
            ready = f"{u['step_to_ready_s']:.1f} s" if u["step_to_ready_s"] is not None else "not in the run"
            lines.append(
                f"| {u['from']} -> {u['to']} | {u['step_users']} users | {u['step_to_decision_s']:.1f} s | "
                f"{ready} | {u['requests_before_ready']} | {_ms(p['p50'])} / {_ms(p['p95'])} |"
            )
        after = c.get("ttfa_after_ready_ms") or {}
        lines.append(
            f"\nTTFA p50 / p95 once every new replica was Ready: {_ms(after.get('p50'))} / "
            f"{_ms(after.get('p95'))} ms."
        )
    for e in c["events"][-10:]:
        lines.append(
            f"- {e['t_rel']:+.1f} s {e.get('kind') or ''} {e.get('type', '')} {e.get('reason', '')}: "
            f"{e.get('message', '')}"
        )
    if c.get("errors"):
        lines += ["", "Sampling errors: " + "; ".join(c["errors"])]
    return lines


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"
