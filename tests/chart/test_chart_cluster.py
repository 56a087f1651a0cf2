"""charts/higgs-audio on the local cluster (fake GPU nodes running the simulator), with the real
download path against the fake Hugging Face Hub: install, helm test, upgrade with a stream in
flight, uninstall keeping the cache claim; the `existing` cache mode; and the semantic teacher
(semanticModel) the server loads offline by name from the hub cache, without which it cannot start."""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from higgs_sim import hub
from tests.support import chart as ck
from tests.support import kubetest
from tests.support.examples import fill_existing_cache
from tests.support.ports import free_port

pytestmark = pytest.mark.cluster

TOKEN = "hf_local_fake_token"
RELEASE = "tts"
SERVER = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=server"
STARTUP_SECONDS = 5
# Slower than real time so that one streamed request outlives the rollout of a new pod.
SLOWDOWN = "20"
PRESTOP_SECONDS = 30
API_KEY_SECRET = "higgs-api-key"
API_KEY = "k-local-0123"
VOICE = "narrator"
STREAM_TEXT = " ".join(["The quick brown fox jumps over the lazy dog."] * 5)


@pytest.fixture(scope="module")
def fake_hub() -> Iterator[tuple[str, hub.HubState]]:
    state = hub.new_state(token=TOKEN, weights_bytes=64 * 1024)
    with hub.running_hub(state, port=free_port()) as url:
        yield url, state


def container_status(pod: client.V1Pod, name: str) -> client.V1ContainerStatus | None:
    statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
    return next((s for s in statuses if s.name == name), None)


def exited_with_error(cluster: kubetest.Cluster, namespace: str, container: str) -> client.V1Pod | None:
    """The release's server pod once `container` has exited non-zero at least once."""
    for pod in server_pods(cluster, namespace):
        status = container_status(pod, container)
        if status is None:
            continue
        for state in (status.state, status.last_state):
            if state and state.terminated and state.terminated.exit_code != 0:
                return pod
    return None


def container_logs(cluster: kubetest.Cluster, namespace: str, pod: str, container: str) -> str:
    """The container's log, or its previous run's when it is restarting."""
    logs = ""
    for extra in ((), ("--previous",)):
        proc = cluster.kubectl("-n", namespace, "logs", pod, "-c", container, *extra, check=False)
        logs += proc.stdout
    return logs


def server_pods(cluster: kubetest.Cluster, namespace: str) -> list[client.V1Pod]:
    return cluster.core.list_namespaced_pod(namespace, label_selector=SERVER).items


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def install_args(namespace: str, hub_url: str, *extra: str) -> list[str]:
    return [
        "install",
        RELEASE,
        str(ck.CHART),
        "-n",
        namespace,
        "-f",
        str(ck.EXAMPLES / "values-local.yaml"),
        "--set",
        f"modelCache.hfEndpoint={hub_url}",
        "--set",
        f"apiKey.existingSecret={API_KEY_SECRET}",
        "--set-json",
        f'extraArgs=["--sim-startup-seconds","{STARTUP_SECONDS}","--sim-slowdown","{SLOWDOWN}"]',
        # The preStop sleep covers a whole stream: the chart's own guarantee, not the server's shutdown.
        "--set",
        f"lifecycle.preStopSleepSeconds={PRESTOP_SECONDS}",
        "--wait",
        "--timeout",
        "180s",
        *extra,
    ]


@dataclass
class StreamResult:
    pcm_bytes: int = 0
    chunks: int = 0
    done: bool = False
    finish_reason: str | None = None
    error: str = ""
    started: float = 0.0
    ended: float = 0.0
    events: list[str] = field(default_factory=list)


