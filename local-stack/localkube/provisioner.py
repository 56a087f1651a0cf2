"""Dynamic provisioning for the default StorageClass ``localkube-hostpath``: hostPath PVs on this host.

The kube-controller-manager's PV controller does the binding; this provisioner only creates a PV
(``<state-dir>/pv/<pv-name>``, the claim's size and access modes, ``claimRef`` to the claim) for
each pending claim of the class, and deletes the directory and the PV once a PV with reclaim
policy Delete is Released.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from .json_client import ApiError, KubeClient

log = logging.getLogger("localkube.provisioner")

STORAGE_CLASS = "localkube-hostpath"
PROVISIONER = "localkube.higgs.dev/hostpath"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class() -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        # Every node is this host, so there is no topology to wait for.
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def wants_volume(pvc: dict, default_class: bool = True) -> bool:
    """A pending claim of our class (or of no class, when ours is the default) without a volume."""
    spec = pvc.get("spec", {})
    cls = spec.get("storageClassName")
    ours = cls == STORAGE_CLASS or (cls is None and default_class)
    annotated = (pvc.get("metadata", {}).get("annotations") or {}).get(
        "volume.kubernetes.io/storage-provisioner"
    ) in (None, PROVISIONER)
    return (
        ours
        and annotated
        and not spec.get("volumeName")
        and pvc.get("status", {}).get("phase", "Pending") == "Pending"
    )


def pv_for_claim(pvc: dict, root: Path) -> dict:
    meta = pvc["metadata"]
    spec = pvc.get("spec", {})
    name = f"pvc-{meta['uid']}"
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


class Provisioner(threading.Thread):
    def __init__(self, api: KubeClient, root: Path, period: float = 1.0) -> None:
        super().__init__(name="provisioner", daemon=True)
        self.api = api
        self.root = root
        self.period = period
        self.stopped = threading.Event()
        self.class_ready = False

    def ensure_class(self) -> None:
        try:
            self.api.create("/apis/storage.k8s.io/v1/storageclasses", storage_class())
            log.info("created default StorageClass %s", STORAGE_CLASS)
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.class_ready = True

    def sync(self) -> None:
        if not self.class_ready:
            self.ensure_class()
        pvcs = self.api.list("/api/v1/persistentvolumeclaims").get("items", [])
        pvs = {
            pv["metadata"]["name"]: pv for pv in self.api.list("/api/v1/persistentvolumes").get("items", [])
        }
        for pvc in pvcs:
            if not wants_volume(pvc) or pvc["metadata"].get("deletionTimestamp"):
                continue
            pv = pv_for_claim(pvc, self.root)
            if pv["metadata"]["name"] in pvs:
                continue
            Path(pv["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
            try:
                self.api.create("/api/v1/persistentvolumes", pv)
                log.info(
                    "provisioned %s for %s/%s",
                    pv["metadata"]["name"],
                    pvc["metadata"]["namespace"],
                    pvc["metadata"]["name"],
                )
            except ApiError as exc:
                if exc.status != 409:
                    log.warning("provisioning for %s failed: %s", pvc["metadata"]["name"], exc)
        for name, pv in pvs.items():
            ours = (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
            released = pv.get("status", {}).get("phase") in ("Released", "Failed")
            if ours and released and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
                path = Path((pv["spec"].get("hostPath") or {}).get("path", ""))
                if path.is_relative_to(self.root) and path != self.root:
                    shutil.rmtree(path, ignore_errors=True)
                self.api.delete(f"/api/v1/persistentvolumes/{name}")
                log.info("deleted released volume %s", name)

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            try:
                self.sync()
            except ApiError as exc:
                log.warning("provisioner: %s", exc)

    def stop(self) -> None:
        self.stopped.set()
