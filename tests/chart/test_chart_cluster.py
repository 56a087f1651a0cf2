"""charts/higgs-audio on the local cluster (fake GPU nodes running the simulator), with the real
download path against the fake Hugging Face Hub: install, helm test, upgrade with a stream in
flight, uninstall keeping the cache claim; and the `existing` cache mode."""

from __future__ import annotations

import base64
import json
import math
import struct
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import chartkit as ck
import httpx
import kubetest
import pytest
from conftest import free_port
from higgs_sim import hub
from kubernetes import client

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
    # The API key from the Secret reached --api-key through $(HIGGS_API_KEY).
    speech = {"model": "higgs-audio-v2-generation-3B-base", "input": "Hi.", "response_format": "wav"}
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

    # helm test: speech + streaming chat, audio validated inside the cluster.
    proc = cluster.helm("test", RELEASE, "-n", namespace, "--logs", "--timeout", "180s", check=False)
    assert proc.returncode == 0, f"helm test failed:\n{proc.stdout}\n{proc.stderr}\n{describe()}"
    assert "PASS" in proc.stdout

    # Upgrade while a stream runs against the old pod: the stream must finish whole.
    old_name = pod.metadata.name
    result = StreamResult()
    streamer = threading.Thread(
        target=stream_once, args=(f"http://{pod.status.pod_ip}:8000", result), daemon=True
    )
    streamer.start()
    time.sleep(1.0)
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
    proc = cluster.helm(*upgrade, check=False)
    assert proc.returncode == 0, f"helm upgrade failed:\n{proc.stderr}\n{describe()}"
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
    timing = f"old pod terminating at {old_terminating_at and old_terminating_at - result.started:.1f} s"
    assert not result.error, f"stream broke during the upgrade ({timing}): {result.error}\n{describe()}"
    assert result.done and result.chunks > 3, result
    assert result.pcm_bytes / 2 / 24000 > 5, f"only {result.pcm_bytes / 48000:.1f} s of audio"
    assert old_terminating_at is not None and old_terminating_at < result.ended, (
        "the old pod was not taken down while the stream was in flight"
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


def test_existing_cache_mode_needs_no_download(
    cluster: kubetest.Cluster, namespace: str, tmp_path: Path, fake_hub: tuple[str, hub.HubState]
) -> None:
    # A directory already filled with <repository>/<revision>/ (as an admin would have it).
    for repo in hub.default_repos(4096):
        root = tmp_path / "models" / repo.repo_id / repo.revision
        for name, data in repo.files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
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
        json={"model": "higgs-audio-v2-generation-3B-base", "input": "Hello.", "response_format": "wav"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert r.status_code == 200 and r.content[:4] == b"RIFF"
    cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")


def test_matrix_passes_server_side_dry_run(cluster: kubetest.Cluster, namespace: str) -> None:
    """The real API server (admission, enum and defaulting checks kubernetes-validate lacks) accepts
    every object of the render matrix; CRD kinds not installed here are left out."""
    import yaml
    from test_chart_render import CRD_KINDS, MATRIX

    for name, values in sorted(MATRIX.items()):
        objects = [o for o in ck.render(values, namespace=namespace) if o["kind"] not in CRD_KINDS]
        # Pods are admitted only with an existing ServiceAccount: create it for real (throwaway namespace).
        accounts = [o for o in objects if o["kind"] == "ServiceAccount"]
        if accounts:
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(accounts))
        manifest = yaml.safe_dump_all(objects)
        proc = cluster.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
        )
        assert proc.returncode == 0, f"{name}: the API server refused the render:\n{proc.stderr}"
        assert proc.stdout.count("(server dry run)") == len(objects), proc.stdout
