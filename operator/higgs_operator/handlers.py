"""kopf handlers: thin glue from watch events to the reconcile, scaling and status modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import kopf
from kubernetes.client import ApiClient

from . import kube, op_metrics, probes
from .constants import GROUP, OWNER_LABEL, PLURAL, VERSION
from .reconcile import OperatorConfig, child_info, reconcile
from .render import identity
from .scaling import AutoscalingPolicy, decide
from .state import ChildInfo, Registry, ResourceState
from .status import (
    Condition,
    StatusInputs,
    build_status,
    handed_off,
    pod_ready,
    rfc3339,
    scaling_fields,
    warning,
)
from .values import HANDED_OFF, desired_replicas, operator_scales, scaling_engine

NOT_POLLED = Condition("ScalingActive", "Unknown", "NotPolledYet", "metrics not scraped yet")


class OperatorMemo(kopf.Memo):
    """The operator's state, handed to kopf as its memo (``kopf.operator(memo=...)``) by cli.main.

    kopf gives every handler ``memo``: activity handlers this object, resource handlers a shallow copy
    of it, so the config, the registry and the API client are the same objects everywhere.
    """

    config: OperatorConfig
    registry: Registry
    api: ApiClient


def operator_memo(config: OperatorConfig, api: ApiClient) -> OperatorMemo:
    return OperatorMemo(config=config, registry=Registry(), api=api)


CHILD_KINDS = (("apps", "v1", "deployments"), ("", "v1", "services"), ("", "v1", "configmaps"))
CHILD_KINDS_EXTRA = (
    ("", "v1", "serviceaccounts"),
    ("", "v1", "persistentvolumeclaims"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    # engine hpa/keda. Without KEDA's CRD kopf logs scaledobjects as unresolved and watches them once it
    # appears (it watches CRDs): no crash, nothing to guard.
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("keda.sh", "v1alpha1", "scaledobjects"),
)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = logging.WARNING  # handler chatter is not worth an Event write each
    settings.watching.server_timeout = 300


@kopf.on.cleanup()
def close_api(memo: OperatorMemo, **_: object) -> None:
    memo.api.close()


async def _reconcile(memo: OperatorMemo, body: kopf.Body, force: bool, logger: kopf.Logger) -> None:
    st = memo.registry.get(body["metadata"]["uid"])
    previous_failure = st.failure
    token_before = st.secret.checksum if st.secret else None
    started, ok = time.monotonic(), False
    try:
        async with st.lock:
            with op_metrics.counting_errors("api", kube.ApiException):
                outcome = await asyncio.to_thread(reconcile, memo.api, dict(body), memo.config, st, force)
        ok = outcome.failure is None
    finally:
        op_metrics.record_reconcile(time.monotonic() - started, ok)
    if outcome.failure:
        op_metrics.record_error("render" if outcome.failure[0] == "RenderFailed" else "apply")
    token_after = outcome.secret.checksum
    if token_before and token_after and token_after != token_before and outcome.failure is None:
        # The checksum is on the pod template: a changed token applied is a rollout.
        op_metrics.record_token_rotation(body["metadata"]["namespace"], body["metadata"]["name"])
    if not outcome.secret.ready and outcome.secret.reason != st.last_secret_reason:
        kopf.warn(
            body, reason=outcome.secret.reason, message=f"{outcome.secret.message}; no new pods started"
        )
    st.last_secret_reason = outcome.secret.reason if not outcome.secret.ready else None
    if outcome.failure and outcome.failure != previous_failure:
        kopf.warn(body, reason=outcome.failure[0], message=outcome.failure[1][:1000])
    if outcome.applied or outcome.pruned:
        logger.info("applied %d object(s), pruned %d", outcome.applied, outcome.pruned)
    st.last_resync = time.monotonic() if force else st.last_resync
    st.wake.set()  # refresh status now


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_handler(body: kopf.Body, logger: kopf.Logger, memo: OperatorMemo, **_: object) -> None:
    await _reconcile(memo, body, force=False, logger=logger)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget(uid: str, namespace: str | None, name: str, memo: OperatorMemo, **_: object) -> None:
    # Children (the mirrored Secret included) carry owner references: the garbage collector removes them.
    memo.registry.drop(uid)
    op_metrics.forget(namespace or "", name)


def _pod_url(pod: dict, port: int) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    return f"http://{ip}:{port}" if ip else None


async def _autoscale(api: ApiClient, body: kopf.Body, st: ResourceState, logger: kopf.Logger) -> None:
    spec, meta = body["spec"], body["metadata"]
    policy = AutoscalingPolicy.from_spec(spec["autoscaling"])
    headers = {"Authorization": f"Bearer {st.api_key}"} if st.api_key else None
    port = int(spec.get("port", 8000))
    targets = {n: u for n, p in st.pods.items() if pod_ready(p) and (u := _pod_url(p, port))}
    result = await probes.scrape(targets, headers)
    op_metrics.record_error("scrape", len(result.failures))
    if st.deployment is None:
        return
    current = int((st.deployment.get("spec") or {}).get("replicas") or 0)
    decision = decide(policy, current, result.samples, len(result.failures), st.history, time.monotonic())
    st.history = decision.history
    now = rfc3339(datetime.now(UTC))
    update: dict = {"desiredReplicas": decision.replicas}
    if result.samples:
        kv = [s.kv_cache for s in result.samples if s.kv_cache is not None]
        pods = len(result.samples)
        streams = sum(s.running for s in result.samples)
        update["metrics"] = {
            "waiting": sum(s.waiting for s in result.samples),
            "running": streams,
            "streamsPerReplica": round(streams / pods, 3),
            "scrapedPods": len(result.samples),
            "failedScrapes": len(result.failures),
            "time": now,
        }
        if kv:  # absent rather than null: a merge patch would drop a null and the next compare would differ
            update["metrics"]["kvCache"] = round(max(kv), 4)
        op_metrics.set_signals(
            meta["namespace"],
            meta["name"],
            {
                "waiting": update["metrics"]["waiting"] / pods,
                "streams": streams / pods,
                "kvcache": sum(kv) / len(kv) if kv else None,
            },
        )
        st.autoscale_status["ScalingActive"] = Condition(
            "ScalingActive", "True", "MetricsAvailable", decision.reason
        )
    elif targets:
        why = "; ".join(result.failures)[:500]
        st.autoscale_status["ScalingActive"] = Condition("ScalingActive", "False", "FailedGetMetrics", why)
    else:
        st.autoscale_status["ScalingActive"] = Condition(
            "ScalingActive", "False", "NoReadyPods", decision.reason
        )
    op_metrics.set_max_replicas(meta["namespace"], meta["name"], policy.max_replicas)
    if decision.replicas != current:
        with op_metrics.counting_errors("api", kube.ApiException):
            await asyncio.to_thread(
                kube.scale_deployment, api, meta["namespace"], meta["name"], decision.replicas
            )
        signal = decision.signal or ""  # set whenever the count changes (scaling.decide)
        if signal:
            direction = "up" if decision.replicas > current else "down"
            op_metrics.record_scaling(meta["namespace"], meta["name"], signal, direction)
        update["lastScaling"] = {
            "time": now,
            "from": current,
            "to": decision.replicas,
            "signal": signal,
            "reason": decision.reason[:500],
        }
        kopf.event(
            body,
            type="Normal",
            reason="Scaled",
            message=f"{current} -> {decision.replicas} on {signal or 'no signal'}: {decision.reason}"[:1000],
        )
        logger.info("scaled %d -> %d: %s", current, decision.replicas, decision.reason)
        st.deployment.setdefault("spec", {})["replicas"] = decision.replicas
    st.autoscale_status["fields"] = update


async def _refresh_status(api: ApiClient, body: kopf.Body, st: ResourceState) -> None:
    spec, meta = body["spec"], body["metadata"]
    if st.secret is None:
        return  # not reconciled yet in this process
    ready_pods = [p for p in st.pods.values() if pod_ready(p)]
    port = int(spec.get("port", 8000))
    models_ok, models_msg = None, ""
    if ready_pods and (url := _pod_url(ready_pods[0], port)):
        headers = {"Authorization": f"Bearer {st.api_key}"} if st.api_key else None
        models_ok, models_msg = await probes.model_served(url, spec.get("servedModelName", ""), headers)
    current = ((st.deployment or {}).get("spec") or {}).get("replicas")
    desired = desired_replicas(spec, current)
    op_metrics.set_replicas(meta["namespace"], meta["name"], desired, len(ready_pods))
    engine = scaling_engine(spec)
    if operator_scales(spec):
        scaling = st.autoscale_status.get("ScalingActive") or NOT_POLLED
    else:  # fixed replicas, or an HPA / KEDA scales: no scaling figures of the operator's to show
        scaling = handed_off(engine, meta["name"]) if engine in HANDED_OFF else None
        op_metrics.set_max_replicas(meta["namespace"], meta["name"], None)
        op_metrics.set_signals(meta["namespace"], meta["name"], {})
    inputs = StatusInputs(
        generation=int(meta.get("generation") or 0),
        secret=st.secret,
        deployment=st.deployment,
        pods=list(st.pods.values()),
        desired_replicas=desired,
        models_ok=models_ok,
        models_message=models_msg,
        scaling=scaling,
        failure=st.failure,
        degraded_after_s=float(spec.get("degradedAfterSeconds", 600)),
        previous=list((body.get("status") or {}).get("conditions") or []),
    )
    new = build_status(inputs, datetime.now(UTC))
    warn = warning(new)
    if warn is not None and warn[0] != st.last_warning:
        kopf.warn(body, reason=warn[0], message=warn[1][:1000])
    st.last_warning = warn[0] if warn else None
    new["endpoint"] = st.endpoint
    new["desiredReplicas"] = desired
    new.update(scaling_fields(operator_scales(spec), st.autoscale_status.get("fields") or {}))
    live = dict(body.get("status") or {})
    if any(live.get(k) != v for k, v in new.items()):
        with op_metrics.counting_errors("status", kube.ApiException):
            await asyncio.to_thread(kube.patch_status, api, meta["namespace"], meta["name"], new)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def watch_resource(
    stopped: kopf.DaemonStopped, body: kopf.Body, logger: kopf.Logger, memo: OperatorMemo, **_: object
) -> None:
    """Per-resource loop: re-reconcile when poked or due, autoscale on its poll, keep status fresh."""
    cfg = memo.config
    st = memo.registry.get(body["metadata"]["uid"])
    st.last_resync = time.monotonic()
    while not stopped:
        now = time.monotonic()
        try:
            if st.dirty or now - st.last_resync >= cfg.resync_s:
                force = st.force or now - st.last_resync >= cfg.resync_s
                st.dirty = st.force = False
                await _reconcile(memo, body, force=force, logger=logger)
                st.last_resync = time.monotonic() if force else st.last_resync
            autoscaling = body["spec"].get("autoscaling")
            # engine hpa/keda: no scrape and no scale write, ever (that controller owns the replicas).
            scales = operator_scales(body["spec"])
            if scales and time.monotonic() >= st.next_poll and st.secret and st.secret.ready:
                st.next_poll = time.monotonic() + float(autoscaling.get("pollSeconds", 15))
                await _autoscale(memo.api, body, st, logger)
            await _refresh_status(memo.api, body, st)
        except kube.ApiException as err:
            logger.warning("API error (will retry): %s %s", err.status, err.reason)
        except Exception:  # keep the loop alive; kopf would restart the daemon anyway
            logger.exception("reconcile loop failed (will retry)")
        deadlines = [st.last_resync + cfg.resync_s, time.monotonic() + cfg.status_s]
        if operator_scales(body["spec"]):
            deadlines.append(st.next_poll)
        timeout = max(0.05, min(deadlines) - time.monotonic())
        st.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.wake.wait(), timeout=timeout)
    if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
        # kopf runs the delete handler (forget) beside this loop's last pass, which may set series again.
        op_metrics.forget(body["metadata"]["namespace"], body["metadata"]["name"])


def _owner_uid(labels: Mapping[str, str]) -> str | None:
    return (labels or {}).get(OWNER_LABEL)


# Kinds whose status keeps changing: an edit shows as a new generation, not just a new resourceVersion.
# (A HorizontalPodAutoscaler keeps no generation: an edit of one is repaired by the periodic re-apply.)
GENERATION_KINDS = ("Deployment", "PodDisruptionBudget", "NetworkPolicy", "ScaledObject")
VERSION_KINDS = ("Service", "ConfigMap", "ServiceAccount", "Secret")


def _edited(kind: str, known: ChildInfo, seen: ChildInfo) -> bool:
    """Whether a watch event shows a child changed since the operator applied it (drift to repair)."""
    if known.render_hash != seen.render_hash:
        return True
    if kind in GENERATION_KINDS:
        return known.generation is not None and seen.generation != known.generation
    return kind in VERSION_KINDS and seen.resource_version != known.resource_version


def note_child(registry: Registry, event_type: str | None, obj: dict, labels: Mapping[str, str]) -> None:
    """A child changed: remember it; if it was deleted or edited away from what was rendered, repair."""
    uid = _owner_uid(labels)
    if not uid or (event_type == "DELETED" and uid not in registry.by_uid):
        return
    st = registry.get(uid)  # children may be listed before their owner at startup
    key = identity(obj)
    if event_type == "DELETED":
        st.children.pop(key, None)
        if obj["kind"] == "Deployment":
            st.deployment = None
        st.poke()
        return
    info = child_info(obj)
    known = st.children.get(key)
    st.children[key] = info
    if obj["kind"] == "Deployment":
        st.deployment = obj
        st.wake.set()
    if known is not None and _edited(obj["kind"], known, info):
        st.poke(force=True)


def note_pod(registry: Registry, event_type: str | None, obj: dict, labels: Mapping[str, str]) -> None:
    """A serving pod changed: keep the pods of its owner current and refresh its status now."""
    uid = _owner_uid(labels)
    if not uid or (event_type == "DELETED" and uid not in registry.by_uid):
        return
    st = registry.get(uid)
    name = obj["metadata"]["name"]
    if event_type == "DELETED":
        st.pods.pop(name, None)
    else:
        st.pods[name] = obj
    st.wake.set()


def note_secret(registry: Registry, event_type: str | None, obj: dict, labels: Mapping[str, str]) -> None:
    """A referenced token Secret changed (created, rotated, deleted), or an owned copy changed."""
    states = registry.referring(obj["metadata"]["namespace"], obj["metadata"]["name"])
    if _owner_uid(labels):
        note_child(registry, event_type, obj, labels)
    for st in states:
        st.poke()


def on_child(
    event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, memo: OperatorMemo, **_: object
) -> None:
    note_child(memo.registry, event["type"], dict(body), labels)


for _group, _version, _plural in (*CHILD_KINDS, *CHILD_KINDS_EXTRA):
    kopf.on.event(_group, _version, _plural, labels={OWNER_LABEL: kopf.PRESENT})(on_child)


@kopf.on.event("", "v1", "pods", labels={OWNER_LABEL: kopf.PRESENT})
def on_pod(
    event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, memo: OperatorMemo, **_: object
) -> None:
    note_pod(memo.registry, event["type"], dict(body), labels)


@kopf.on.event("", "v1", "secrets")
def on_secret(
    event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, memo: OperatorMemo, **_: object
) -> None:
    note_secret(memo.registry, event["type"], dict(body), labels)


@kopf.on.probe(id="writes")
def writes_probe(**_: object) -> dict[str, int]:
    """API writes by verb and kind since start (on the health endpoint; read by the benchmark)."""
    return dict(kube.WRITES)