def stream_once(url: str, result: StreamResult) -> None:
    body = {
        "model": "higgs-audio-v2-generation-3B-base",
        "messages": [{"role": "user", "content": STREAM_TEXT}],
        "modalities": ["text", "audio"],
        "audio": {"format": "pcm16"},
        "stream": True,
    }
    result.started = time.monotonic()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    result.done = True
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    for choice in event.get("choices", []):
                        audio = (choice.get("delta") or {}).get("audio") or {}
                        if audio.get("data"):
                            result.pcm_bytes += len(base64.b64decode(audio["data"]))
                            result.chunks += 1
                        result.finish_reason = choice.get("finish_reason") or result.finish_reason
    except (httpx.HTTPError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.ended = time.monotonic()


def create_voice_presets(cluster: kubetest.Cluster, namespace: str, tmp_path: Path) -> None:
    """A ConfigMap with config.json and one reference WAV (binaryData): the voicePresets.configMap form."""
    presets = tmp_path / "presets"
    presets.mkdir()
    rate, seconds = 24000, 1.0
    samples = [int(6000 * math.sin(2 * math.pi * 180 * i / rate)) for i in range(int(rate * seconds))]
    with wave.open(str(presets / "narrator.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    config = {VOICE: {"transcript": "A calm reference voice.", "audio_file": "narrator.wav"}}
    (presets / "config.json").write_text(json.dumps(config))
    cluster.kubectl("-n", namespace, "create", "configmap", "voices", f"--from-file={presets}")


@pytest.mark.localstack(
    "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it"
)
def test_install_test_upgrade_uninstall(
    cluster: kubetest.Cluster, namespace: str, fake_hub: tuple[str, hub.HubState], tmp_path: Path
) -> None:
    hub_url, hub_state = fake_hub
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", "hf-token", f"--from-literal=hf_access_token={TOKEN}"
    )
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", API_KEY_SECRET, f"--from-literal=api_key={API_KEY}"
    )
    create_voice_presets(cluster, namespace, tmp_path)
    describe = lambda: kubetest.namespace_report(cluster.api, namespace)  # noqa: E731

    # Install: the download init container fetches both repos from the fake hub, then the server loads.
    started = time.monotonic()
    presets = ["--set", "voicePresets.configMap=voices", "--set", f"tests.voice={VOICE}"]
    proc = cluster.helm(
        *install_args(namespace, hub_url, "--set", "modelCache.pvc.keep=true", *presets), check=False
    )
    assert proc.returncode == 0, f"helm install failed:\n{proc.stderr}\n{describe()}"
    install_seconds = time.monotonic() - started
    pods = server_pods(cluster, namespace)
    assert len(pods) == 1 and ready(pods[0]), describe()
    pod = pods[0]
    expected_files = sum(len(r.files) for r in hub_state.repos.values())
    assert sum(hub_state.downloads.values()) == expected_files, (
        "every file fetched once through the real script"
    )

    # Placed on a GPU node, asking for the GPU.
    node = cluster.core.read_node(pod.spec.node_name)
    assert int(node.status.capacity.get("nvidia.com/gpu", "0")) >= 1, node.metadata.name
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"

    # Ready only after the simulated load.
    server_status = next(s for s in pod.status.container_statuses if s.name == "server")
    running_since = server_status.state.running.started_at
    ready_at = next(c.last_transition_time for c in pod.status.conditions if c.type == "Ready")
    assert (ready_at - running_since).total_seconds() >= STARTUP_SECONDS - 1, (running_since, ready_at)
    # The API key from the Secret reached the server as VLLM_API_KEY (L5), not on its command line.
    assert not any("api-key" in a or "$(" in a for a in pod.spec.containers[0].args or [])
    speech = {
        "model": "higgs-audio-v2-generation-3B-base",
        "input": "Hi.",
        "voice": "belinda",
        "response_format": "wav",
    }
    url = f"http://{pod.status.pod_ip}:8000/v1/audio/speech"
    assert httpx.post(url, json=speech, timeout=60).status_code == 401
    authorized = httpx.post(url, json=speech, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert authorized.status_code == 200 and authorized.content[:4] == b"RIFF"
    voices = httpx.get(
        f"http://{pod.status.pod_ip}:8000/v1/audio/voices",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert VOICE in voices.text, f"the preset from the ConfigMap is not served: {voices.text[:300]}"
    log = cluster.kubectl("-n", namespace, "logs", pod.metadata.name, "-c", "download-model").stdout
    assert "complete" in log and TOKEN not in log
    # The semantic teacher went into the hub cache at its resolved commit, refs/main pointing there,
    # and the server (HF_HUB_OFFLINE=1, HF_HUB_CACHE on the cache volume) loaded it from there.
    assert f"{hub.HUBERT_REPO}: resolved main to {hub.HUBERT_REVISION}" in log
    assert f"{hub.HUBERT_REPO}: refs/main -> {hub.HUBERT_REVISION}" in log
    server_log = cluster.kubectl("-n", namespace, "logs", pod.metadata.name, "-c", "server").stdout
    teacher_file = f"hub/models--bosonai--hubert_base/snapshots/{hub.HUBERT_REVISION}/model.safetensors"
    assert teacher_file in server_log and "HF_HUB_OFFLINE=1" in server_log, server_log[-3000:]

    # helm test: speech + streaming chat, audio validated inside the cluster.
    proc = cluster.helm("test", RELEASE, "-n", namespace, "--logs", "--timeout", "180s", check=False)
    assert proc.returncode == 0, f"helm test failed:\n{proc.stdout}\n{proc.stderr}\n{describe()}"
    assert "PASS" in proc.stdout

    # Upgrade while a stream runs against the old pod: the stream must finish whole. The stream starts
    # once the new pod runs (its download done), so it is still in flight when the rollout takes the
    # old pod down, however slow the machine is.
    old_name = pod.metadata.name
    upgrade = install_args(
        namespace,
        hub_url,
        "--set",
        "modelCache.pvc.keep=true",
        "--set-string",
        "podAnnotations.rev=2",
        *presets,
    )
    upgrade[0] = "upgrade"
    upgrade.remove("--wait")
    proc = cluster.helm(*upgrade, check=False)
    assert proc.returncode == 0, f"helm upgrade failed:\n{proc.stderr}\n{describe()}"
    kubetest.wait_for(
        lambda: [
            p
            for p in server_pods(cluster, namespace)
            if p.metadata.name != old_name and p.status.phase == "Running"
        ],
        timeout=120,
        describe=describe,
        what="the upgraded pod Running",
    )
    result = StreamResult()
    streamer = threading.Thread(
        target=stream_once, args=(f"http://{pod.status.pod_ip}:8000", result), daemon=True
    )
    streamer.start()
    kubetest.wait_for(
        lambda: [p for p in server_pods(cluster, namespace) if p.metadata.name != old_name and ready(p)],
        timeout=120,
        describe=describe,
        what="the upgraded pod Ready",
    )
    old_terminating_at: float | None = None
    deadline = time.monotonic() + 120
    while streamer.is_alive() and time.monotonic() < deadline:
        try:
            old = cluster.core.read_namespaced_pod(old_name, namespace)
            if old.metadata.deletion_timestamp and old_terminating_at is None:
                old_terminating_at = time.monotonic()
        except client.ApiException as exc:
            if exc.status == 404 and old_terminating_at is None:
                old_terminating_at = time.monotonic()
        time.sleep(0.3)
    streamer.join(timeout=5)
    timing = (
        f"old pod terminating at {old_terminating_at - result.started:.1f} s"
        if old_terminating_at is not None
        else "old pod never seen terminating"
    ) + f", stream ended at {result.ended - result.started:.1f} s"
    assert not result.error, f"stream broke during the upgrade ({timing}): {result.error}\n{describe()}"
    assert result.done and result.chunks > 3, result
    assert result.pcm_bytes / 2 / 24000 > 5, f"only {result.pcm_bytes / 48000:.1f} s of audio"
    assert old_terminating_at is not None and old_terminating_at < result.ended, (
        f"the old pod was not taken down while the stream was in flight ({timing})"
    )
    pods = server_pods(cluster, namespace)
    assert old_name not in {p.metadata.name for p in pods if not p.metadata.deletion_timestamp}

    # Uninstall: everything goes but the kept cache claim.
    cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")
    selector = f"app.kubernetes.io/instance={RELEASE}"
    # Helm keeps test hook pods (so that `helm test --logs` can read them): only the finished test pod stays.
    kubetest.wait_for(
        lambda: not cluster.core.list_namespaced_pod(namespace, label_selector=SERVER).items,
        timeout=90,
        describe=describe,
        what="the release's server pods gone",
    )
    leftover = cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
    assert [(p.metadata.name, p.status.phase) for p in leftover] == [
        (f"{RELEASE}-higgs-audio-test-audio", "Succeeded")
    ]
    assert not cluster.apps.list_namespaced_deployment(namespace, label_selector=selector).items
    assert not cluster.core.list_namespaced_service(namespace, label_selector=selector).items
    assert not cluster.core.list_namespaced_config_map(namespace, label_selector=selector).items
    assert not cluster.core.list_namespaced_service_account(namespace, label_selector=selector).items
    assert not client.PolicyV1Api(cluster.api).list_namespaced_pod_disruption_budget(namespace).items
    claims = cluster.core.list_namespaced_persistent_volume_claim(namespace, label_selector=selector).items
    assert [c.metadata.name for c in claims] == [f"{RELEASE}-higgs-audio-model-cache"]
    print(f"install (download + {STARTUP_SECONDS} s load) took {install_seconds:.1f} s; stream {result}")


@pytest.mark.localstack("the model cache is a hostPath on this host, filled by the test")
def test_existing_cache_mode_needs_no_download(
    cluster: kubetest.Cluster, namespace: str, tmp_path: Path, fake_hub: tuple[str, hub.HubState]
) -> None:
    fill_existing_cache(tmp_path / "models")
    _, hub_state = fake_hub
    before = sum(hub_state.downloads.values())
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", API_KEY_SECRET, f"--from-literal=api_key={API_KEY}"
    )
    args = install_args(
        namespace, "http://127.0.0.1:9", "-f", str(ck.EXAMPLES / "values-local-existing.yaml")
    )
    args += ["--set", f"modelCache.existing.hostPath={tmp_path / 'models'}", "--set", "tests.enabled=false"]
    proc = cluster.helm(*args, check=False)
    describe = kubetest.namespace_report(cluster.api, namespace) if proc.returncode else ""
    assert proc.returncode == 0, f"helm install failed:\n{proc.stderr}\n{describe}"
    pods = server_pods(cluster, namespace)
    assert len(pods) == 1 and ready(pods[0])
    assert not pods[0].spec.init_containers, "mode existing downloads nothing"
    assert sum(hub_state.downloads.values()) == before
    r = httpx.post(
        f"http://{pods[0].status.pod_ip}:8000/v1/audio/speech",
        json={
            "model": "higgs-audio-v2-generation-3B-base",
            "input": "Hello.",
            "voice": "belinda",
            "response_format": "wav",
        },
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert r.status_code == 200 and r.content[:4] == b"RIFF"
    cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")


@pytest.mark.localstack("the model cache is a hostPath on this host, filled by the test")
def test_server_does_not_start_offline_without_the_semantic_model(
    cluster: kubetest.Cluster, namespace: str, tmp_path: Path
) -> None:
    """Mode existing with the model and the tokenizer but no hub/models--bosonai--hubert_base: the server
    exits 1 with transformers' offline error, as the real one does, and the pod never turns Ready."""
    fill_existing_cache(tmp_path / "models", with_teacher=False)
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", API_KEY_SECRET, f"--from-literal=api_key={API_KEY}"
    )
    args = install_args(
        namespace, "http://127.0.0.1:9", "-f", str(ck.EXAMPLES / "values-local-existing.yaml")
    )
    args += ["--set", f"modelCache.existing.hostPath={tmp_path / 'models'}", "--set", "tests.enabled=false"]
    args.remove("--wait")
    cluster.helm(*args)
    describe = lambda: kubetest.namespace_report(cluster.api, namespace)  # noqa: E731
    pod = kubetest.wait_for(
        lambda: exited_with_error(cluster, namespace, "server"),
        timeout=90,
        describe=describe,
        what="the server container to exit with an error",
    )
    assert not ready(pod)
    logs = container_logs(cluster, namespace, pod.metadata.name, "server")
    assert "bosonai/hubert_base is not the path to a directory containing a file named config.json" in logs
    assert "models--bosonai--hubert_base does not exist" in logs and "semanticModel" in logs, logs[-3000:]
    cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")


@pytest.mark.localstack(
    "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it"
)
def test_download_names_a_hub_without_the_semantic_model(cluster: kubetest.Cluster, namespace: str) -> None:
    """A Hub (or mirror) that lacks bosonai/hubert_base: the init container fails naming it."""
    state = hub.new_state(token=TOKEN, weights_bytes=4096, without=[hub.HUBERT_REPO])
    with hub.running_hub(state, port=free_port()) as hub_url:
        cluster.kubectl(
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            "hf-token",
            f"--from-literal=hf_access_token={TOKEN}",
        )
        cluster.kubectl(
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            API_KEY_SECRET,
            f"--from-literal=api_key={API_KEY}",
        )
        args = install_args(namespace, hub_url, "--set", "tests.enabled=false")
        args.remove("--wait")
        cluster.helm(*args)
        pod = kubetest.wait_for(
            lambda: exited_with_error(cluster, namespace, "download-model"),
            timeout=90,
            describe=lambda: kubetest.namespace_report(cluster.api, namespace),
            what="the download init container to fail",
        )
        logs = container_logs(cluster, namespace, pod.metadata.name, "download-model")
        assert f"ERROR: RepositoryNotFound: repository {hub.HUBERT_REPO} not found on {hub_url}" in logs, (
            logs[-3000:]
        )
        server = container_status(pod, "server")
        assert server is None or server.state.running is None, "the server must not start"
        cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")


@pytest.mark.localstack(
    "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it"
)
def test_omni_install_serves_speech_the_vllm_omni_way(cluster: kubetest.Cluster, namespace: str) -> None:
    """examples/values-local-omni.yaml (serverGeneration omni) against the fake hub's transformers-native
    commits: the init container downloads the model into its directory and the tokenizer into the hub
    cache; `vllm serve <model> --omni --deploy-config <the image's YAML>` runs the vLLM-Omni emulation
    (hack/localkube-images.yaml), which checks both at start (OS8, OS11) and turns Ready on /health (OE4);
    a speech request as vLLM-Omni takes it (no voice, wav) gets one WAV file (OP1), the API key from
    VLLM_API_KEY (OE6)."""
    state = hub.new_state(token=TOKEN, weights_bytes=4096)
    with hub.running_hub(state, port=free_port()) as hub_url:
        for secret, literal in (
            ("hf-token", f"hf_access_token={TOKEN}"),
            (API_KEY_SECRET, f"api_key={API_KEY}"),
        ):
            cluster.kubectl(
                "-n", namespace, "create", "secret", "generic", secret, f"--from-literal={literal}"
            )
        describe = lambda: kubetest.namespace_report(cluster.api, namespace)  # noqa: E731
        proc = cluster.helm(
            "install", RELEASE, str(ck.CHART), "-n", namespace,
            "-f", str(ck.EXAMPLES / "values-local-omni.yaml"),
            "--set", f"modelCache.hfEndpoint={hub_url}",
            "--set", f"apiKey.existingSecret={API_KEY_SECRET}",
            "--wait", "--timeout", "180s",
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"helm install failed:\n{proc.stderr}\n{describe()}"
        pods = server_pods(cluster, namespace)
        assert len(pods) == 1 and ready(pods[0]), describe()
        pod = pods[0]
        # Only the two omni commits were fetched: no semantic teacher, nothing at `main`.
        fetched = set(state.downloads)
        model_files = {(r.repo_id, r.revision): r.files for r in hub.omni_repos(4096)}
        expected = {f"{hub.MODEL_REPO}/{n}" for n in model_files[(hub.MODEL_REPO, hub.OMNI_MODEL_REVISION)]}
        expected |= {
            f"{hub.TOKENIZER_REPO}/{n}"
            for n in model_files[(hub.TOKENIZER_REPO, hub.OMNI_TOKENIZER_REVISION)]
        }
        assert fetched == expected, fetched ^ expected
        log = cluster.kubectl("-n", namespace, "logs", pod.metadata.name, "-c", "download-model").stdout
        assert f"{hub.TOKENIZER_REPO}: refs/main -> {hub.OMNI_TOKENIZER_REVISION}" in log, log[-2000:]
        server_log = cluster.kubectl("-n", namespace, "logs", pod.metadata.name, "-c", "server").stdout
        snapshot = f"hub/models--bosonai--higgs-audio-v2-tokenizer/snapshots/{hub.OMNI_TOKENIZER_REVISION}"
        assert snapshot in server_log and "higgs_audio_v2.yaml" in server_log, server_log[-3000:]
        assert "SIMULATOR" in server_log  # the emulation of vLLM-Omni, not Boson's simulator

        url = f"http://{pod.status.pod_ip}:8000"
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "healthy"}
        speech = {"model": "higgs-audio-v2-generation-3B-base", "input": "Hello.", "response_format": "wav"}
        assert httpx.post(f"{url}/v1/audio/speech", json=speech, timeout=60).status_code == 401
        r = httpx.post(
            f"{url}/v1/audio/speech", json=speech, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        )
        assert r.status_code == 200, r.text[:500]
        assert r.headers["content-type"].split(";")[0] == "audio/wav"
        assert r.content[:4] == b"RIFF", r.content[:16]
        (riff_size,) = struct.unpack("<I", r.content[4:8])
        assert riff_size + 8 == len(r.content), "one complete WAV file, nothing after it"
        with wave.open(io.BytesIO(r.content)) as w:
            assert w.getframerate() == 24000 and w.getnchannels() == 1 and w.getnframes() > 0
        # helm test speaks vLLM-Omni's API too (one WAV file, then an SSE stream to speech.audio.done).
        proc = cluster.helm("test", RELEASE, "-n", namespace, "--logs", "--timeout", "180s", check=False)
        assert proc.returncode == 0, f"helm test failed:\n{proc.stdout}\n{proc.stderr}\n{describe()}"
        assert "PASS" in proc.stdout and "omni" in proc.stdout, proc.stdout
        cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")


@pytest.mark.localstack(
    "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it"
)
def test_shared_cache_claim_serves_two_replicas_on_two_nodes(
    cluster: kubetest.Cluster, namespace: str, fake_hub: tuple[str, hub.HubState]
) -> None:
    """examples/values-local.yaml scaled out: its ReadWriteMany claim (a hostPath volume the local
    stack's provisioner makes with the requested modes) is mounted by two replicas, one per one-GPU node."""
    hub_url, _ = fake_hub
    for name, key, value in (("hf-token", "hf_access_token", TOKEN), (API_KEY_SECRET, "api_key", API_KEY)):
        cluster.kubectl("-n", namespace, "create", "secret", "generic", name, f"--from-literal={key}={value}")
    describe = lambda: kubetest.namespace_report(cluster.api, namespace)  # noqa: E731
    proc = cluster.helm(*install_args(namespace, hub_url, "--set", "replicaCount=2"), check=False)
    assert proc.returncode == 0, f"helm install failed:\n{proc.stderr}\n{describe()}"
    pods = [p for p in server_pods(cluster, namespace) if ready(p)]
    assert len(pods) == 2, describe()
    claims = {
        v.persistent_volume_claim.claim_name
        for p in pods
        for v in p.spec.volumes
        if v.persistent_volume_claim
    }
    assert len(claims) == 1, claims
    pvc = cluster.core.read_namespaced_persistent_volume_claim(claims.pop(), namespace)
    assert pvc.spec.access_modes == ["ReadWriteMany"]
    pv = cluster.core.read_persistent_volume(pvc.spec.volume_name)
    assert pv.spec.access_modes == ["ReadWriteMany"], "the provisioner honours the requested modes"
    assert len({p.spec.node_name for p in pods}) == 2, describe()


def test_an_existing_single_node_claim_is_read_from_the_cluster_and_refused_for_two_replicas(
    cluster: kubetest.Cluster, namespace: str
) -> None:
    """At install the chart reads an existing cache claim's access modes (`lookup`), in both modes that
    name one (pvc with create=false, existing with a persistentVolumeClaim volume): a ReadWriteOnce claim
    with two replicas is refused naming the claim, even where the values state other modes; a
    ReadWriteMany claim installs."""
    for name, mode in (("rwo", "ReadWriteOnce"), ("rwx", "ReadWriteMany")):
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}},
        }
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(claim))

    def caches(claim: str) -> list[dict]:
        return [
            {"mode": "existing", "existing": {"volume": {"persistentVolumeClaim": {"claimName": claim}}}},
            {
                "mode": "pvc",
                "pvc": {"create": False, "existingClaim": claim, "accessModes": ["ReadWriteMany"]},
            },
        ]

    def install(cache: dict) -> tuple[int, str]:
        proc = cluster.helm(
            "install", RELEASE, str(ck.CHART), "-n", namespace, "--dry-run=server",
            "--set-json", f"modelCache={json.dumps(cache)}", "--set", "replicaCount=2", check=False,
        )  # fmt: skip
        return proc.returncode, proc.stderr

    for cache in caches("rwo"):
        rc, err = install(cache)
        assert rc != 0, f"{cache}: installed"
        assert 'the claim rwo (its spec.accessModes, read from the cluster) ["ReadWriteOnce"]' in err, err
        assert "replicaCount 2" in err and "ReadWriteMany claim" in err, err
    for cache in caches("rwx"):
        rc, err = install(cache)
        assert rc == 0, f"{cache}: {err}"
