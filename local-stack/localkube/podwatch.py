"""Pod waits that fail fast and explain: works against any cluster through the kubernetes client.

* :func:`pod_failure` (pure): from a pod (a dict as the API serves it, or a ``V1Pod``), whether it has
  failed for good and why: a crash loop / repeated restarts (with the last termination's exit code and
  message), an image that cannot be had (``ImageNotMapped`` from the local node agent; ``ErrImagePull``,
  ``ImagePullBackOff``, ``InvalidImageName`` on real clusters), a container config error, a failed init
  container (``Init:Error``, ``Init:CrashLoopBackOff``), ``Unschedulable`` that lasted, phase ``Failed``.
* :func:`explain`: the pods' events and each failing container's last error (its termination message,
  else the tail of its log), as text.
* :func:`wait_for_pods_ready`: returns as soon as the pods are Ready, raises :class:`PodsFailed` with
  that explanation as soon as one fails for good, and on timeout (then :class:`PodsNotReady`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Waiting reasons after which a container will not start without someone changing something.
IMAGE_REASONS = frozenset(
    {"ImageNotMapped", "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
MAX_RESTARTS = 2  # a container that failed this many times (and is not Ready) is in a crash loop
UNSCHEDULABLE_AFTER_S = 30.0  # Unschedulable this long is for good (a terminating pod may free room before)


@dataclass(frozen=True)
class PodFailure:
    """Why a pod failed for good: ``reason`` as kubectl's STATUS column shows it."""

    pod: str
    reason: str
    message: str
    container: str = ""
    init: bool = False

    def __str__(self) -> str:
        where = f" container {self.container}" if self.container else ""
        return f"pod {self.pod}{where}: {self.reason}: {self.message}".rstrip(": ")


def as_dict(pod: Any) -> dict:
    """A pod as the API's JSON (camelCase keys), from a dict or a kubernetes client model."""
    if isinstance(pod, dict):
        return pod
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(pod)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _termination_text(term: dict) -> str:
    code = term.get("exitCode")
    text = f"exit code {code}" + (f" ({term['reason']})" if term.get("reason") else "")
    if term.get("message"):
        text += f": {str(term['message']).strip()}"
    return text


def _container_failure(pod_name: str, cs: dict, init: bool, max_restarts: int) -> PodFailure | None:
    if cs.get("ready"):
        return None
    name = cs.get("name", "")
    state = cs.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    restarts = int(cs.get("restartCount") or 0)
    prefix = "Init:" if init else ""
    reason = waiting.get("reason", "")
    if reason in IMAGE_REASONS or reason in CONFIG_REASONS:
        return PodFailure(pod_name, prefix + reason, waiting.get("message") or reason, name, init)
    failed_term = terminated if terminated.get("exitCode") not in (None, 0) else last
    crashed = failed_term.get("exitCode") not in (None, 0)
    if reason == "CrashLoopBackOff" and restarts >= max_restarts - 1:
        detail = _termination_text(failed_term) if failed_term else waiting.get("message", "")
        return PodFailure(
            pod_name, prefix + "CrashLoopBackOff", f"restarted {restarts} time(s); last {detail}", name, init
        )
    if crashed and restarts >= max_restarts:
        return PodFailure(
            pod_name,
            prefix + ("Error" if init else "CrashLoopBackOff"),
            f"restarted {restarts} time(s); last {_termination_text(failed_term)}",
            name,
            init,
        )
    return None


def pod_failure(
    pod: Any,
    *,
    max_restarts: int = MAX_RESTARTS,
    unschedulable_after: float = UNSCHEDULABLE_AFTER_S,
    now: datetime | None = None,
) -> PodFailure | None:
    """Whether the pod has failed for good, and why; None while it is fine or may still come up."""
    pod = as_dict(pod)
    meta = pod.get("metadata") or {}
    name = f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    if status.get("phase") == "Succeeded" and spec.get("restartPolicy") in ("Never", "OnFailure"):
        return None
    init_statuses = status.get("initContainerStatuses") or []
    main_statuses = status.get("containerStatuses") or []
    # Init containers first: while one fails, the main containers never start.
    policy = spec.get("restartPolicy") or "Always"
    for cs in init_statuses:
        term = (cs.get("state") or {}).get("terminated") or {}
        if policy == "Never" and term.get("exitCode") not in (None, 0):
            return PodFailure(name, "Init:Error", _termination_text(term), cs.get("name", ""), True)
        found = _container_failure(name, cs, True, max_restarts)
        if found:
            return found
    for cs in main_statuses:
        found = _container_failure(name, cs, False, max_restarts)
        if found:
            return found
    if status.get("phase") == "Failed":
        return PodFailure(name, status.get("reason") or "Failed", status.get("message") or "the pod failed")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            if cond.get("reason") != "Unschedulable":
                continue
            since = _parse_time(cond.get("lastTransitionTime"))
            now = now or datetime.now(UTC)
            if since is None or (now - since).total_seconds() >= unschedulable_after:
                return PodFailure(name, "Unschedulable", cond.get("message") or "no node fits the pod")
    return None


