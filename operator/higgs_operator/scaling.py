"""Pod samples + recent history -> replica count, the way the HorizontalPodAutoscaler decides.

Each signal with a target gives ``ceil(total / target)`` replicas, unless the per-pod average is
within the tolerance of the target (then: keep): queued requests (``waiting``) and concurrent streams
being generated (``streams``, the server's running requests). The largest wins, and the decision says
which signal it was (a bound, ``min``/``max``, when the bound is what moved the count). Every raw
recommendation is kept
for the stabilization windows: scale up only to the lowest recommendation seen during the scale-up
window, scale down only to the highest seen during the scale-down window, so an oscillating load does
not make replicas flap. A step is bounded, the result clamped to [min, max]. Failed or missing
scrapes never lower the count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .metrics import PodSample


@dataclass(frozen=True)
class AutoscalingPolicy:
    min_replicas: int
    max_replicas: int
    target_waiting: float | None = None
    target_streams: float | None = None
    scale_up_stabilization_s: float = 0.0
    scale_down_stabilization_s: float = 300.0
    max_scale_up_step: int = 4
    max_scale_down_step: int = 1
    tolerance: float = 0.1
    poll_s: float = 15.0

    @classmethod
    def from_spec(cls, autoscaling: dict) -> AutoscalingPolicy:
        """Build from the CR's spec.autoscaling (defaults already filled in by the API server)."""
        return cls(
            min_replicas=int(autoscaling.get("minReplicas", 1)),
            max_replicas=int(autoscaling.get("maxReplicas", 1)),
            target_waiting=_opt_float(autoscaling.get("targetWaitingRequestsPerReplica")),
            target_streams=_opt_float(autoscaling.get("targetStreamsPerReplica")),
            scale_up_stabilization_s=float(autoscaling.get("scaleUpStabilizationSeconds", 0)),
            scale_down_stabilization_s=float(autoscaling.get("scaleDownStabilizationSeconds", 300)),
            max_scale_up_step=int(autoscaling.get("maxScaleUpStep", 4)),
            max_scale_down_step=int(autoscaling.get("maxScaleDownStep", 1)),
            tolerance=float(autoscaling.get("tolerance", 0.1)),
            poll_s=float(autoscaling.get("pollSeconds", 15)),
        )


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Recommendation:
    time: float
    replicas: int


@dataclass(frozen=True)
class Decision:
    replicas: int
    recommendation: int | None  # raw recommendation of this poll (None: no metrics, nothing recorded)
    reason: str
    history: tuple[Recommendation, ...] = field(default_factory=tuple)
    # What decided: "waiting" | "streams" | "min" | "max" | "failed_scrapes" (op_metrics.SCALING_SIGNALS);
    # None when nothing did (no metrics, no target)
    signal: str | None = None


def _clamp(value: int, policy: AutoscalingPolicy) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, value))


def _metric_desire(
    name: str, total: float, pods: int, target: float, current: int, tol: float
) -> tuple[int, str]:
    per_pod = total / pods
    ratio = per_pod / target
    if abs(ratio - 1.0) <= tol:
        return current, f"{name} {per_pod:.2f}/pod within {tol:.0%} of target {target:g}"
    desired = math.ceil(total / target)
    return desired, f"{name} {per_pod:.2f}/pod vs target {target:g} -> {desired}"


def decide(
    policy: AutoscalingPolicy,
    current: int,
    samples: Sequence[PodSample],
    failed_scrapes: int,
    history: Sequence[Recommendation],
    now: float,
) -> Decision:
    """One autoscaling step. ``current`` is the Deployment's replica count, ``samples`` the pods scraped."""
    window = max(policy.scale_up_stabilization_s, policy.scale_down_stabilization_s)
    kept = tuple(r for r in history if r.time >= now - window)
    if not samples:
        held = _clamp(current, policy)
        why = f"no metrics ({failed_scrapes} scrapes failed); holding {current}"
        if held != current:
            why = f"{current} outside [{policy.min_replicas}, {policy.max_replicas}]; set to {held}"
        return Decision(held, None, why, kept, _bound_signal(current, held))

    desires: list[tuple[int, str, str]] = []
    signal_totals = (
        ("streams", sum(s.running for s in samples), policy.target_streams),
        ("waiting", sum(s.waiting for s in samples), policy.target_waiting),
    )
    for name, total, target in signal_totals:
        if target:
            desired, why = _metric_desire(name, total, len(samples), target, current, policy.tolerance)
            desires.append((desired, why, name))
    if not desires:
        held = _clamp(current, policy)
        return Decision(held, None, "no metric target set; holding", kept, _bound_signal(current, held))
    desired, reason, decided_by = max(desires, key=lambda d: d[0])  # a tie: the first, streams
    signal: str | None = decided_by
    if failed_scrapes and desired < current:
        desired = current
        reason += f"; scale-down held: {failed_scrapes} scrape(s) failed"
        signal = "failed_scrapes"
    raw = _clamp(desired, policy)
    if raw != desired:
        bound = "maxReplicas" if desired > raw else "minReplicas"
        reason += f"; capped at {bound} {raw}"
    if not kept:
        # No history (first poll, or the operator restarted): the running count counts as a recent
        # recommendation, so a restart cannot skip the scale-down window.
        kept = (Recommendation(now, _clamp(current, policy)),)
    up_rec = min([raw] + [r.replicas for r in kept if r.time > now - policy.scale_up_stabilization_s])
    down_rec = max([raw] + [r.replicas for r in kept if r.time > now - policy.scale_down_stabilization_s])
    kept = (*kept, Recommendation(now, raw))
    new = current
    if new < up_rec:
        new = up_rec
    if new > down_rec:
        new = down_rec
    if raw > current and new < raw:
        reason += f"; held at {new} by scale-up stabilization ({policy.scale_up_stabilization_s:g}s)"
    if raw < current and new > raw:
        reason += f"; held at {new} by scale-down stabilization ({policy.scale_down_stabilization_s:g}s)"
    if new > current + policy.max_scale_up_step:
        new = current + policy.max_scale_up_step
        reason += f"; step bounded to +{policy.max_scale_up_step}"
    if new < current - policy.max_scale_down_step:
        new = current - policy.max_scale_down_step
        reason += f"; step bounded to -{policy.max_scale_down_step}"
    new = _clamp(new, policy)
    if (new > current and desired <= current) or (new < current and desired >= current):
        signal = _bound_signal(current, new)  # the signals did not ask for this move: a bound did
    return Decision(new, raw, reason, kept, signal)


def _bound_signal(current: int, new: int) -> str | None:
    """The bound that moved ``current`` to ``new`` (None: it did not move)."""
    if new == current:
        return None
    return "min" if new > current else "max"
