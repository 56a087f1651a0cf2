"""Bad values make helm fail with a message that names the value (values.schema.json and the
chart's cross-value checks)."""

from __future__ import annotations

import json
from typing import Any

import chartkit as ck
import pytest

# (values, text helm's error must contain: the value's path)
BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"gpuMemoryUtilization": 0}, "/gpuMemoryUtilization"),
    ({"gpuMemoryUtilization": 1.2}, "/gpuMemoryUtilization"),
    ({"gpuMemoryUtilization": "1.5"}, "/gpuMemoryUtilization"),
    ({"serverGeneration": "current"}, "/serverGeneration"),  # fork or omni only
    ({"omni": {"deployConfig": "deploy/higgs_audio_v2.yaml"}}, "/omni/deployConfig"),  # absolute only
    ({"omni": {"deployConfg": "/d.yaml"}}, "deployConfg"),
    ({"image": {"tag": "latest"}}, "/image/tag"),
    ({"image": {"digest": "sha256:xyz"}}, "/image/digest"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"model": {"revision": "main"}}, "/model/revision"),
    ({"audioTokenizer": {"repository": "no-slash"}}, "/audioTokenizer/repository"),
    ({"maxModelLen": 0}, "/maxModelLen"),
    ({"maxNumSeqs": 0}, "/maxNumSeqs"),
    ({"port": 70000}, "/port"),
    ({"limitMmPerPrompt": {"audio": -1}}, "/limitMmPerPrompt/audio"),
    ({"replicaCount": -1}, "/replicaCount"),
    ({"gpuCount": 1.5}, "/gpuCount"),
    ({"resources": {"limits": {"nvidia.com/gpu": 2}}}, "/resources/limits"),
    ({"modelCache": {"mode": "s3"}}, "/modelCache/mode"),
    ({"modelCache": {"mode": "existing"}}, "/modelCache/existing"),
    ({"modelCache": {"pvc": {"create": False}}}, "/modelCache/pvc/existingClaim"),
    ({"modelCache": {"pvc": {"size": "forty"}}}, "/modelCache/pvc/size"),
    ({"modelCache": {"pvc": {"accessModes": ["ReadWriteSometimes"]}}}, "/modelCache/pvc/accessModes"),
    ({"modelCache": {"hfEndpoint": "ftp://mirror"}}, "/modelCache/hfEndpoint"),
    ({"modelCache": {"mountPath": "models"}}, "/modelCache/mountPath"),
    ({"hfToken": {"existingSecret": "", "value": ""}}, "/hfToken"),
    ({"hfToken": {"key": "bad key"}}, "/hfToken/key"),
    ({"startupProbe": {"failureThreshold": 0}}, "/startupProbe/failureThreshold"),
    ({"readinessProbe": {"path": "health"}}, "/readinessProbe/path"),
    ({"strategy": {"type": "BlueGreen"}}, "/strategy/type"),
    ({"strategy": {"rollingUpdate": {"maxSurge": "lots"}}}, "/strategy/rollingUpdate/maxSurge"),
    ({"service": {"type": "ExternalName"}}, "/service/type"),
    ({"httpRoute": {"enabled": True}}, "/httpRoute/parentRefs"),
    ({"httpRoute": {"timeouts": {"request": "10 minutes"}}}, "/httpRoute/timeouts/request"),
    ({"ingress": {"enabled": True, "hosts": []}}, "/ingress/hosts"),
    ({"podDisruptionBudget": {"minAvailable": "half"}}, "/podDisruptionBudget/minAvailable"),
    ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ({"autoscaling": {"minReplicas": 0}}, "/autoscaling/minReplicas"),
    ({"checksums": {"Bad_Name": "x"}}, "/checksums"),
    ({"tests": {"minAudioSeconds": 0}}, "/tests/minAudioSeconds"),
    ({"tolerations": "all"}, "/tolerations"),
    ({"unknownTopLevel": 1}, "unknownTopLevel"),
    ({"modelCache": {"pvc": {"sizee": "1Gi"}}}, "sizee"),
    # Checks across values (templates' `fail`): the message names both values.
    ({"model": {"path": "/elsewhere/model"}}, "model.path"),
    ({"terminationGracePeriodSeconds": 5}, "terminationGracePeriodSeconds"),
    ({"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}}, "autoscaling.maxReplicas"),
    ({"voicePresets": {"configMap": "v", "volume": {"emptyDir": {}}}}, "voicePresets"),
    ({"hfToken": {"existingSecret": "mine", "value": "t"}}, "hfToken"),
    ({"strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}, "strategy.rollingUpdate"),
    # serverGeneration omni: Boson's image and the fork's pins are refused, naming the value to set.
    ({"serverGeneration": "omni"}, "image.repository=vllm/vllm-omni"),
    ({"serverGeneration": "omni", "image": {"repository": "vllm/vllm-omni"}}, "model.revision"),
]


@pytest.mark.parametrize(("values", "names"), BAD_VALUES, ids=[json.dumps(v)[:60] for v, _ in BAD_VALUES])
def test_bad_value_is_refused_naming_it(values: dict[str, Any], names: str) -> None:
    proc = ck.template(values)
    assert proc.returncode != 0, f"{values} was accepted"
    assert names in proc.stderr, f"helm's error does not name {names}:\n{proc.stderr}"


def test_good_edge_values_are_accepted() -> None:
    for values in (
        {"gpuMemoryUtilization": 1},
        {"gpuMemoryUtilization": "0.9"},  # --set gives strings
        {"maxNumSeqs": None},
        {"hfToken": {"existingSecret": "", "value": "t"}},
        {
            "modelCache": {"mode": "existing", "existing": {"hostPath": "/d"}},
            "hfToken": {"existingSecret": ""},
        },
        {"strategy": {"rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0}}},
        {"podDisruptionBudget": {"minAvailable": "50%"}},
    ):
        proc = ck.template(values)
        assert proc.returncode == 0, f"{values} refused:\n{proc.stderr}"


def test_set_flag_string_values_reach_args() -> None:
    proc = ck.run_helm("template", "t", str(ck.CHART), "--set", "gpuMemoryUtilization=0.9")
    assert proc.returncode == 0, proc.stderr
    assert '- "0.9"' in proc.stdout