def is_ready(pod: Any) -> bool:
    pod = as_dict(pod)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


# --- with a cluster -------------------------------------------------------------------------------------
class PodsFailed(Exception):
    """Pods failed for good (or never became Ready): the message has the reasons, events and last errors."""

    def __init__(self, message: str, failures: list[PodFailure] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class PodsNotReady(PodsFailed):
    """The wait timed out before the pods were Ready (none had failed for good)."""


def _status_line(pod: dict) -> str:
    status = pod.get("status") or {}
    parts = [f"phase={status.get('phase', '?')}"]
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        key = next(iter(state), "?")
        reason = (state.get(key) or {}).get("reason", "")
        parts.append(
            f"{cs.get('name')}={key}{'(' + reason + ')' if reason else ''} restarts={cs.get('restartCount', 0)}"
        )
    return " ".join(parts)


def _log_tail(core: Any, namespace: str, pod: str, container: str, previous: bool, lines: int) -> str:
    try:
        text = core.read_namespaced_pod_log(
            pod, namespace, container=container, previous=previous, tail_lines=lines, _request_timeout=10
        )
    except Exception as exc:  # no log (never started), API error, timeout: say so, never hide the rest
        return f"(no log: {getattr(exc, 'reason', None) or exc})"
    return str(text).rstrip() or "(empty log)"


def explain(core: Any, namespace: str, pods: list[Any], *, events: int = 10, log_lines: int = 20) -> str:
    """For each pod: its status, why it failed (if it did), its recent events, and each failing container's
    last error (its termination message, else the tail of its log)."""
    out: list[str] = []
    for raw in pods:
        pod = as_dict(raw)
        name = (pod.get("metadata") or {}).get("name", "")
        failure = pod_failure(pod)
        out.append(f"pod {namespace}/{name}: {_status_line(pod)}")
        if failure:
            out.append(f"  failed: {failure.reason}: {failure.message}")
        try:
            items = core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}", _request_timeout=10
            ).items
            items.sort(key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp))
            for ev in items[-events:]:
                out.append(f"  event {ev.type} {ev.reason}: {ev.message} (x{ev.count or 1})")
        except Exception as exc:
            out.append(f"  (events not listed: {getattr(exc, 'reason', None) or exc})")
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            if cs.get("ready"):
                continue
            state = cs.get("state") or {}
            term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated") or {}
            waiting = state.get("waiting") or {}
            cname = cs.get("name", "")
            if term:
                out.append(f"  container {cname} last terminated: {_termination_text(term)}")
                if not term.get("message"):
                    previous = not state.get("terminated") and bool(cs.get("restartCount"))
                    tail = _log_tail(core, namespace, name, cname, previous, log_lines)
                    out.append("    log tail:\n" + "\n".join(f"      {line}" for line in tail.splitlines()))
            elif waiting.get("message"):
                out.append(f"  container {cname} waiting: {waiting.get('reason')}: {waiting['message']}")
    return "\n".join(out) if out else f"no pods in {namespace}"


def wait_for_pods_ready(
    core: Any,
    namespace: str,
    label_selector: str,
    timeout: float,
    what: str,
    *,
    count: int | None = None,
    interval: float = 1.0,
    max_restarts: int = MAX_RESTARTS,
    unschedulable_after: float = UNSCHEDULABLE_AFTER_S,
) -> list[Any]:
    """Wait until the pods matching ``label_selector`` are Ready (``count`` of them, or all of at least
    one when None) and return them (V1Pod). Raises PodsFailed as soon as one fails for good before enough
    are Ready, and PodsNotReady (with the same explanation) at the timeout."""
    deadline = time.monotonic() + timeout
    last_error = ""
    pods: list[Any] = []
    while True:
        try:
            pods = [
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector=label_selector, _request_timeout=10
                ).items
                if p.metadata.deletion_timestamp is None
            ]
            last_error = ""
        except Exception as exc:  # the API may blink (restart); it counts as "not yet"
            last_error = f"last API error: {getattr(exc, 'status', '')} {getattr(exc, 'reason', None) or exc}"
        ready = [p for p in pods if is_ready(p)]
        wanted = count if count is not None else max(1, len(pods))
        if pods and len(ready) >= wanted:
            return ready
        failures = [
            f
            for p in pods
            if (f := pod_failure(p, max_restarts=max_restarts, unschedulable_after=unschedulable_after))
        ]
        if failures:
            head = "; ".join(str(f) for f in failures)
            raise PodsFailed(f"{what}: {head}\n{explain(core, namespace, pods)}", failures)
        if time.monotonic() >= deadline:
            selector = f"pods with {label_selector!r} in {namespace}"
            status = f"{len(ready)} of {wanted} Ready" if pods else "no pod exists"
            detail = explain(core, namespace, pods) if pods else ""
            parts = [f"{what}: not Ready after {timeout:.0f} s ({selector}: {status})", last_error, detail]
            raise PodsNotReady("\n".join(p for p in parts if p))
        time.sleep(interval)
