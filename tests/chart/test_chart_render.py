"""charts/higgs-audio rendered offline: lint, a matrix of values validated against the Kubernetes 1.30 to
1.35 schemas, the golden default render, the server args against the hosted recipe, secrets kept secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.support import chart as ck
from tests.support import k8s_schemas
from tests.support.chart import EXAMPLE_FILES, K8S_VERSIONS, MATRIX, TOKEN
from tests.support.crds import THIRD_PARTY_GROUPS

GOLDEN = Path(__file__).parent / "golden" / "default.yaml"


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
    # Custom resources (HTTPRoute, ServiceMonitor, ...): tests/chart/test_chart_crd_dry_run.py.
    errors = k8s_schemas.failures("higgs-audio", name, objects, K8S_VERSIONS, skip_groups=THIRD_PARTY_GROUPS)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=[f.name for f in EXAMPLE_FILES])
def test_examples_render_valid_objects(example: Path) -> None:
    objects = ck.render(files=[example])
    assert objects, "nothing rendered"
    errors = k8s_schemas.failures(
        "higgs-audio", example.name, objects, K8S_VERSIONS, skip_groups=THIRD_PARTY_GROUPS
    )
    assert not errors, "\n".join(errors)


def test_cached_validation_agrees_with_kubernetes_validate() -> None:
    """k8s_schemas loads kubernetes-validate's schemas once; it must judge as validate(strict=True) does."""
    deployment = ck.one(ck.render(), "Deployment")
    bad = {**deployment, "spec": {**deployment["spec"], "replicaz": 1}}  # an unknown field: strict refuses
    for version in K8S_VERSIONS:
        assert kubernetes_validate.validate(deployment, version, strict=True)
        assert k8s_schemas.schema_error(deployment, version) is None
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, version, strict=True)
        assert "replicaz" in (k8s_schemas.schema_error(bad, version) or ""), version
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"}}
    assert "no schema" in (k8s_schemas.schema_error(route, K8S_VERSIONS[-1]) or "")


@pytest.mark.parametrize("chart", [ck.CHART, ck.OPERATOR_CHART, ck.LOADTEST_CHART], ids=lambda c: c.name)
def test_validated_versions_start_at_the_charts_kubeversion_floor(chart: Path) -> None:
    """The charts render the same objects for every validated version (no template reads the version),
    so one render is validated against all of them; the oldest is the oldest the chart installs on."""
    args = ["--set", "host=http://h:8000"] if chart == ck.LOADTEST_CHART else []
    oldest, newest = K8S_VERSIONS[0], K8S_VERSIONS[-1]
    renders = [
        ck.render_chart(chart, *args, "--kube-version", v, release="r", namespace="n")
        for v in (oldest, newest)
    ]
    assert renders[0] == renders[1]
    older = f"1.{int(oldest.split('.')[1]) - 1}.0"
    proc = ck.run_helm("template", "r", str(chart), *args, "--kube-version", older)
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr, (
        f"{chart.name} installs on Kubernetes {older}: validate that version too (K8S_VERSIONS)"
    )


