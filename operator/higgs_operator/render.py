"""The pure steps of chart rendering: the ``helm template`` command line, rendered YAML to objects to apply.

Running helm is :mod:`higgs_operator.helm`'s job; nothing here starts a process or reads the environment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import yaml

from .constants import API_VERSION, FIELD_MANAGER, KIND, OWNER_LABEL, RENDER_HASH_ANNOTATION

# Kinds the operator may apply (namespaced only): a chart change that adds another kind must add it here
# and to the RBAC in charts/higgs-operator, which a test keeps in step.
APPLIABLE_KINDS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("apps/v1", "Deployment"): "deployments",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    # spec.autoscaling.engine hpa / keda: the chart's autoscaler, which then owns the replicas.
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
}


class RenderError(RuntimeError):
    """helm failed, or rendered something the operator will not apply."""


def helm_template_argv(
    helm: str, chart: str, release: str, namespace: str, values_file: str, kube_version: str
) -> list[str]:
    """The ``helm template`` command line that renders ``chart`` as ``release`` with a values file.

    ``kube_version`` is the cluster's (helm template otherwise assumes an old default and charts with a
    kubeVersion constraint refuse to render).
    """
    return [
        helm,
        "template",
        release,
        chart,
        "--namespace",
        namespace,
        "--values",
        values_file,
        "--kube-version",
        kube_version,
    ]


def parse_manifests(text: str) -> list[dict]:
    """Multi-document YAML -> objects, skipping empty documents and helm hooks (tests, install jobs)."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        raise RenderError(f"rendered chart is not valid YAML: {err}") from err
    objects = []
    for doc in docs:
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise RenderError(f"rendered document is not a Kubernetes object: {str(doc)[:120]}")
        if "helm.sh/hook" in ((doc.get("metadata") or {}).get("annotations") or {}):
            continue
        objects.append(doc)
    return objects


def object_hash(obj: dict) -> str:
    """Stable hash of an object's content (without the hash annotation itself)."""
    clean = json.loads(json.dumps(obj))
    meta = clean.get("metadata") or {}
    (meta.get("annotations") or {}).pop(RENDER_HASH_ANNOTATION, None)
    if "annotations" in meta and not meta["annotations"]:
        del meta["annotations"]
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:16]


def owner_reference(owner: dict) -> dict:
    meta = owner["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_objects(objects: Iterable[dict], owner: dict) -> list[dict]:
    """Objects to apply: in the owner's namespace, owned by it, labelled, with a content hash."""
    meta = owner["metadata"]
    result = []
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key not in APPLIABLE_KINDS:
            raise RenderError(
                f"chart rendered {obj['kind']} ({obj['apiVersion']}), which the operator does not apply"
            )
        out = json.loads(json.dumps(obj))
        m = out.setdefault("metadata", {})
        if m.get("namespace") not in (None, meta["namespace"]):
            raise RenderError(f"{obj['kind']}/{m.get('name')} rendered into namespace {m['namespace']}")
        m["namespace"] = meta["namespace"]
        m["labels"] = {**(m.get("labels") or {}), OWNER_LABEL: meta["uid"]}
        m["ownerReferences"] = [owner_reference(owner)]
        m["annotations"] = {**(m.get("annotations") or {}), RENDER_HASH_ANNOTATION: object_hash(out)}
        result.append(out)
    return result


def replicas_handover(deployment: dict | None) -> dict | None:
    """What to apply, under another field manager, before the operator's apply stops sending a
    Deployment's replicas (spec.autoscaling set where spec.replicas was): server-side apply deletes a
    field its only manager stops sending, and the Deployment would fall back to 1 replica. Co-owned, the
    field keeps its value until an autoscaler's scale write takes it over (the Kubernetes docs' "transfer
    ownership" for an HPA). None when the operator's apply owns no replicas."""
    if not deployment or (deployment.get("spec") or {}).get("replicas") is None:
        return None
    meta = deployment["metadata"]
    owned = any(
        m.get("manager") == FIELD_MANAGER
        and m.get("operation") == "Apply"
        and "f:replicas" in ((m.get("fieldsV1") or {}).get("f:spec") or {})
        for m in meta.get("managedFields") or []
    )
    if not owned:
        return None
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": deployment["spec"]["replicas"]},
    }


def identity(obj: dict) -> tuple[str, str, str]:
    """(group, kind, name): the version is not part of an object's identity."""
    api = obj["apiVersion"]
    group = api.split("/")[0] if "/" in api else ""
    return group, obj["kind"], obj["metadata"]["name"]


def _controlled_by_another(obj: dict, owner_uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") != owner_uid for r in refs)


def prune_set(live: Sequence[dict], desired: Sequence[dict], owner_uid: str) -> list[dict]:
    """Live children of this owner that are no longer rendered (to delete). An object another controller
    owns is never one, though it carries the owner label: KEDA copies a ScaledObject's labels onto the
    HPA it makes (keda-hpa-<name>, controlled by the ScaledObject)."""
    wanted = {identity(o) for o in desired}
    return [
        o
        for o in live
        if ((o.get("metadata") or {}).get("labels") or {}).get(OWNER_LABEL) == owner_uid
        and identity(o) not in wanted
        and not _controlled_by_another(o, owner_uid)
    ]
