"""charts/higgs-audio rendered offline: lint, a matrix of values validated against the Kubernetes 1.35
schemas, the golden default render, the server args against the hosted recipe, secrets kept secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import chartkit as ck
import kubernetes_validate
import pytest

GOLDEN = Path(__file__).parent / "golden" / "default.yaml"
EXAMPLE_FILES = sorted(ck.EXAMPLES.glob("values-*.yaml"))
TOKEN = "hf_SECRETtokenVALUE_do_not_leak_123"

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
        "networkPolicy": {"enabled": True, "allowedNamespaceSelectors": [{"team": "voice"}]},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5},
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
    "extra-args": {"extraArgs": ["--tensor-parallel-size", "2"]},
    "api-key": {"apiKey": {"existingSecret": "higgs-api-key"}},
    "voice-presets-configmap": {"voicePresets": {"configMap": "voices"}},
    "voice-presets-volume": {"voicePresets": {"volume": {"persistentVolumeClaim": {"claimName": "voices"}}}},
    "chart-made-token": {"hfToken": {"existingSecret": "", "value": TOKEN}},
    "recreate-no-gpu": {
        "strategy": {"type": "Recreate"},
        "gpuCount": 0,
        "podDisruptionBudget": {"enabled": False},
    },
    "digest-pinned": {"image": {"digest": "sha256:" + "a" * 64}},
}
# Kinds outside the core Kubernetes schemas: checked for the fields the chart sets instead.
CRD_KINDS = {"ServiceMonitor", "HTTPRoute"}


def test_lint_default_and_examples() -> None:
    for files in [[], *([f] for f in EXAMPLE_FILES)]:
        proc = ck.run_helm("lint", "--strict", str(ck.CHART), *ck.value_args(files=files))
        assert proc.returncode == 0, f"helm lint {files}: {proc.stdout}{proc.stderr}"
        assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_matrix_renders_valid_objects(name: str) -> None:
    objects = ck.render(MATRIX[name])
    assert objects, "nothing rendered"
    for obj in objects:
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "tts", where
        assert labels["app.kubernetes.io/name"] == "higgs-audio", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert obj["metadata"]["namespace"] == "higgs", where
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, ck.K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{where} is invalid for Kubernetes {ck.K8S_VERSION}: {exc}") from exc


def test_everything_on_renders_each_optional_object() -> None:
    objects = ck.render(MATRIX["everything-on"])
    kinds = {o["kind"] for o in objects}
    expected = {"Ingress", "HTTPRoute", "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy"}
    assert expected | {"HorizontalPodAutoscaler"} <= kinds
    deployment = ck.one(objects, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    route = ck.one(objects, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    rule = route["spec"]["rules"][0]
    assert rule["timeouts"] == {"request": "600s", "backendRequest": "600s"}
    assert rule["backendRefs"] == [{"name": "tts-higgs-audio", "port": 8000}]
    monitor = ck.one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    hpa = ck.one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_waiting"
    policy = ck.one(objects, "NetworkPolicy")
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"team": "voice"}}} in peers
    pod = ck.deployment_pod(objects)
    assert (
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"]
        == "tts"
    )
    assert pod["runtimeClassName"] == "nvidia"
    annotations = one_deployment_annotations(objects)
    assert annotations["higgs.audio/hf-token-checksum"] == "abc123"


def one_deployment_annotations(objects: list[dict[str, Any]]) -> dict[str, str]:
    return ck.one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_network_policy_without_sources_denies_all() -> None:
    values = {"networkPolicy": {"enabled": True, "allowSameNamespace": False, "prometheusNamespace": ""}}
    policy = ck.one(ck.render(values), "NetworkPolicy")
    assert policy["spec"]["ingress"] == [], "an empty `from` would allow every source"


def test_golden_default_render() -> None:
    proc = ck.template()
    assert proc.returncode == 0, proc.stderr
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(proc.stdout)
    assert GOLDEN.exists(), f"{GOLDEN} missing: run with UPDATE_GOLDEN=1 once"
    assert proc.stdout == GOLDEN.read_text(), "default render changed: review, then UPDATE_GOLDEN=1"


def test_default_args_are_the_recipe_flags_plus_the_tokenizer() -> None:
    objects = ck.render()
    server = ck.container(ck.deployment_pod(objects), "server")
    assert "command" not in server, "the image's own entrypoint (Boson's API server) must run"
    flags = ck.args_to_flags(server["args"])
    model_dir = f"/models/bosonai/higgs-audio-v2-generation-3B-base/{ck.MODEL_REVISION}"
    tokenizer_dir = f"/models/bosonai/higgs-audio-v2-tokenizer/{ck.TOKENIZER_REVISION}"
    # The recipe's model id becomes the local snapshot of that repository at the pinned revision.
    expected = {**ck.RECIPE_FLAGS, "--model": model_dir, "--audio-tokenizer-type": tokenizer_dir}
    assert flags == expected
    assert model_dir.split("/")[2:4] == ck.RECIPE_FLAGS["--model"].split("/")
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    # Only the one vLLM setting the chart means to give (its cache on the writable /tmp).
    assert {name for name in env if name.startswith("VLLM_")} == {"VLLM_CACHE_ROOT"}


def test_flags_are_in_the_forks_syntax() -> None:
    """Boson's vLLM 0.8 fork: `audio=N` (a JSON object is refused) and the cache switch; later vLLM's
    `--mm-processor-cache-gb` would be an unknown flag there."""
    objects = ck.render({"maxNumSeqs": 16, "extraArgs": ["--enforce-eager"]})
    flags = ck.args_to_flags(ck.container(ck.deployment_pod(objects), "server")["args"])
    assert flags["--limit-mm-per-prompt"] == "audio=50"
    assert "--disable-mm-preprocessor-cache" in flags and flags["--disable-mm-preprocessor-cache"] is None
    assert "--mm-processor-cache-gb" not in flags
    assert flags["--max-num-seqs"] == "16"
    assert flags["--enforce-eager"] is None


SERVER_GENERATION_REMOVED = (
    "serverGeneration was removed: only Boson's vLLM fork (bosonai/higgs-audio-vllm) serves this API; "
    "vLLM-Omni serves Higgs Audio v2 with another command line and API, see docs/server-contract-omni.md"
)


@pytest.mark.parametrize("value", ["current", "fork", ""])
def test_removed_server_generation_is_refused_with_the_reason(value: str) -> None:
    """Any leftover value, the old default `fork` included, fails the render with the reason (not only
    the schema's "additional properties 'serverGeneration' not allowed")."""
    proc = ck.template(extra=["--set", f"serverGeneration={value}"])
    assert proc.returncode != 0, f"serverGeneration={value!r} was accepted"
    assert SERVER_GENERATION_REMOVED in proc.stderr, proc.stderr
    # `--set serverGeneration=null` (how an upgrade drops it from reused values) renders as before.
    dropped = ck.template(extra=["--set", "serverGeneration=null"])
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout == ck.template().stdout


def test_typed_values_reach_the_args() -> None:
    values = {
        "servedModelName": "tts",
        "limitMmPerPrompt": {"audio": 3},
        "maxModelLen": 4096,
        "gpuMemoryUtilization": 0.95,
        "disableMmPreprocessorCache": False,
        "port": 9000,
        "apiKey": {"existingSecret": "k", "key": "token"},
        "voicePresets": {"configMap": "voices", "mountPath": "/presets"},
    }
    pod = ck.deployment_pod(ck.render(values))
    server = ck.container(pod, "server")
    flags = ck.args_to_flags(server["args"])
    assert flags["--served-model-name"] == "tts"
    assert flags["--limit-mm-per-prompt"] == "audio=3"
    assert flags["--max-model-len"] == "4096"
    assert flags["--gpu-memory-utilization"] == "0.95"
    assert flags["--port"] == "9000"
    assert "--disable-mm-preprocessor-cache" not in flags
    assert flags["--voice-presets-dir"] == "/presets"
    # The key reaches the flag through $(VAR) expansion: it never appears in the pod spec.
    assert flags["--api-key"] == "$(HIGGS_API_KEY)"
    key_env = next(e for e in server["env"] if e["name"] == "HIGGS_API_KEY")
    assert key_env["valueFrom"]["secretKeyRef"] == {"name": "k", "key": "token"}
    assert server["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["voice-presets"]["mountPath"] == "/presets"
    assert {"name": "voice-presets", "configMap": {"name": "voices"}} in pod["volumes"]


def test_pod_hardening_and_lifecycle_defaults() -> None:
    objects = ck.render()
    deployment = ck.one(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = ck.deployment_pod(objects)
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    server = ck.container(pod, "server")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["resources"]["requests"]["nvidia.com/gpu"] == 1
    startup = server["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60, "first load needs >= 30 min"
    assert server["livenessProbe"]["failureThreshold"] > server["readinessProbe"]["failureThreshold"]
    assert server["lifecycle"]["preStop"]["sleep"]["seconds"] < pod["terminationGracePeriodSeconds"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "20Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in server["volumeMounts"]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    service = ck.one(objects, "Service")
    assert service["spec"]["ports"][0]["name"] == "http"
    pvc = ck.one(objects, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "40Gi"


def test_download_init_container_per_mode() -> None:
    for mode, downloads in (("pvc", True), ("none", True), ("existing", False)):
        values: dict[str, Any] = {"modelCache": {"mode": mode, "existing": {"hostPath": "/data"}}}
        pod = ck.deployment_pod(ck.render(values))
        init = [c["name"] for c in pod.get("initContainers", [])]
        assert init == (["download-model"] if downloads else []), mode
        volume = next(v for v in pod["volumes"] if v["name"] == "model-cache")
        assert {"pvc": "persistentVolumeClaim", "none": "emptyDir", "existing": "hostPath"}[mode] in volume
    pod = ck.deployment_pod(ck.render({"modelCache": {"hfEndpoint": "http://127.0.0.1:9"}}))
    download = ck.container(pod, "download-model", init=True)
    assert download["command"] == ["python3", "/opt/higgs-audio/scripts/download_model.py"]
    assert download["image"] == ck.container(pod, "server")["image"], "defaults to the server image"
    env = {e["name"]: e for e in download["env"]}
    assert env["HF_ENDPOINT"]["value"] == "http://127.0.0.1:9"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "hf_access_token"}
    assert download["args"][:4] == [
        "--item",
        "bosonai/higgs-audio-v2-generation-3B-base",
        ck.MODEL_REVISION,
        f"/models/bosonai/higgs-audio-v2-generation-3B-base/{ck.MODEL_REVISION}",
    ]
    server_env = {e["name"] for e in ck.container(pod, "server")["env"]}
    assert "HF_TOKEN" not in server_env, "the server never needs the token"


def test_semantic_model_goes_into_the_hub_cache_the_server_reads() -> None:
    """The tokenizer's semantic teacher is loaded by name at main: the init container puts it into the
    hub cache on the cache volume and the server gets HF_HUB_CACHE there (HF_HOME stays on /tmp)."""
    pod = ck.deployment_pod(ck.render())
    args = ck.container(pod, "download-model", init=True)["args"]
    at = args.index("--cache-item")
    assert args[at : at + 4] == ["--cache-item", "bosonai/hubert_base", "main", "/models/hub"]
    server = ck.container(pod, "server")
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["HF_HUB_CACHE"] == "/models/hub" and env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"] == "/tmp/.cache/huggingface", "remote code goes to $HF_HOME/modules: writable"
    mount = next(m for m in server["volumeMounts"] if m["name"] == "model-cache")
    assert mount["readOnly"] is True and mount["mountPath"] == "/models"
    assert "--audio-tokenizer-path" not in server["args"], "the engine would not use it: the type is a path"
    commit = "c" * 40
    pod = ck.deployment_pod(
        ck.render(
            {
                "semanticModel": {"repository": "org/teacher", "revision": commit},
                "modelCache": {"mountPath": "/w/"},
            }
        )
    )
    args = ck.container(pod, "download-model", init=True)["args"]
    at = args.index("--cache-item")
    assert args[at : at + 4] == ["--cache-item", "org/teacher", commit, "/w/hub"]
    assert {"name": "HF_HUB_CACHE", "value": "/w/hub"} in ck.container(pod, "server")["env"]


def test_notes_warn_about_an_unpinned_semantic_model(tmp_path: Path) -> None:
    warning = 'WARNING: semanticModel.revision is "main", not a 40-hex commit'
    assert warning in ck.notes(tmp_path)
    assert "not a 40-hex commit" not in ck.notes(tmp_path, {"semanticModel": {"revision": "c" * 40}})
    existing = ck.notes(tmp_path, {"modelCache": {"mode": "existing", "existing": {"hostPath": "/d"}}})
    assert "must also hold /models/hub/models--bosonai--hubert_base" in existing and warning not in existing


def test_token_value_stays_in_the_secret(tmp_path: Path) -> None:
    values = MATRIX["chart-made-token"]
    objects = ck.render(values)
    secret = ck.one(objects, "Secret")
    assert secret["metadata"]["name"] == "tts-higgs-audio-hf-token"
    for obj in objects:
        if obj["kind"] != "Secret":
            assert TOKEN not in str(obj), f"token found in {obj['kind']}/{obj['metadata']['name']}"
    text = ck.notes(tmp_path, values)
    assert TOKEN not in text
    assert "helm test tts" in text and "/v1/audio/speech" in text and "hello.wav" in text
    download = ck.container(ck.deployment_pod(objects), "download-model", init=True)
    token_env = next(e for e in download["env"] if e["name"] == "HF_TOKEN")
    assert token_env["valueFrom"]["secretKeyRef"]["name"] == "tts-higgs-audio-hf-token"
    # A new token rolls the pods.
    sums = {
        one_deployment_annotations(ck.render({"hfToken": {"existingSecret": "", "value": v}}))[
            "higgs.audio/chart-hf-token-checksum"
        ]
        for v in ("a", "b")
    }
    assert len(sums) == 2


def test_notes_follow_the_mode(tmp_path: Path) -> None:
    pvc = ck.notes(tmp_path)
    assert "logs -f deploy/tts-higgs-audio -c download-model" in pvc
    assert "create secret generic hf-token" in pvc
    existing = ck.notes(tmp_path, {"modelCache": {"mode": "existing", "existing": {"hostPath": "/d"}}})
    assert "download-model" not in existing
    assert "for trials" in ck.notes(tmp_path, {"modelCache": {"mode": "none"}})


def test_helm_test_hook_pod() -> None:
    objects = ck.render({"apiKey": {"existingSecret": "k"}})
    pod = next(o for o in objects if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["python3", "/opt/higgs-audio/scripts/helm_test.py"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HIGGS_SERVICE_ENV_PREFIX"]["value"] == "TTS_HIGGS_AUDIO"
    assert env["HIGGS_SERVICE_DNS_URL"]["value"] == "http://tts-higgs-audio.higgs.svc:8000"
    assert env["HIGGS_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "k"
    configmap = ck.one(objects, "ConfigMap")
    assert configmap["data"]["helm_test.py"] == (ck.CHART / "files" / "helm_test.py").read_text().rstrip("\n")
    assert configmap["data"]["download_model.py"] == (
        ck.CHART / "files" / "download_model.py"
    ).read_text().rstrip("\n")
    assert not any(o["kind"] == "Pod" for o in ck.render({"tests": {"enabled": False}}))