def test_local_omni_example_uses_the_fake_hubs_native_commits_and_the_mapped_image() -> None:
    from higgs_sim import hub

    example = ck.EXAMPLES / "values-local-omni.yaml"
    values = ck.load_yaml(example)
    assert values["serverGeneration"] == "omni"
    assert values["model"]["revision"] == hub.OMNI_MODEL_REVISION
    assert values["audioTokenizer"]["revision"] == hub.OMNI_TOKENIZER_REVISION
    server = ck.container(ck.deployment_pod(ck.render(files=[example])), "server")
    assert server["image"].startswith("vllm/vllm-omni:")
    assert server["args"][2:4] == ["--deploy-config", OMNI_DEPLOY_CONFIG]  # the image's file, mapped locally
    images = ck.load_yaml(ck.REPO_ROOT / "hack" / "localkube-images.yaml")["images"]
    entry = next(e for e in images if e["match"] == "vllm/vllm-omni:*")
    assert entry["commands"]["vllm"]["argv"] == ["{venv}/python", "-m", "higgs_sim.omni"]
    assert OMNI_DEPLOY_CONFIG in entry["files"]


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
    assert "timeouts" not in rule, "rules[].timeouts needs Gateway API v1.2: off unless asked for"
    assert rule["backendRefs"] == [{"name": "tts-higgs-audio", "port": 8000}]
    pdb = ck.one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["minAvailable"] == 1
    monitor = ck.one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    hpa = ck.one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_waiting"
    policy = ck.one(objects, "NetworkPolicy")
    clients, metrics = policy["spec"]["ingress"]
    assert {"namespaceSelector": {"matchLabels": {"team": "voice"}}} in clients["from"]
    gateways = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}}
    assert gateways in clients["from"]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
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


def test_pdb_lets_a_crash_looping_pod_be_evicted_by_default() -> None:
    """A GPU pod that is not Ready must not block a node drain (unhealthyPodEvictionPolicy)."""
    pdb = ck.one(ck.render(), "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["maxUnavailable"] == 1
    values = {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "IfHealthyBudget"}}
    assert ck.one(ck.render(values), "PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"] == (
        "IfHealthyBudget"
    )
    assert not any(
        o["kind"] == "PodDisruptionBudget" for o in ck.render({"podDisruptionBudget": {"enabled": False}})
    )


