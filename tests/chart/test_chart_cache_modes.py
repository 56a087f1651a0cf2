"""Model cache access modes against scaling out (#14): every combination renders, or is refused naming
the values and the way out. A claim without ReadWriteMany/ReadOnlyMany is mounted by one node at a
time, so a second replica, an autoscaled one or a RollingUpdate surge pod on another node would wait
forever on a Multi-Attach error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import chart as ck

SINGLE_NODE = (["ReadWriteOnce"], ["ReadWriteOncePod"])
SHARED = (["ReadWriteMany"], ["ReadOnlyMany"], ["ReadWriteOnce", "ReadWriteMany"])
SURGE = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
NO_SURGE = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 1}}
# (name, values that scale out or not, the value the refusal must name)
SCALING: list[tuple[str, dict[str, Any], str | None]] = [
    ("one-replica-recreate", {}, None),
    ("one-replica-no-surge", {"strategy": NO_SURGE}, None),
    ("two-replicas", {"replicaCount": 2}, "replicaCount 2"),
    ("autoscaling", {"autoscaling": {"enabled": True, "maxReplicas": 3}}, "autoscaling.maxReplicas 3"),
    ("autoscaling-max-one", {"autoscaling": {"enabled": True, "maxReplicas": 1}}, None),
    ("surge", {"strategy": SURGE}, "strategy.rollingUpdate.maxSurge 1"),
]


def _values(modes: list[str], scaling: dict[str, Any], create: bool = True) -> dict[str, Any]:
    pvc: dict[str, Any] = {"accessModes": modes}
    if not create:
        pvc.update(create=False, existingClaim="models")
    return {"modelCache": {"mode": "pvc", "pvc": pvc}, **scaling}


@pytest.mark.parametrize("create", [True, False], ids=["created-claim", "existing-claim"])
@pytest.mark.parametrize("name,scaling,names", SCALING, ids=[s[0] for s in SCALING])
def test_single_node_cache_refuses_scaling_out_naming_the_values(
    create: bool, name: str, scaling: dict[str, Any], names: str | None
) -> None:
    for modes in SINGLE_NODE:
        proc = ck.template(_values(modes, scaling, create))
        if names is None:
            assert proc.returncode == 0, f"{name} {modes}: {proc.stderr}"
            continue
        assert proc.returncode != 0, f"{name} {modes}: rendered"
        assert f"modelCache.pvc.accessModes {json.dumps(modes)}" in proc.stderr, proc.stderr
        assert names in proc.stderr, proc.stderr
        for way in ("[ReadWriteMany]", "strategy.type=Recreate", "modelCache.mode=none"):
            assert way in proc.stderr, proc.stderr
        assert ("the existing claim's modes" in proc.stderr) is (not create), proc.stderr


@pytest.mark.parametrize("name,scaling,names", SCALING, ids=[s[0] for s in SCALING])
def test_shared_cache_scales_out(name: str, scaling: dict[str, Any], names: str | None) -> None:
    for modes in SHARED:
        proc = ck.template(_values(modes, scaling))
        assert proc.returncode == 0, f"{name} {modes}: {proc.stderr}"


@pytest.mark.parametrize("mode", ["none", "existing"])
def test_other_cache_modes_scale_out(mode: str) -> None:
    cache: dict[str, Any] = {"mode": mode}
    if mode == "existing":
        cache["existing"] = {"hostPath": "/data/models"}
    for _, scaling, _ in SCALING:
        proc = ck.template({"modelCache": cache, **scaling})
        assert proc.returncode == 0, proc.stderr
