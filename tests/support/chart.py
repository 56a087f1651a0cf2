"""Helpers for the chart tests: run helm against charts/higgs-audio and read what it renders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "higgs-audio"
OPERATOR_CHART = REPO_ROOT / "charts" / "higgs-operator"
LOADTEST_CHART = REPO_ROOT / "charts" / "higgs-loadtest"
EXAMPLES = REPO_ROOT / "examples"
TOOLS_BIN = Path(os.environ.get("HIGGS_CACHE", Path.home() / ".cache" / "higgs-k8s")) / "bin"
# Every rendered object of the three charts must validate for each of these (kubernetes-validate's strict
# schemas): from the charts' kubeVersion floor (>=1.30) to the version the local stack runs.
K8S_VERSIONS = ("1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")
K8S_VERSION = K8S_VERSIONS[-1]
# Flags of the hosted recipe (seed/higgs-truss-README.md and DESIGN.md), flag -> value (None: a switch).
RECIPE_FLAGS: dict[str, str | None] = {
    "--model": "bosonai/higgs-audio-v2-generation-3B-base",
    "--served-model-name": "higgs-audio-v2-generation-3B-base",
    "--limit-mm-per-prompt": "audio=50",
    "--max-model-len": "8192",
    "--gpu-memory-utilization": "0.8",
    "--disable-mm-preprocessor-cache": None,
    "--port": "8000",
}
EXAMPLE_FILES = sorted(EXAMPLES.glob("values-*.yaml"))
MODEL_REVISION = "10840182ca4ad5d9d9113b60b9bb3c1ef1ba3f84"
TOKENIZER_REVISION = "9d4988fbd4ad07b4cac3a5fa462741a41810dbec"


def helm_binary() -> str:
    """$HIGGS_HELM (e.g. a Helm 4 binary, to check both majors), else the project's helm, else PATH."""
    for candidate in (os.environ.get("HIGGS_HELM"), TOOLS_BIN / "helm", shutil.which("helm")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise AssertionError(f"helm not found in {TOOLS_BIN} or on PATH: run `bash hack/install-tools.sh helm`")


def run_helm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=timeout)


def value_args(values: dict[str, Any] | None = None, files: Iterable[Path] = ()) -> list[str]:
    """-f arguments: files first, then `values` as a JSON document (JSON is YAML) on stdin-free temp file."""
    args: list[str] = []
    for f in files:
        args += ["-f", str(f)]
    if values:
        args += ["--set-json", _set_json(values)]
    return args


def _set_json(values: dict[str, Any]) -> str:
    # --set-json takes key=json pairs; one pair per top-level key keeps nested maps merged with defaults.
    return ",".join(f"{key}={json.dumps(value)}" for key, value in values.items())


