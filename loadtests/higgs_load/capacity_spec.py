"""The capacity search's answer as a HiggsDeployment autoscaling spec to paste (operator/README.md
"Autoscaling signals"): ``targetStreamsPerReplica`` below the real-time streams one replica sustained
within the SLOs.

Why headroom: the operator adds pods only once the per-pod average is more than its tolerance (10 %)
over the target, at its next poll, and a new pod takes its start-up time to serve; the load keeps
growing meanwhile. A target at 80 % of the capacity starts scaling at about 88 % of it.
"""

from __future__ import annotations

import math

HEADROOM = 0.8  # target = this share of the measured real-time streams per replica


def streams_target(per_replica: float, headroom: float = HEADROOM) -> int:
    """Whole streams below ``per_replica`` by ``headroom``; at least 1 (a stream cannot be split)."""
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom}")
    return max(1, math.floor(per_replica * headroom + 1e-9))


def autoscaling_spec(per_replica: float | None, conditions: str, headroom: float = HEADROOM) -> dict:
    """The summary's ``autoscaling`` entry: the spec (``yaml``, paste under a HiggsDeployment's spec),
    or ``why_not`` when the run measured no per-replica figure."""
    if per_replica is None:
        return {"yaml": None, "why_not": "no per-replica capacity (see the capacity sentence)"}
    if per_replica < 1:
        return {"yaml": None, "why_not": "no level met the SLOs, so there is no capacity to scale on"}
    target = streams_target(per_replica, headroom)
    share = target / per_replica
    comment = (
        f"{100 * share:.0f} % of the {per_replica:g} real-time streams per replica measured at {conditions}"
    )
    if share > headroom + 1e-9:
        comment += f" (less than {100 * (1 - headroom):.0f} % headroom: a target is at least one stream)"
    return {
        "yaml": f"autoscaling:\n  targetStreamsPerReplica: {target}  # {comment}\n",
        "targetStreamsPerReplica": target,
        "measured_streams_per_replica": per_replica,
        "headroom": headroom,
        "why_not": None,
    }
