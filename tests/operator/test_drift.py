"""Which watch events count as drift of a child (to re-apply), and what child, pod and Secret events do."""

from higgs_operator.constants import OWNER_LABEL, RENDER_HASH_ANNOTATION
from higgs_operator.handlers import _edited, note_child, note_pod, note_secret
from higgs_operator.state import ChildInfo, Registry


def test_edited_detects_drift_per_kind():
    base = ChildInfo("apps/v1", "Deployment", "x", "ns", "h1", "10", 3)
    assert not _edited(
        "Deployment", base, ChildInfo("apps/v1", "Deployment", "x", "ns", "h1", "11", 3)
    )  # status
    assert _edited(
        "Deployment", base, ChildInfo("apps/v1", "Deployment", "x", "ns", "h1", "12", 4)
    )  # spec edit
    assert _edited(
        "Deployment", base, ChildInfo("apps/v1", "Deployment", "x", "ns", "h2", "12", 3)
    )  # our hash
    svc = ChildInfo("v1", "Service", "x", "ns", "h1", "10", None)
    assert _edited("Service", svc, ChildInfo("v1", "Service", "x", "ns", "h1", "11", None))
    assert not _edited("Service", svc, ChildInfo("v1", "Service", "x", "ns", "h1", "10", None))


def _child(kind, name, uid="u1", rv="1", gen=None, render_hash="h1"):
    api = "apps/v1" if kind == "Deployment" else "v1"
    meta = {
        "name": name,
        "namespace": "ns",
        "resourceVersion": rv,
        "labels": {OWNER_LABEL: uid},
        "annotations": {RENDER_HASH_ANNOTATION: render_hash},
    }
    if gen is not None:
        meta["generation"] = gen
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def test_child_events_feed_the_registry_and_poke_on_drift():
    registry = Registry()
    dep = _child("Deployment", "tts", gen=1)
    note_child(registry, "ADDED", dep, dep["metadata"]["labels"])
    st = registry.by_uid["u1"]
    assert st.deployment == dep and not st.dirty
    edited = _child("Deployment", "tts", rv="2", gen=2)
    note_child(registry, "MODIFIED", edited, edited["metadata"]["labels"])
    assert st.dirty and st.force
    st.dirty = st.force = False
    note_child(registry, "DELETED", edited, edited["metadata"]["labels"])
    assert st.deployment is None and st.dirty and not st.force
    # A deleted child of an owner this process never saw creates no state.
    gone = _child("Service", "x", uid="u2")
    note_child(registry, "DELETED", gone, gone["metadata"]["labels"])
    assert "u2" not in registry.by_uid


def test_pod_and_secret_events():
    registry = Registry()
    pod = {"metadata": {"name": "p1", "namespace": "ns", "labels": {OWNER_LABEL: "u1"}}}
    note_pod(registry, "ADDED", pod, pod["metadata"]["labels"])
    st = registry.by_uid["u1"]
    assert st.pods == {"p1": pod} and st.wake.is_set()
    note_pod(registry, "DELETED", pod, pod["metadata"]["labels"])
    assert st.pods == {}
    st.secret_refs = {("ns", "hf")}
    token = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf", "namespace": "ns"}}
    note_secret(registry, "MODIFIED", token, {})
    assert st.dirty and not st.force
    assert list(registry.by_uid) == ["u1"]