def template(
    values: dict[str, Any] | None = None,
    files: Iterable[Path] = (),
    release: str = "tts",
    namespace: str = "higgs",
    extra: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    args = ["template", release, str(CHART), "--namespace", namespace, *value_args(values, files), *extra]
    return run_helm(*args)


def render(
    values: dict[str, Any] | None = None, files: Iterable[Path] = (), **kwargs: Any
) -> list[dict[str, Any]]:
    """Rendered objects (test hooks included); fails the test with helm's message on error."""
    proc = template(values, files, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_chart(chart: Path, *args: str, release: str, namespace: str) -> list[dict[str, Any]]:
    """`helm template` of any of the three charts with raw helm arguments (-f, --set, ...)."""
    proc = run_helm("template", release, str(chart), "--namespace", namespace, *args)
    if proc.returncode != 0:
        raise AssertionError(f"helm template {chart.name} {' '.join(args)} failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def deployment_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def container(pod_spec: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    for c in pod_spec.get("initContainers" if init else "containers", []) or []:
        if c["name"] == name:
            return c
    raise AssertionError(f"no {'init ' if init else ''}container {name!r} in the pod spec")


def args_to_flags(args: list[str]) -> dict[str, str | None]:
    """['--a', '1', '--switch', '--b', '2'] -> {'--a': '1', '--switch': None, '--b': '2'}; refuses repeats."""
    flags: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        assert flag.startswith("--"), f"expected a flag at position {i}, got {flag!r} in {args}"
        assert flag not in flags, f"flag {flag} given twice in {args}"
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            flags[flag] = args[i + 1]
            i += 2
        else:
            flags[flag] = None
            i += 1
    return flags


NOTES_TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: rendered-notes
data:
  notes: {{ tpl (.Files.Get "files/NOTES.txt") . | toJson }}
"""


def notes(workdir: Path, values: dict[str, Any] | None = None, files: Iterable[Path] = ()) -> str:
    """NOTES.txt rendered with `values`, offline: `helm template` skips NOTES and `helm install
    --dry-run` needs a cluster, so a copy of the chart renders it through `tpl` into a ConfigMap."""
    copy = workdir / "notes-chart"
    if not copy.exists():
        shutil.copytree(CHART, copy)
        shutil.copy(CHART / "templates" / "NOTES.txt", copy / "files" / "NOTES.txt")
        (copy / "templates" / "zz-rendered-notes.yaml").write_text(NOTES_TEMPLATE)
    args = ["template", "tts", str(copy), "--namespace", "higgs", *value_args(values, files)]
    proc = run_helm(*args, "--show-only", "templates/zz-rendered-notes.yaml")
    if proc.returncode != 0:
        raise AssertionError(f"rendering NOTES.txt failed:\n{proc.stderr}")
    return yaml.safe_load(proc.stdout)["data"]["notes"]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- value tables shared by the render, schema, cluster and bad-input tests --------------------------
# The render matrix: each set of values renders and validates (tests/chart/test_chart_render.py) and the
# API server accepts it (tests/chart/test_chart_crd_dry_run.py).
TOKEN = "hf_SECRETtokenVALUE_do_not_leak_123"  # a chart-made token: must never show in plain text
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cache-pvc-existing-claim": {"modelCache": {"pvc": {"create": False, "existingClaim": "models"}}},
    "cache-existing-volume": {
        "modelCache": {
            "mode": "existing",
            "existing": {
                "volume": {"persistentVolumeClaim": {"claimName": "m", "readOnly": True}},
                "subPath": "hf",
            },
        }
    },
    "cache-existing-hostpath": {"modelCache": {"mode": "existing", "existing": {"hostPath": "/data/models"}}},
    "cache-none": {"modelCache": {"mode": "none", "hfEndpoint": "https://hf-mirror.example.com"}},
    "everything-on": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "tls": [{"secretName": "t", "hosts": ["a.example.com"]}],
        },
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "gw", "namespace": "gateways"}],
            "hostnames": ["a"],
        },
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "allowedNamespaceSelectors": [{"team": "voice"}],
            "gatewayNamespace": "gateways",
        },
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5},
        "modelCache": {"pvc": {"accessModes": ["ReadWriteMany"]}},  # several replicas share the cache
        "strategy": {"type": "RollingUpdate"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "runtimeClassName": "nvidia",
        "priorityClassName": "gpu-high",
        "imagePullSecrets": [{"name": "regcred"}],
        "checksums": {"hf-token": "abc123"},
        "maxNumSeqs": 32,
    },
    "extra-args": {"extraArgs": ["--tensor-parallel-size", "2"], "gpuCount": 2},
    "api-key": {"apiKey": {"existingSecret": "higgs-api-key"}},
    # KEDA scales (a ScaledObject on the server's own metrics) instead of an HPA.
    "keda": {
        "modelCache": {"mode": "none"},
        "autoscaling": {
            "enabled": True,
            "engine": "keda",
            "maxReplicas": 4,
            "keda": {"serverAddress": "http://prometheus-operated.monitoring.svc:9090"},
        },
    },
    "voice-presets-configmap": {"voicePresets": {"configMap": "voices"}},
    "voice-presets-volume": {"voicePresets": {"volume": {"persistentVolumeClaim": {"claimName": "voices"}}}},
    "chart-made-token": {"hfToken": {"existingSecret": "", "value": TOKEN}},
    "recreate-no-gpu": {
        "strategy": {"type": "Recreate"},
        "gpuCount": 0,
        "podDisruptionBudget": {"enabled": False},
    },
    "digest-pinned": {"image": {"digest": "sha256:" + "a" * 64}},
    "omni": {
        "serverGeneration": "omni",
        "image": {"repository": "vllm/vllm-omni", "tag": "v0.25.0"},
        "model": {"revision": "d" * 40},
        "audioTokenizer": {"revision": "e" * 40},
        "apiKey": {"existingSecret": "higgs-api-key"},
        "extraArgs": ["--stage-overrides", '{"0": {"max_num_seqs": 8}}'],
    },
}


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
    (
        {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}},
        "strategy.rollingUpdate",
    ),
    # serverGeneration omni: Boson's image and the fork's pins are refused, naming the value to set.
    ({"serverGeneration": "omni"}, "image.repository=vllm/vllm-omni"),
    ({"serverGeneration": "omni", "image": {"repository": "vllm/vllm-omni"}}, "model.revision"),
]


# --- the other two charts' cases, validated like MATRIX (kubernetes-validate; server-side dry-run) --------
def operator_cases(namespace: str) -> dict[str, list[str]]:
    """charts/higgs-operator: helm arguments per case; `namespace` (the release's) is the watched one,
    so that a dry-run finds every namespace the Roles land in."""
    on = {
        "watchNamespaces": [namespace],
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "prom"},
            "relabelings": [{"action": "replace", "targetLabel": "team", "replacement": "voice"}],
        },
        "image": {"digest": "sha256:" + "b" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
        "kubeVersion": "1.33.0",
        "extraEnv": [{"name": "HELM", "value": "/usr/local/bin/helm"}],
        "podAnnotations": {"team": "voice"},
        "serviceAccount": {"name": "higgs-op", "annotations": {"team": "voice"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]
                        },
                    }
                ]
            }
        },
    }
    return {
        "defaults": [],
        "operator-values-local.yaml": ["-f", str(EXAMPLES / "operator-values-local.yaml")],
        "optional-parts-on": ["--set-json", _set_json(on)],
    }


def loadtest_cases(serving: str = "serving") -> dict[str, list[str]]:
    """charts/higgs-loadtest: --set arguments per case (the chart also needs `host`); the HiggsDeployment
    watched is in namespace `serving`, where its Role lands."""
    return {
        "defaults": [],
        "persistence": ["persistence.enabled=true", "workers=3"],
        "higgsdeployment": [f"higgsDeployment={serving}/hd"],
        "optional-parts-on": [
            "persistence.enabled=true",
            "persistence.storageClassName=fast",
            f"higgsDeployment={serving}/hd",
            "nodeSelector.pool=load",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
        ],
    }
