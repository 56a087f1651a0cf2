"""Pods + Deployment + probe results -> status conditions and phase (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .secrets import SecretCheck

CONDITION_TYPES = ("SecretReady", "ModelCacheReady", "Available", "Progressing", "Degraded", "ScalingActive")
CRASH_RESTARTS = 3  # restarts after which a container counts as crash-looping even between back-offs


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str


@dataclass(frozen=True)
class StatusInputs:
    generation: int
    secret: SecretCheck
    deployment: dict | None
    pods: Sequence[dict]
    desired_replicas: int
    models_ok: bool | None = None  # None: no ready pod to ask
    models_message: str = ""
    scaling: Condition | None = None
    failure: tuple[str, str] | None = None  # (reason, message): the chart did not render or apply
    degraded_after_s: float = 300.0
    previous: Sequence[dict] = field(default_factory=tuple)


def pod_ready(pod: dict) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _crash_loop(pod: dict) -> str | None:
    """A message naming the crash-looping container and its last termination reason, if any."""
    status = pod.get("status") or {}
    for kind, statuses in (("init container", "initContainerStatuses"), ("container", "containerStatuses")):
        for cs in status.get(statuses) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            restarts = int(cs.get("restartCount") or 0)
            # lastState keeps the last termination for the pod's whole life: it counts only while the
            # container is not ready again, or a pod that once restarted 3 times stays "Degraded".
            repeated = bool(last) and restarts >= CRASH_RESTARTS and not cs.get("ready")
            if waiting.get("reason") == "CrashLoopBackOff" or repeated:
                code = last.get("exitCode", "?")
                detail = f"last terminated: {last.get('reason', 'Unknown')} (exit code {code})"
                who = f"pod {pod['metadata']['name']} {kind} {cs.get('name')}"
                return f"{who} crash-looping, {detail}, {restarts} restarts"
    return None


def _init_running(pod: dict) -> bool:
    return any(
        (cs.get("state") or {}).get("running") is not None
        for cs in (pod.get("status") or {}).get("initContainerStatuses") or []
    )


def _init_done(pod: dict) -> bool:
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    return bool(statuses) and all(
        ((cs.get("state") or {}).get("terminated") or {}).get("exitCode") == 0 for cs in statuses
    )


def compute_conditions(inp: StatusInputs, now: datetime) -> tuple[list[Condition], str]:
    """The six conditions and the phase for this observation."""
    pods = [p for p in inp.pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    ready = sum(1 for p in pods if pod_ready(p))
    crash = next((m for m in map(_crash_loop, pods) if m), None)
    downloading = any(_init_running(p) for p in pods)
    conds: list[Condition] = []

    s = inp.secret
    conds.append(Condition("SecretReady", "True" if s.ready else "False", s.reason, s.message))

    if ready or any(_init_done(p) for p in pods):
        conds.append(Condition("ModelCacheReady", "True", "CacheReady", "model cache initialised"))
    elif downloading:
        conds.append(Condition("ModelCacheReady", "False", "Downloading", "cache init container running"))
    elif crash and "init container" in crash:
        conds.append(Condition("ModelCacheReady", "False", "DownloadFailed", crash))
    else:
        conds.append(
            Condition("ModelCacheReady", "Unknown", "NoPods", "no pod has initialised the cache yet")
        )

    if inp.failure:
        conds.append(Condition("Available", "False", *inp.failure))
    elif ready and inp.models_ok:
        conds.append(
            Condition("Available", "True", "ModelServed", f"{ready} ready replica(s); {inp.models_message}")
        )
    elif ready:
        conds.append(
            Condition("Available", "False", "ModelNotServed", inp.models_message or "not checked yet")
        )
    else:
        conds.append(Condition("Available", "False", "NoReadyReplicas", "no ready replica"))

    dep_status = (inp.deployment or {}).get("status") or {}
    updated = int(dep_status.get("updatedReplicas") or 0)
    rolling = inp.deployment is not None and (ready < inp.desired_replicas or updated < inp.desired_replicas)
    if inp.deployment is None:
        reason = "SecretNotReady" if not s.ready else "NotApplied"
        conds.append(Condition("Progressing", "False", reason, "no Deployment applied"))
    elif rolling:
        msg = f"{ready}/{inp.desired_replicas} ready, {updated} updated"
        conds.append(Condition("Progressing", "True", "RollingOut", msg))
    else:
        conds.append(Condition("Progressing", "False", "Complete", f"{ready}/{inp.desired_replicas} ready"))

    since = _since(inp.previous, "Progressing", "True")
    stuck = rolling and since is not None and (now - since).total_seconds() >= inp.degraded_after_s
    if crash:
        conds.append(Condition("Degraded", "True", "CrashLoop", crash))
    elif stuck:
        msg = f"{ready}/{inp.desired_replicas} ready for over {inp.degraded_after_s:g}s"
        conds.append(Condition("Degraded", "True", "ReplicasUnavailable", msg))
    else:
        conds.append(Condition("Degraded", "False", "AsExpected", "no crash loop, replicas converging"))

    conds.append(
        inp.scaling or Condition("ScalingActive", "False", "ScalingDisabled", "spec.replicas is set")
    )

    if inp.failure:
        phase = "Failed"
    elif crash or stuck:
        phase = "Degraded"
    elif ready and inp.models_ok:
        phase = "Ready"
    elif downloading:
        phase = "Downloading"
    elif pods:
        phase = "Starting"
    else:
        phase = "Pending"
    return conds, phase


def _since(previous: Sequence[dict], ctype: str, status: str) -> datetime | None:
    for c in previous:
        if c.get("type") == ctype and c.get("status") == status and c.get("lastTransitionTime"):
            return parse_time(c["lastTransitionTime"])
    return None


def merge_conditions(
    previous: Sequence[dict], new: Sequence[Condition], generation: int, now: datetime
) -> list[dict]:
    """Conditions as stored: lastTransitionTime moves only when a condition's status changes."""
    old = {c.get("type"): c for c in previous}
    merged = []
    for c in new:
        before = old.get(c.type)
        since = (
            rfc3339(now)
            if before is None or before.get("status") != c.status
            else before["lastTransitionTime"]
        )
        merged.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return merged


def build_status(inp: StatusInputs, now: datetime) -> dict:
    """The status fields the operator owns (phase, conditions, replica counts)."""
    conds, phase = compute_conditions(inp, now)
    dep = inp.deployment or {}
    ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "observedGeneration": inp.generation,
        "phase": phase,
        "conditions": merge_conditions(inp.previous, conds, inp.generation, now),
        "replicas": int((dep.get("status") or {}).get("replicas") or 0),
        "readyReplicas": ready,
        "ready": f"{ready}/{inp.desired_replicas}",
        "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
    }
