"""Values for parity with the vLLM production-stack, KubeAI and Bitnami charts (issue #14 item 6):
extra volumes, containers and manifests, common metadata, scheduler, ServiceMonitor relabelings, the GPU
resource name and its checks, usage statistics off, persistent compile caches, the test pod's image."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import chart as ck

EXTRAS: dict[str, Any] = {
    "envFrom": [
        {"configMapRef": {"name": "server-env"}},
        {"secretRef": {"name": "server-secrets"}, "prefix": "S_"},
    ],
    "extraVolumes": [{"name": "extra", "emptyDir": {}}],
    "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra", "readOnly": True}],
    "extraInitContainers": [{"name": "warm", "image": "busybox:1.36", "command": ["true"]}],
    "extraContainers": [{"name": "side", "image": "busybox:1.36", "command": ["sleep", "infinity"]}],
    "schedulerName": "volcano",
}


def _fails(values: dict[str, Any]) -> str:
    proc = ck.template(values)
    assert proc.returncode != 0, f"helm accepted {values}"
    assert "panic" not in proc.stderr.lower(), proc.stderr
    return proc.stderr


def test_extra_volumes_containers_env_from_and_scheduler() -> None:
    pod = ck.deployment_pod(ck.render(EXTRAS))
    server = ck.container(pod, "server")
    assert server["envFrom"] == EXTRAS["envFrom"]
    assert server["volumeMounts"][-1] == {"name": "extra", "mountPath": "/extra", "readOnly": True}
    assert pod["volumes"][-1] == {"name": "extra", "emptyDir": {}}
    # The chart's download runs first; the extra init containers after it, the sidecar next to the server.
    assert [c["name"] for c in pod["initContainers"]] == ["download-model", "warm"]
    assert [c["name"] for c in pod["containers"]] == ["server", "side"]
    assert pod["schedulerName"] == "volcano"


def test_defaults_add_nothing() -> None:
    pod = ck.deployment_pod(ck.render())
    server = ck.container(pod, "server")
    assert "envFrom" not in server and "schedulerName" not in pod
    assert [c["name"] for c in pod["containers"]] == ["server"]
    assert {v["name"] for v in pod["volumes"]} <= {
        "model-cache",
        "shm",
        "scratch",
        "scripts",
        "voice-presets",
    }


def test_extra_init_containers_without_a_download() -> None:
    """modelCache.mode existing has no download: the extra init containers alone."""
    values = {
        "modelCache": {"mode": "existing", "existing": {"hostPath": "/srv/models"}},
        "extraInitContainers": EXTRAS["extraInitContainers"],
    }
    pod = ck.deployment_pod(ck.render(values))
    assert [c["name"] for c in pod["initContainers"]] == ["warm"]


def test_extra_volume_with_a_chart_volume_name_is_refused() -> None:
    err = _fails({"extraVolumes": [{"name": "scratch", "emptyDir": {}}]})
    assert "extraVolumes: scratch is the name of one of the chart's own volumes" in err


def test_extra_objects_are_templated() -> None:
    values = {
        "extraObjects": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": '{{ include "higgs-audio.fullname" . }}-a'},
            },
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b-{{ .Release.Name }}\n",
        ]
    }
    names = {o["metadata"]["name"] for o in ck.by_kind(ck.render(values), "ConfigMap")}
    assert {"tts-higgs-audio-a", "b-tts"} <= names


def test_common_labels_and_annotations_on_every_object() -> None:
    values = {
        "commonLabels": {"team": "audio"},
        "commonAnnotations": {"example.com/owner": "audio"},
        "serviceMonitor": {"enabled": True},
        "ingress": {
            "enabled": True,
            "hosts": [{"host": "tts.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        },
        "podDisruptionBudget": {"enabled": True},
        "service": {"annotations": {"example.com/owner": "service-own"}},
        "modelCache": {"mode": "pvc", "pvc": {"create": True, "keep": True}},
        "hfToken": {"existingSecret": "", "value": "hf_x"},
    }
    objects = ck.render(values)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceMonitor", "PersistentVolumeClaim", "Pod", "ConfigMap"} <= kinds
    for obj in objects:
        meta = obj["metadata"]
        assert meta["labels"]["team"] == "audio", obj["kind"]
        want = "service-own" if obj["kind"] == "Service" else "audio"  # an object's own annotation wins
        assert meta["annotations"]["example.com/owner"] == want, obj["kind"]
    assert ck.deployment_pod(objects) is not None
    pod_labels = ck.one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "audio"
    pvc = ck.one(objects, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    test_pod = ck.one(objects, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_common_labels_may_not_replace_the_charts_own() -> None:
    err = _fails({"commonLabels": {"app.kubernetes.io/name": "other"}})
    assert "commonLabels: app.kubernetes.io/name is one of the chart's own labels" in err


def test_service_monitor_relabelings() -> None:
    relabel = [{"action": "replace", "targetLabel": "cluster", "replacement": "eu-1"}]
    metric = [{"action": "drop", "sourceLabels": ["__name__"], "regex": "vllm:cache_config_info"}]
    values = {"serviceMonitor": {"enabled": True, "relabelings": relabel, "metricRelabelings": metric}}
    endpoint = ck.one(ck.render(values), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["relabelings"] == relabel and endpoint["metricRelabelings"] == metric
    plain = ck.one(ck.render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")["spec"]["endpoints"][0]
    assert "relabelings" not in plain and "metricRelabelings" not in plain


# --- GPU resource ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "nvidia.com/gpu.shared"])
def test_gpu_resource_name_in_requests_and_limits(name: str) -> None:
    values: dict[str, Any] = {"gpuResourceName": name}
    if name.endswith(".shared"):
        values["gpuMemoryUtilization"] = 0.4
    server = ck.container(ck.deployment_pod(ck.render(values)), "server")
    assert server["resources"]["requests"][name] == 1 and server["resources"]["limits"][name] == 1
    if name != "nvidia.com/gpu":
        assert "nvidia.com/gpu" not in server["resources"]["requests"]


def test_tensor_parallel_size_must_equal_the_gpu_count() -> None:
    err = _fails({"gpuCount": 1, "extraArgs": ["--tensor-parallel-size", "2"]})
    assert "extraArgs --tensor-parallel-size (2) must equal gpuCount (1)" in err
    err = _fails({"gpuCount": 4, "extraArgs": ["--tensor-parallel-size=2"]})
    assert "--tensor-parallel-size (2) must equal gpuCount (4)" in err
    err = _fails({"gpuCount": 2, "extraArgs": ["-tp", "1"]})
    assert "--tensor-parallel-size (1) must equal gpuCount (2)" in err
    server = ck.container(
        ck.deployment_pod(ck.render({"gpuCount": 2, "extraArgs": ["--tensor-parallel-size", "2"]})), "server"
    )
    assert server["args"][-2:] == ["--tensor-parallel-size", "2"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 2


@pytest.mark.parametrize("name", ["nvidia.com/mig-1g.10gb", "nvidia.com/gpu.shared"])
def test_fractional_gpu_refuses_tensor_parallelism_and_several_devices(name: str) -> None:
    values = {"gpuResourceName": name, "gpuCount": 2, "gpuMemoryUtilization": 0.4}
    err = _fails({**values, "extraArgs": ["--tensor-parallel-size", "2"]})
    assert f"extraArgs --tensor-parallel-size (2) needs whole GPUs: gpuResourceName ({name})" in err
    err = _fails(values)
    assert f"gpuCount (2) with gpuResourceName ({name})" in err


def test_shared_gpu_refuses_a_whole_gpu_memory_utilization() -> None:
    err = _fails({"gpuResourceName": "nvidia.com/gpu.shared"})  # the default 0.8
    assert "gpuMemoryUtilization (0.8) with gpuResourceName (nvidia.com/gpu.shared)" in err
    # A MIG slice isolates its memory: vLLM's fraction applies to the slice, 0.8 is fine.
    ck.render({"gpuResourceName": "nvidia.com/mig-1g.10gb"})


# --- environment: usage statistics, compile caches ---------------------------------------------------


def _env(values: dict[str, Any] | None = None) -> dict[str, Any]:
    server = ck.container(ck.deployment_pod(ck.render(values)), "server")
    return {e["name"]: e.get("value") for e in server["env"]}


def test_usage_statistics_off_by_default() -> None:
    env = _env()
    assert env["VLLM_NO_USAGE_STATS"] == "1" and env["DO_NOT_TRACK"] == "1"
    env = _env({"disableUsageStats": False})
    assert "VLLM_NO_USAGE_STATS" not in env and "DO_NOT_TRACK" not in env


COMPILE_VARS = {
    "VLLM_CACHE_ROOT": "vllm",
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
}


@pytest.mark.parametrize(
    ("values", "root", "sub_path"),
    [
        ({"modelCache": {"mode": "pvc"}}, "/models/compile-cache", "compile-cache"),
        (
            {"modelCache": {"mode": "existing", "existing": {"hostPath": "/srv/m", "subPath": "higgs"}}},
            "/models/compile-cache",
            "higgs/compile-cache",
        ),
        ({"modelCache": {"mode": "none"}}, "/tmp/.cache", None),
        ({"modelCache": {"mode": "pvc"}, "compileCache": {"persistent": False}}, "/tmp/.cache", None),
        (
            {
                "modelCache": {
                    "mode": "existing",
                    "existing": {"volume": {"persistentVolumeClaim": {"claimName": "m", "readOnly": True}}},
                }
            },
            "/tmp/.cache",
            None,
        ),
    ],
    ids=["pvc", "existing-subpath", "none", "off", "existing-read-only"],
)
def test_compile_caches_on_the_model_volume_when_it_persists(
    values: dict[str, Any], root: str, sub_path: str | None
) -> None:
    server = ck.container(ck.deployment_pod(ck.render(values)), "server")
    env = {e["name"]: e.get("value") for e in server["env"]}
    for name, leaf in COMPILE_VARS.items():
        assert env[name] == f"{root}/{leaf}", name
    mounts = [m for m in server["volumeMounts"] if m["mountPath"] == "/models/compile-cache"]
    if sub_path is None:
        assert not mounts
    else:
        assert mounts == [{"name": "model-cache", "mountPath": "/models/compile-cache", "subPath": sub_path}]
        # The weights stay read-only; only the compile-cache directory is writable.
        assert {"name": "model-cache", "mountPath": "/models", "readOnly": True}.items() <= next(
            m for m in server["volumeMounts"] if m["mountPath"] == "/models"
        ).items()


# --- helm test pod -----------------------------------------------------------------------------------


def test_helm_test_pod_uses_a_small_python_image() -> None:
    pod = ck.one(ck.render(), "Pod")
    assert pod["spec"]["containers"][0]["image"] == "python:3.11-slim"
    back = ck.one(ck.render({"tests": {"image": {"repository": "", "tag": ""}}}), "Pod")
    assert back["spec"]["containers"][0]["image"].startswith("bosonai/higgs-audio-vllm:")