def test_http_route_timeouts_only_when_asked_for() -> None:
    """Without timeouts the route is valid on Gateway API v1.0; with them it needs v1.2."""
    route_values: dict[str, Any] = {"enabled": True, "parentRefs": [{"name": "gw"}]}
    route = ck.one(ck.render({"httpRoute": route_values}), "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert set(route["spec"]["rules"][0]) == {"matches", "backendRefs"}
    on = {**route_values, "timeouts": {"enabled": True}}
    rule = ck.one(ck.render({"httpRoute": on}), "HTTPRoute")["spec"]["rules"][0]
    assert rule["timeouts"] == {"request": "600s", "backendRequest": "600s"}
    on = {**route_values, "timeouts": {"enabled": True, "request": "1h", "backendRequest": "30m"}}
    rule = ck.one(ck.render({"httpRoute": on}), "HTTPRoute")["spec"]["rules"][0]
    assert rule["timeouts"] == {"request": "1h", "backendRequest": "30m"}


@pytest.mark.parametrize(
    ("cache", "scratch", "requested", "limit"),
    [
        (None, None, "51200Mi", "52224Mi"),  # defaults: 40Gi + 10Gi, limit 1Gi more for logs
        ("12.5G", "1Gi", "12945Mi", "13969Mi"),  # 12.5e9 B = 11920.9 MiB, rounded up
        ("100Gi", "500M", "102877Mi", "103901Mi"),
    ],
)
def test_emptydir_model_cache_requests_ephemeral_storage(
    cache: str | None, scratch: str | None, requested: str, limit: str
) -> None:
    """Mode none downloads ~12.3 GB onto node disk: the pod requests the emptyDirs' size limits, so it
    lands on a node with room and is not evicted mid-download."""
    values: dict[str, Any] = {"modelCache": {"mode": "none"}}
    if cache:
        values["modelCache"]["emptyDir"] = {"sizeLimit": cache}
    if scratch:
        values["scratch"] = {"sizeLimit": scratch}
    resources = ck.container(ck.deployment_pod(ck.render(values)), "server")["resources"]
    assert resources["requests"]["ephemeral-storage"] == requested
    assert resources["limits"]["ephemeral-storage"] == limit
    assert resources["requests"]["memory"] == "32Gi" and resources["limits"]["nvidia.com/gpu"] == 1


def test_ephemeral_storage_from_resources_wins_and_other_modes_request_none() -> None:
    values: dict[str, Any] = {
        "modelCache": {"mode": "none"},
        "resources": {"requests": {"ephemeral-storage": "20Gi"}, "limits": {"memory": "40Gi"}},
    }
    resources = ck.container(ck.deployment_pod(ck.render(values)), "server")["resources"]
    assert resources["requests"]["ephemeral-storage"] == "20Gi"
    assert resources["limits"] == {"memory": "40Gi", "ephemeral-storage": "52224Mi", "nvidia.com/gpu": 1}
    for mode in ("pvc", "existing"):
        values = {"modelCache": {"mode": mode, "existing": {"hostPath": "/data"}}}
        resources = ck.container(ck.deployment_pod(ck.render(values)), "server")["resources"]
        assert "ephemeral-storage" not in resources["requests"], mode
        assert "ephemeral-storage" not in resources["limits"], mode


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
    assert {name for name in env if name.startswith("VLLM_")} == {"VLLM_CACHE_ROOT", "VLLM_NO_USAGE_STATS"}


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


@pytest.mark.parametrize("value", ["current", "v1", ""])
def test_server_generation_other_than_fork_or_omni_is_refused_naming_both(value: str) -> None:
    """The schema's enum refuses it (the old `current` included) and names both values; the template's
    own check says the same when the schema is skipped."""
    proc = ck.template(extra=["--set-string", f"serverGeneration={value}"])
    assert proc.returncode != 0, f"serverGeneration={value!r} was accepted"
    assert "serverGeneration" in proc.stderr and "fork" in proc.stderr and "omni" in proc.stderr, proc.stderr
    proc = ck.template(extra=["--set-string", f"serverGeneration={value}", "--skip-schema-validation"])
    assert proc.returncode != 0
    assert (
        "serverGeneration must be fork (Boson's vLLM fork, image bosonai/higgs-audio-vllm) or omni "
        "(vLLM-Omni, image vllm/vllm-omni)"
    ) in proc.stderr, proc.stderr


def test_fork_is_the_default_and_null_means_fork() -> None:
    """`fork` renders exactly today's chart (the golden file); `--set serverGeneration=null` (how an
    upgrade drops a value from reused values) too."""
    default = ck.template().stdout
    for extra in (["--set", "serverGeneration=fork"], ["--set", "serverGeneration=null"]):
        proc = ck.template(extra=extra)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == default, extra
    assert ck.load_yaml(ck.CHART / "values.yaml")["serverGeneration"] == "fork"


OMNI_VALUES = MATRIX["omni"]
OMNI_DEPLOY_CONFIG = "/app/vllm-omni/vllm_omni/deploy/higgs_audio_v2.yaml"
BOSON_FLAGS = (
    "--model",
    "--audio-tokenizer-type",
    "--limit-mm-per-prompt",
    "--disable-mm-preprocessor-cache",
    "--voice-presets-dir",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--max-num-seqs",
    "--api-key",
)


def test_omni_renders_vllm_omnis_command_line_exactly() -> None:
    """docs/server-contract-omni.md OS1-OS5: `vllm serve <model dir> --omni --deploy-config <yaml>`, the
    served name, port and --trust-remote-code, then extraArgs; none of Boson's flags (OS14/XO11: the
    deploy YAML has each stage's limits), even when their values are set."""
    values = {**OMNI_VALUES, "maxNumSeqs": 16, "maxModelLen": 4096, "gpuMemoryUtilization": 0.5}
    pod = ck.deployment_pod(ck.render(values))
    server = ck.container(pod, "server")
    assert server["image"] == "vllm/vllm-omni:v0.25.0"
    assert server["command"] == ["vllm", "serve"]
    assert server["args"] == [
        f"/models/bosonai/higgs-audio-v2-generation-3B-base/{'d' * 40}",
        "--omni",
        "--deploy-config",
        OMNI_DEPLOY_CONFIG,
        "--served-model-name",
        "higgs-audio-v2-generation-3B-base",
        "--port",
        "8000",
        "--trust-remote-code",
        "--stage-overrides",
        '{"0": {"max_num_seqs": 8}}',
    ]
    assert not set(BOSON_FLAGS) & set(server["args"])
    custom = ck.container(
        ck.deployment_pod(
            ck.render({**OMNI_VALUES, "omni": {"deployConfig": "/etc/omni/d.yaml"}, "port": 9000})
        ),
        "server",
    )
    assert custom["args"][2:4] == ["--deploy-config", "/etc/omni/d.yaml"]
    assert custom["args"][6:8] == ["--port", "9000"]


def test_omni_environment_exactly() -> None:
    """OS1 (DeepGEMM off), OS6 (SPEAKER_SAMPLES_DIR on the writable scratch), OS11 (the codec from the
    hub cache, offline), OE6 (the API key as VLLM_API_KEY from the Secret, not on the command line)."""
    server = ck.container(ck.deployment_pod(ck.render(OMNI_VALUES)), "server")
    env = {e["name"]: e for e in server["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "higgs-api-key", "key": "api_key"}
    assert "HIGGS_API_KEY" not in env and not any("$(" in a for a in server["args"])
    values = {name: e.get("value") for name, e in env.items() if name != "VLLM_API_KEY"}
    assert values == {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": "/models/hub",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "VLLM_USE_DEEP_GEMM": "0",
        "VLLM_MOE_USE_DEEP_GEMM": "0",
        "SPEAKER_SAMPLES_DIR": "/tmp/.cache/vllm-omni/speakers",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "HF_HOME": "/tmp/.cache/huggingface",
        "VLLM_CACHE_ROOT": "/models/compile-cache/vllm",
        "TRITON_CACHE_DIR": "/models/compile-cache/triton",
        "TORCHINDUCTOR_CACHE_DIR": "/models/compile-cache/torchinductor",
        "NUMBA_CACHE_DIR": "/tmp/.cache/numba",
        "OUTLINES_CACHE_DIR": "/tmp/.cache/outlines",
        "MPLCONFIGDIR": "/tmp/.cache/matplotlib",
    }
    assert {"name": "scratch", "mountPath": "/tmp"} in server["volumeMounts"]
    # OE4: /health answers 200 with JSON: the probes stay on it.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe


def test_omni_downloads_the_model_and_the_tokenizer_into_the_hub_cache() -> None:
    """The model into its own directory (`--item`, the positional path); the tokenizer into the hub
    cache layout with refs/main (`--cache-item`, stage 1 finds it by name, OS11); no semantic teacher (D2)."""
    pod = ck.deployment_pod(ck.render(OMNI_VALUES))
    download = ck.container(pod, "download-model", init=True)
    assert download["args"][:2] == ["--termination-log", "/dev/termination-log"]
    assert download["args"][2:] == [
        "--item",
        "bosonai/higgs-audio-v2-generation-3B-base",
        "d" * 40,
        f"/models/bosonai/higgs-audio-v2-generation-3B-base/{'d' * 40}",
        "--cache-item",
        "bosonai/higgs-audio-v2-tokenizer",
        "e" * 40,
        "/models/hub",
        "--max-workers",
        "8",
    ]
    assert download["image"] == "vllm/vllm-omni:v0.25.0"


OMNI_IMAGE_MESSAGE = (
    "serverGeneration omni needs the vLLM-Omni image: set image.repository=vllm/vllm-omni and "
    "image.tag to a release that contains PR #3762"
)


@pytest.mark.parametrize("repository", ["bosonai/higgs-audio-vllm", "docker.io/bosonai/higgs-audio-vllm"])
def test_omni_refuses_bosons_image(repository: str) -> None:
    proc = ck.template({**OMNI_VALUES, "image": {"repository": repository}})
    assert proc.returncode != 0 and OMNI_IMAGE_MESSAGE in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("pinned", "named"),
    [
        ({"model": {"revision": ck.MODEL_REVISION}}, f"model.revision ({ck.MODEL_REVISION}) is"),
        ({"audioTokenizer": {"revision": ck.TOKENIZER_REVISION}}, "audioTokenizer.revision"),
        (
            {"model": {"revision": ck.MODEL_REVISION}, "audioTokenizer": {"revision": ck.TOKENIZER_REVISION}},
            f"model.revision ({ck.MODEL_REVISION}) and audioTokenizer.revision ({ck.TOKENIZER_REVISION}) are",
        ),
    ],
)
def test_omni_refuses_the_fork_pins(pinned: dict[str, Any], named: str) -> None:
    """OS8, OS10: the default pins are Boson's original layout, which vLLM-Omni has no pipeline for."""
    proc = ck.template({**OMNI_VALUES, **pinned})
    assert proc.returncode != 0, pinned
    assert f"serverGeneration omni: {named}" in proc.stderr, proc.stderr
    for why in ("model_type higgs_audio)", "transformers-native layout", "OS8, OS10", "Set model.revision"):
        assert why in proc.stderr, why


def test_the_refused_pins_are_the_chart_defaults() -> None:
    defaults = ck.load_yaml(ck.CHART / "values.yaml")
    assert (defaults["model"]["revision"], defaults["audioTokenizer"]["revision"]) == (
        ck.MODEL_REVISION,
        ck.TOKENIZER_REVISION,
    )
    helpers = (ck.CHART / "templates" / "_helpers.tpl").read_text()
    for pin in (ck.MODEL_REVISION, ck.TOKENIZER_REVISION):
        assert f"-}}}}{pin}{{{{- end }}}}" in helpers


@pytest.mark.parametrize(
    "presets", [{"configMap": "voices"}, {"volume": {"persistentVolumeClaim": {"claimName": "v"}}}]
)
def test_omni_refuses_voice_presets(presets: dict[str, Any]) -> None:
    proc = ck.template({**OMNI_VALUES, "voicePresets": presets})
    assert proc.returncode != 0
    assert "vLLM-Omni has no presets; upload voices with POST /v1/audio/voices" in proc.stderr, proc.stderr


def test_omni_notes(tmp_path: Path) -> None:
    text = ck.notes(tmp_path, OMNI_VALUES)
    assert "served by vLLM-Omni" in text and '"response_format": "wav"' in text and "-o hello.wav" in text
    assert "hubert_base" not in text and "POST /v1/audio/voices" in text and "helm test tts" in text
    assert "sox" not in text and '"voice"' not in text


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
    # The key goes in through the environment the server reads (L5): never on the command line, where
    # the process list shows it, nor in the pod spec.
    assert "--api-key" not in flags and not any("$(" in a for a in server["args"])
    key_env = next(e for e in server["env"] if e["name"] == "VLLM_API_KEY")
    assert key_env["valueFrom"]["secretKeyRef"] == {"name": "k", "key": "token"}
    assert "HIGGS_API_KEY" not in {e["name"] for e in server["env"]}
    assert server["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["voice-presets"]["mountPath"] == "/presets"
    assert {"name": "voice-presets", "configMap": {"name": "voices"}} in pod["volumes"]


def test_pod_hardening_and_lifecycle_defaults() -> None:
    objects = ck.render()
    deployment = ck.one(objects, "Deployment")
    # Recreate: the default cache claim is ReadWriteOnce, which a surge pod on another node cannot mount.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    shared = {
        "modelCache": {"pvc": {"accessModes": ["ReadWriteMany"]}},
        "strategy": {"type": "RollingUpdate"},
    }
    assert ck.one(ck.render(shared), "Deployment")["spec"]["strategy"] == {
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
    assert download["args"][2:6] == [
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
