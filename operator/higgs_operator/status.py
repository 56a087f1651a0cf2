"""Pods + Deployment + probe results -> status conditions and phase (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .secrets import SecretCheck

CONDITION_TYPES = ("SecretReady", "ModelCacheReady", "Available", "Progressing", "Degraded", "ScalingActive")
CRASH_RESTARTS = 3  # restarts after which a container counts as crash-looping even between back-offs

# Waiting reasons of a container whose image cannot be had: the kubelet's, and the local stack's
# node agent's (an image its map does not know).
IMAGE_ERRORS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "ImageNotMapped"}
)
DOWNLOAD_CONTAINER = "download-model"  # the chart's init container (files/download_model.py)
# download_model.py's causes by exit status (its EXIT_CODES), and what each means when the pod keeps
# no termination message (the local stack's node agent); the message, when kept, is the script's own.
DOWNLOAD_CAUSES = {
    1: ("DownloadFailed", "the model download failed"),
    3: (
        "TokenRejected",
        "the Hugging Face hub rejected the token (or the account has no access to the model): "
        "check the Secret spec.hfToken names",
    ),
    4: ("RevisionNotFound", "a pinned revision is not in its repository: check the revisions in spec"),
    5: (
        "RepositoryNotFound",
        "a repository is not on the hub (or it is private and the token has no access)",
    ),
    6: ("DiskFull", "the model cache volume is full: give spec.modelCache more room"),
    7: ("HubUnreachable", "cannot reach the hub: check network access or spec.modelCache.hfEndpoint"),
    8: ("HubError", "the hub answered an error"),
}
DOWNLOAD_REASONS = frozenset(reason for reason, _ in DOWNLOAD_CAUSES.values())
# Why the model cache is not ready: a failed download, or a claim nothing binds.
CACHE_REASONS = DOWNLOAD_REASONS | {"VolumeNotBound"}
_CAUSE_LINE = re.compile(r"^(?:ERROR: )?([A-Z][A-Za-z]+): (.+)$")


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


# spec.autoscaling.engine -> (ScalingActive reason, the kind that scales, how to look at it).
HANDOFF = {
    "hpa": ("HandedToHPA", "HorizontalPodAutoscaler", "kubectl describe hpa {name}"),
    "keda": (
        "HandedToKEDA",
        "ScaledObject",
        "kubectl describe scaledobject {name}, and its HPA keda-hpa-{name}",
    ),
}


def handed_off(engine: str, name: str) -> Condition:
    """ScalingActive when another controller sets the replicas: who, and where its own conditions are
    (whether it gets metrics is that controller's to say; the operator neither scrapes nor scales)."""
    reason, kind, look = HANDOFF[engine]
    return Condition(
        "ScalingActive",
        "True",
        reason,
        f"spec.autoscaling.engine {engine}: {kind} {name} sets the replicas; the operator does not "
        f"scrape or scale. Its state: {look.format(name=name)}",
    )


# The status fields only the operator's own scaling writes (handlers._autoscale).
OPERATOR_SCALING_FIELDS = ("metrics", "lastScaling")


def scaling_fields(operator_scales: bool, fields: dict) -> dict:
    """The operator-scaling status fields to write: the autoscaler's latest while the operator scales;
    otherwise null, which a merge patch turns into removal, so that figures from before a hand-off to an
    HPA or KEDA (or from before autoscaling was turned off) do not linger as if current."""
    if operator_scales:
        return dict(fields)
    return dict.fromkeys(OPERATOR_SCALING_FIELDS)


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


@dataclass(frozen=True)
class PodProblem:
    """Why serving pods cannot start, seen on one pod: a condition reason and a one-line message."""

    reason: str  # Unschedulable, VolumeNotBound, ImagePullFailed, or a download cause (DOWNLOAD_REASONS)
    message: str


def _name(pod: dict) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def unschedulable(pod: dict) -> PodProblem | None:
    """The scheduler's reason a pod has no node (its PodScheduled condition), if it has none."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            why = cond.get("message") or "no node fits the pod"
            if "unbound" in why and "PersistentVolumeClaim" in why:
                # The scheduler waits for the claim: the cache's storage, not a node, is what is missing.
                return PodProblem(
                    "VolumeNotBound",
                    f"pod {_name(pod)} waits for its volume claim to bind ({why}); check the claim's "
                    "storage class and provisioner (kubectl describe pvc), or spec.modelCache",
                )
            return PodProblem("Unschedulable", f"pod {_name(pod)} unschedulable: {why}")
    return None


def image_error(pod: dict) -> PodProblem | None:
    """A container (init or main) waiting for an image that cannot be pulled (or mapped, locally)."""
    status = pod.get("status") or {}
    images = {c.get("name"): c.get("image") for c in _spec_containers(pod)}
    for statuses in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(statuses) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_ERRORS:
                image = cs.get("image") or images.get(cs.get("name")) or "?"
                detail = f"{waiting['reason']}: {waiting.get('message') or 'no detail'}"
                msg = f"pod {_name(pod)} container {cs.get('name')} cannot get image {image}: {detail}"
                return PodProblem("ImagePullFailed", msg)
    return None


def _spec_containers(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _download_cause(term: dict) -> tuple[str, str]:
    """(reason, message) of a failed download from its termination: the script's own line
    (``Cause: message``, also found in a log tail under FallbackToLogsOnError), else by exit status."""
    for line in reversed(str(term.get("message") or "").strip().splitlines()):
        found = _CAUSE_LINE.match(line.strip())
        if found and found.group(1) in DOWNLOAD_REASONS:
            return found.group(1), found.group(2)[:800]
    code = term.get("exitCode")
    reason, meaning = DOWNLOAD_CAUSES.get(code if isinstance(code, int) else 1, DOWNLOAD_CAUSES[1])
    text = str(term.get("message") or "").strip().splitlines()
    tail = f"; last output: {text[-1][:300]}" if text else ""
    return reason, f"{meaning} (exit code {code}{tail})"


def download_failure(pod: dict) -> PodProblem | None:
    """The model download's last failure, while it has not succeeded: the cause as the reason."""
    for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if cs.get("name") != DOWNLOAD_CONTAINER:
            continue
        state = cs.get("state") or {}
        now = state.get("terminated") or {}
        if now.get("exitCode") == 0:
            return None
        last = now or (cs.get("lastState") or {}).get("terminated") or {}
        if not last or last.get("exitCode") in (0, None):
            return None
        reason, message = _download_cause(last)
        return PodProblem(reason, f"pod {_name(pod)}: {message}")
    return None


def pod_problem(pods: Sequence[dict]) -> PodProblem | None:
    """The first reason serving pods cannot start: a failed download, an image that cannot be had, or
    no node for a pod. Unschedulable does not count while a terminating pod may still free room."""
    live = live_pods(pods)
    for check in (download_failure, image_error):
        found = next((x for x in map(check, live) if x), None)
        if found:
            return found
    if len(live) < len(pods):
        return None
    return next((x for x in map(unschedulable, live) if x), None)


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


def live_pods(pods: Sequence[dict]) -> list[dict]:
    """The pods not being deleted."""
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]


