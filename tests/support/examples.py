"""Helpers of the examples test (tests/chart/test_examples_cluster.py): what the examples' header
comments ask a user to create first, overrides on a loaded HiggsDeployment, a speech request that
checks the audio it gets, and freeing the fake GPU nodes between examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from higgs_sim import hub
from tests.support import kubetest
from tests.support.contract import RATE, split_wavs
from tests.support.omni import wav_data

SERVED = "higgs-audio-v2-generation-3B-base"
HUB_TOKEN = "hf_local_fake_token"  # the token the local examples' comments create hf-token with
API_KEY = "k-examples-0123"


def create_secret(cluster: kubetest.Cluster, namespace: str, name: str, key: str, value: str) -> None:
    """`kubectl -n <namespace> create secret generic <name> --from-literal=<key>=<value>`."""
    cluster.kubectl(
        "-n", namespace, "create", "secret", "generic", name, f"--from-literal={key}={value}"
    )  # fmt: skip


def create_namespace(cluster: kubetest.Cluster, name: str) -> str:
    """A second namespace for a test (labelled as the test's own, so a killed session's is cleared)."""
    labels = {kubetest.NAMESPACE_LABEL: "true"}
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    return name


def delete_namespace(cluster: kubetest.Cluster, name: str) -> None:
    try:
        cluster.core.delete_namespace(name, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise


def ensure_runtime_class(cluster: kubetest.Cluster, name: str) -> bool:
    """The RuntimeClass a GPU cluster's NVIDIA GPU operator installs; True when this call made it.
    Without it the API server refuses every pod that names it."""
    node = client.NodeV1Api(cluster.api)
    try:
        node.read_runtime_class(name)
        return False
    except ApiException as exc:
        if exc.status != 404:
            raise
    node.create_runtime_class(client.V1RuntimeClass(metadata=client.V1ObjectMeta(name=name), handler=name))
    return True


def delete_runtime_class(cluster: kubetest.Cluster, name: str) -> None:
    try:
        client.NodeV1Api(cluster.api).delete_runtime_class(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def fill_existing_cache(root: Path, with_teacher: bool = True) -> None:
    """A directory as an admin fills it for modelCache.mode existing: <repository>/<revision>/ for the
    model and the tokenizer, the semantic teacher (unless left out) in the hub cache layout under hub/
    (refs/main -> snapshots/<commit>/), as charts/higgs-audio/files/download_model.py lays them out."""
    for repo in hub.default_repos(4096):
        if repo.repo_id == hub.HUBERT_REPO:
            if not with_teacher:
                continue
            storage = root / "hub" / ("models--" + repo.repo_id.replace("/", "--"))
            (storage / "refs").mkdir(parents=True)
            (storage / "refs" / "main").write_text(repo.revision)
            target = storage / "snapshots" / repo.revision
        else:
            target = root / repo.repo_id / repo.revision
        for name, data in repo.files.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)


def set_path(obj: dict[str, Any], dotted: str, value: Any) -> None:
    """obj[a][b][c] = value for "a.b.c", making the maps on the way."""
    *parents, last = dotted.split(".")
    for key in parents:
        obj = obj.setdefault(key, {})
    obj[last] = value


def load_resource(path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The example's HiggsDeployment with `overrides` (dotted paths from the top, e.g. spec.x.y) set."""
    body = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        set_path(body, dotted, value)
    return body


def speech_seconds(url: str, generation: str, api_key: str | None = None) -> float:
    """POST /v1/audio/speech for a short WAV; the seconds of 24 kHz mono audio it carries.

    fork: `voice` is required and the body is one WAV file per chunk, joined (docs/server-contract.md
    SP7); omni: no presets, the body is one WAV file (docs/server-contract-omni.md OP1)."""
    body: dict[str, Any] = {"model": SERVED, "input": "Hello from the examples.", "response_format": "wav"}
    if generation == "fork":
        body["voice"] = "belinda"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.post(f"{url}/v1/audio/speech", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, f"speech through {url}: HTTP {r.status_code} {r.text[:300]}"
    if generation == "omni":
        rate, pcm = wav_data(r.content)
        assert rate == RATE, rate
    else:
        pcm = b"".join(split_wavs(r.content))
    return len(pcm) / 2 / RATE


def release_gpus(cluster: kubetest.Cluster, namespace: str, timeout: float = 60) -> None:
    """Stop the namespace's serving pods at once, so the next example gets the GPU nodes: its
    Deployments and ReplicaSets deleted (nothing recreates the pods), then every pod deleted with no
    grace period (the GPU examples' preStop sleep and grace period would hold the GPUs for minutes)."""
    cluster.apps.delete_collection_namespaced_deployment(namespace)
    cluster.apps.delete_collection_namespaced_replica_set(namespace)

    def gone() -> bool:
        pods = cluster.core.list_namespaced_pod(namespace).items
        for pod in pods:
            try:
                cluster.core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return not pods

    kubetest.wait_for(gone, timeout, what=f"the pods of namespace {namespace} gone", interval=0.5)
