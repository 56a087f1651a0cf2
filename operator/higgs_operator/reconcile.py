"""One reconcile of a HiggsDeployment: secret check, render, apply, prune. Synchronous (run in a thread)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import ApiClient

from . import kube
from .constants import HANDOVER_MANAGER, OWNER_LABEL, RENDER_HASH_ANNOTATION
from .helm import helm_template
from .render import (
    APPLIABLE_KINDS,
    RenderError,
    identity,
    owned_objects,
    parse_manifests,
    prune_set,
    replicas_handover,
)
from .secrets import SecretCheck, check_secret, mirrored_secret, secret_value, token_ref
from .state import ChildInfo, ResourceState
from .values import chart_values, desired_replicas


@dataclass(frozen=True)
class OperatorConfig:
    chart: str
    operator_namespace: str
    resync_s: float = 60.0
    status_s: float = 5.0
    # A fixed version (--kube-version), or how to get the API server's (kube.ServerVersion, re-read).
    kube_version: str | Callable[[], str] = "1.35.0"

    def render_kube_version(self) -> str:
        return self.kube_version if isinstance(self.kube_version, str) else self.kube_version()


@dataclass(frozen=True)
class Outcome:
    secret: SecretCheck
    applied: int  # objects whose resourceVersion moved
    pruned: int
    failure: tuple[str, str] | None = None


def child_info(obj: dict) -> ChildInfo:
    meta = obj["metadata"]
    return ChildInfo(
        obj["apiVersion"],
        obj["kind"],
        meta["name"],
        meta["namespace"],
        (meta.get("annotations") or {}).get(RENDER_HASH_ANNOTATION),
        meta.get("resourceVersion"),
        meta.get("generation"),
    )


def _check_token(
    api: ApiClient, body: dict, cfg: OperatorConfig, st: ResourceState
) -> tuple[SecretCheck, dict | None]:
    spec, meta = body["spec"], body["metadata"]
    token = token_ref(spec, meta["name"])
    refs: set[tuple[str, str]] = set()
    mirrored = None
    if token is None:
        check = SecretCheck(True, "SecretNotReferenced", "spec.hfToken not set: public model download")
    elif token.mirror_from:
        refs.add((cfg.operator_namespace, token.mirror_from))
        src = kube.get(api, "v1", "secrets", cfg.operator_namespace, token.mirror_from)
        check = check_secret(src, cfg.operator_namespace, token.mirror_from, token.key)
        if check.ready and src is not None:
            mirrored = mirrored_secret(src, cfg.operator_namespace, token.key, token.name, meta["namespace"])
    else:
        refs.add((meta["namespace"], token.name))
        check = check_secret(
            kube.get(api, "v1", "secrets", meta["namespace"], token.name),
            meta["namespace"],
            token.name,
            token.key,
        )
    api_key_ref = (spec.get("apiKey") or {}).get("secretRef")
    st.api_key = None
    if api_key_ref:
        refs.add((meta["namespace"], api_key_ref["name"]))
        key_secret = kube.get(api, "v1", "secrets", meta["namespace"], api_key_ref["name"])
        value = secret_value(key_secret, api_key_ref.get("key", "api_key")) if key_secret else None
        st.api_key = value.decode().strip() if value else None
    st.secret_refs = refs
    return check, mirrored


def render_children(body: dict, cfg: OperatorConfig, st: ResourceState, checksum: str | None) -> list[dict]:
    """Objects to apply for ``body``: the chart rendered from its spec, owned and labelled."""
    spec, meta = body["spec"], body["metadata"]
    token = token_ref(spec, meta["name"])
    current = ((st.deployment or {}).get("spec") or {}).get("replicas")
    values = chart_values(
        meta["name"],
        spec,
        token,
        checksum,
        desired_replicas(spec, current),
        operator_namespace=cfg.operator_namespace,
    )
    kube_version = cfg.render_kube_version()
    key = hashlib.sha256(json.dumps([values, kube_version], sort_keys=True).encode()).hexdigest()
    if st.render_cache and st.render_cache[0] == key:
        objects = json.loads(json.dumps(st.render_cache[1]))
    else:
        objects = parse_manifests(
            helm_template(cfg.chart, meta["name"], meta["namespace"], values, kube_version)
        )
        st.render_cache = (key, json.loads(json.dumps(objects)))
    for obj in objects:
        if obj["kind"] == "Deployment":
            if spec.get("autoscaling"):
                # The autoscaler owns replicas (scale subresource); applying it here would fight it.
                obj["spec"].pop("replicas", None)
            template_meta = obj["spec"]["template"].setdefault("metadata", {})
            template_meta["labels"] = {**(template_meta.get("labels") or {}), OWNER_LABEL: meta["uid"]}
    return owned_objects(objects, body)


def service_endpoint(objects: list[dict]) -> str:
    for obj in objects:
        if obj["kind"] == "Service":
            ports = obj["spec"].get("ports") or [{}]
            meta = obj["metadata"]
            return f"http://{meta['name']}.{meta['namespace']}.svc:{ports[0].get('port', 8000)}"
    return ""


REJECTED = (400, 403, 422)  # the object or the operator's rights are wrong: retrying will not help
# A kind the API server does not serve (404 on apply): its CRD is missing. The periodic re-apply retries.
NOT_SERVED = {
    "ScaledObject": "KEDA is not installed (no scaledobjects.keda.sh CRD): install KEDA, or set "
    "spec.autoscaling.engine to operator or hpa",
}


def _api_message(err: kube.ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message", err.reason))[:800]
    except ValueError:
        return str(err.reason)


def reconcile(
    api: ApiClient, body: dict, cfg: OperatorConfig, st: ResourceState, force: bool = False
) -> Outcome:
    """Bring the children of ``body`` to what the chart renders. ``force`` re-applies unchanged objects."""
    check, mirrored = _check_token(api, body, cfg, st)
    st.secret = check
    if not check.ready:
        # Start no new pods and leave running ones alone: apply nothing until the secret is usable.
        return Outcome(check, 0, 0)
    try:
        desired = render_children(body, cfg, st, check.checksum)
        if mirrored is not None:
            desired = [*owned_objects([mirrored], body), *desired]
    except RenderError as err:
        st.failure = ("RenderFailed", str(err))
        return Outcome(check, 0, 0, st.failure)
    st.endpoint = service_endpoint(desired)
    handover = replicas_handover(st.deployment) if body["spec"].get("autoscaling") else None
    if handover is not None:  # before the apply below drops replicas the operator owned
        kube.apply(api, handover, field_manager=HANDOVER_MANAGER)
    applied = 0
    for obj in desired:
        live = st.children.get(identity(obj))
        want = obj["metadata"]["annotations"][RENDER_HASH_ANNOTATION]
        if not force and live is not None and live.render_hash == want:
            continue
        try:
            result = kube.apply(api, obj, live.resource_version if live else None)
        except kube.ApiException as err:
            missing = err.status == 404 and NOT_SERVED.get(obj["kind"])
            if err.status not in REJECTED and not missing:
                raise  # conflicts, throttling, outages: kopf retries with back-off
            st.failure = (
                "ApplyFailed",
                f"{obj['kind']}/{obj['metadata']['name']} rejected: {missing or _api_message(err)}",
            )
            return Outcome(check, applied, 0, st.failure)
        info = child_info(result)
        if live is None or info.resource_version != live.resource_version:
            applied += 1
        st.children[identity(result)] = info
    st.failure = None
    names = frozenset(identity(o) for o in desired)
    pruned = 0
    if force or names != st.rendered_names:
        live_children = [
            o
            for (api_version, kind), plural in APPLIABLE_KINDS.items()
            for o in kube.list_objects(
                api,
                api_version,
                plural,
                body["metadata"]["namespace"],
                f"{OWNER_LABEL}={body['metadata']['uid']}",
            )
            if o.setdefault("kind", kind)
        ]
        for obj in prune_set(live_children, desired, body["metadata"]["uid"]):
            kube.delete(api, obj)
            st.children.pop(identity(obj), None)
            pruned += 1
        st.rendered_names = names
    return Outcome(check, applied, pruned)