def ready_count(pods: Sequence[dict]) -> int:
    """Ready pods (pod_ready leaves out those being deleted): the one count behind Available and
    readyReplicas (the Deployment's own readyReplicas lags the pods, so the two could disagree)."""
    return sum(1 for p in pods if pod_ready(p))


def compute_conditions(inp: StatusInputs, now: datetime) -> tuple[list[Condition], str]:
    """The six conditions and the phase for this observation."""
    pods = live_pods(inp.pods)
    ready = ready_count(pods)
    crash = next((m for m in map(_crash_loop, pods) if m), None)
    downloading = any(_init_running(p) for p in pods)
    problem = pod_problem(inp.pods)
    conds: list[Condition] = []

    s = inp.secret
    if s.ready and problem is not None and problem.reason == "TokenRejected":
        # The Secret is there and well-formed, but the hub refused what it holds.
        conds.append(Condition("SecretReady", "False", problem.reason, problem.message))
    else:
        conds.append(Condition("SecretReady", "True" if s.ready else "False", s.reason, s.message))

    if ready or any(_init_done(p) for p in pods):
        conds.append(Condition("ModelCacheReady", "True", "CacheReady", "model cache initialised"))
    elif problem is not None and problem.reason in CACHE_REASONS:
        conds.append(Condition("ModelCacheReady", "False", problem.reason, problem.message))
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
    elif problem is not None:
        conds.append(Condition("Available", "False", problem.reason, problem.message))
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
    if problem is not None:
        conds.append(Condition("Degraded", "True", problem.reason, problem.message))
    elif crash:
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
    elif crash or stuck or problem is not None:
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


# Reasons worth a Warning event when they first appear (the reconcile posts the secret's and the
# chart's own): why pods cannot start or keep running.
WARN_REASONS = CACHE_REASONS | {"Unschedulable", "ImagePullFailed", "CrashLoop"}


def summary(conds: Sequence[Condition]) -> tuple[str, str]:
    """(reason, message) for `kubectl get hd`: the first thing wrong, or ("", "") when nothing is.
    A failed render or apply, then the token, then what keeps pods from starting or running."""
    by_type = {c.type: c for c in conds}
    picks = (
        ("Available", "False", lambda c: c.reason in ("RenderFailed", "ApplyFailed")),
        ("SecretReady", "False", lambda c: True),
        ("Degraded", "True", lambda c: True),
    )
    for ctype, status, keep in picks:
        c = by_type.get(ctype)
        if c is not None and c.status == status and keep(c):
            return c.reason, c.message
    return "", ""


def warning(status: dict) -> tuple[str, str] | None:
    """The (reason, message) of a built status worth a Warning event, if any (see WARN_REASONS)."""
    reason = status.get("reason") or ""
    return (reason, status.get("message") or "") if reason in WARN_REASONS else None


def build_status(inp: StatusInputs, now: datetime) -> dict:
    """The status fields the operator owns (phase, conditions, replica counts, reason and message)."""
    conds, phase = compute_conditions(inp, now)
    reason, message = summary(conds)
    dep = inp.deployment or {}
    ready = ready_count(inp.pods)
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "observedGeneration": inp.generation,
        "phase": phase,
        "reason": reason,
        "message": message[:300],
        "conditions": merge_conditions(inp.previous, conds, inp.generation, now),
        "replicas": int((dep.get("status") or {}).get("replicas") or 0),
        "readyReplicas": ready,
        "ready": f"{ready}/{inp.desired_replicas}",
        "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
    }
