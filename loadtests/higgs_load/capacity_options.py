"""Options of the capacity search and the cluster view (--slo-target, --capacity-*, --higgsdeployment):
added to the "Higgs Audio load test" group (higgs_load.options) and read into RunConfig.capacity
(higgs_load.run_config). Locust-free."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CapacityConfig:
    slo_target: float = 0.95  # share of requests meeting every SLO for a level to pass
    max_streams: int = 256  # the highest level the probe may try
    min_requests: int = 20  # requests judged per level (held up to 3x --step-hold to get them)
    higgsdeployment: str = ""  # NAMESPACE/NAME sampled during the run (higgs_load.cluster_view)
    replicas_stated: int | None = None  # --replicas when given other than its default 1
    hold_s: float = 30.0  # --step-hold: how long each level is held before it is judged


def add_capacity_options(g: Any) -> None:
    g.add_argument(
        "--slo-target",
        type=float,
        default=0.95,
        help="capacity: share of requests that must meet every SLO at a level for it to pass",
    )
    g.add_argument(
        "--capacity-max-streams", type=int, default=256, help="capacity: the highest level the probe may try"
    )
    g.add_argument(
        "--capacity-min-requests",
        type=int,
        default=20,
        help="capacity: requests to judge per level (a level is held up to 3x --step-hold to get them)",
    )
    g.add_argument(
        "--higgsdeployment",
        default="",
        help="NAMESPACE/NAME of the HiggsDeployment behind --host: its replica counts and events are "
        "sampled during the run (kubeconfig from KUBECONFIG, else in-cluster) and reported",
    )


def capacity_config(o: argparse.Namespace) -> CapacityConfig:
    """The parsed options -> CapacityConfig; ValueError naming the option on bad input."""
    target = float(getattr(o, "slo_target", 0.95))
    if not 0 < target <= 1:
        raise ValueError(f"--slo-target must be in (0, 1], got {target}")
    max_streams = int(getattr(o, "capacity_max_streams", 256))
    min_requests = int(getattr(o, "capacity_min_requests", 20))
    if max_streams < 1:
        raise ValueError(f"--capacity-max-streams must be >= 1, got {max_streams}")
    if min_requests < 1:
        raise ValueError(f"--capacity-min-requests must be >= 1, got {min_requests}")
    hd = str(getattr(o, "higgsdeployment", "") or "").strip()
    if hd and (hd.count("/") != 1 or not all(hd.split("/"))):
        raise ValueError(f"--higgsdeployment must be NAMESPACE/NAME, got {hd!r}")
    replicas = int(getattr(o, "replicas", 1) or 1)
    hold = float(getattr(o, "step_hold", 30.0) or 30.0)
    if hold <= 0:
        raise ValueError(f"--step-hold must be > 0 s, got {hold}")
    return CapacityConfig(target, max_streams, min_requests, hd, replicas if replicas != 1 else None, hold)
