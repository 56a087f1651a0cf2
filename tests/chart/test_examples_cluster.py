"""Every file in examples/ installed on the local stack as its header comment says, and serving speech.

Each example is installed unchanged (`helm install -f <example>`, `kubectl apply -f <example>` with the
operator running), plus only the overrides and prerequisites listed in EXAMPLES_CASES with their reasons; then
its pods turn Ready and a speech request through its Service returns audio. A new file in examples/
without an entry fails test_every_example_has_a_case.

Not proved here, and why:
- values-gpu-autoscaling.yaml: scaling itself. The HPA reads vllm:num_requests_waiting from the custom
  metrics API, which prometheus-adapter serves on a real cluster; the local stack has none. Proved: the
  API server accepts the HPA, and the HPA controller reads the scale of the release's Deployment
  through it (AbleToScale=True).
- values-gpu-pvc.yaml, values-gpu-autoscaling.yaml: a Prometheus scraping their ServiceMonitor (the
  Prometheus Operator's CRDs are installed, from hack/install-crds.sh, so the API server checks the
  ServiceMonitor against the real schema; no Prometheus Operator runs). Their Ingress and NetworkPolicy
  are accepted by the API server but neither routed nor enforced (no ingress controller, no policy
  enforcement on the local stack).
- values-gpu-single.yaml: the NVIDIA container runtime. The RuntimeClass `nvidia` is created as the
  GPU operator creates it (the API server refuses pods naming a missing one); the agent runs no
  containers. Its node directory is a temporary one filled the way an admin fills /data/hf-models.
- The GPU examples run Boson's image, which hack/localkube-images.yaml maps to the simulator: the
  real server's start-up and GPU use are not proved.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client

from tests.support import crds, kubetest
from tests.support import examples as ex
from tests.support.chart import CHART, EXAMPLES
from tests.support.higgsdeployment import get_hd
from tests.support.operator import REPO, HubProcess, OperatorProcess

RELEASE = "tts"  # the release name the examples' comments install with
OPERATOR_RELEASE = "higgs-operator"
INSTALL_TIMEOUT = "120s"
HUB = "the fake Hugging Face hub on this host's loopback (a free port), instead of huggingface.co"


@dataclass
class Run:
    """One example being checked: what the extra checks of an example get."""

    cluster: kubetest.Cluster
    namespace: str
    url: str  # the Service, routing
    pods: list[client.V1Pod] = field(default_factory=list)


@dataclass(frozen=True)
class Example:
    """How a user installs one example, and what the local stack needs on top of it.

    `how`: chart (helm install charts/higgs-audio), resource (kubectl apply, the operator running),
    operator (helm install charts/higgs-operator). `overrides`: (path=value, why), `--set` for the
    charts, a path into the resource for resources; {hub} and {cache} are filled in at run time.
    `needs`: prerequisites from PREREQUISITES. `base`: files the example's header puts under it."""

    how: str
    overrides: tuple[tuple[str, str], ...] = ()
    needs: tuple[str, ...] = ()
    base: tuple[str, ...] = ()
    pods: int = 1
    generation: str = "fork"
    api_key: bool = False
    check: Callable[[Run], None] | None = None


# What the examples' header comments tell a user to create first (all in the example's namespace unless
# said otherwise). Tokens are the fake hub's: it refuses any other, so the Secret really is used.
PREREQUISITES = {
    "hf-token": "Secret hf-token (key hf_access_token) holding the hub's token",
    "higgs-api-key": "Secret higgs-api-key (key api_key) the clients' key is checked against",
    "hf-token-shared": "Secret hf-token-shared in the operator's namespace, mirrored by the operator",
    "prometheus-operator-crds": "the Prometheus Operator's CRDs (kube-prometheus-stack installs them)",
    "runtimeclass-nvidia": "RuntimeClass nvidia, which the NVIDIA GPU operator installs on a GPU cluster",
    "filled-cache": "a host directory holding the snapshots (mode existing), filled as an admin does",
}


# --- the per-example checks beyond "Ready and serving" ----------------------------------------------------
def check_existing_cache(run: Run) -> None:
    assert all(not p.spec.init_containers for p in run.pods), "mode existing downloads nothing"


def check_gpu_single(run: Run) -> None:
    check_existing_cache(run)
    assert all(p.spec.runtime_class_name == "nvidia" for p in run.pods)
    deployment = run.cluster.apps.read_namespaced_deployment(f"{RELEASE}-higgs-audio", run.namespace)
    assert deployment.spec.strategy.type == "Recreate"
    pdbs = client.PolicyV1Api(run.cluster.api).list_namespaced_pod_disruption_budget(run.namespace).items
    assert pdbs == [], "podDisruptionBudget.enabled=false"


def check_service_monitor(run: Run, labels: dict[str, str]) -> None:
    """The ServiceMonitor exists with `labels` and selects the release's Service."""
    name = f"{RELEASE}-higgs-audio"
    monitor = client.CustomObjectsApi(run.cluster.api).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", run.namespace, "servicemonitors", name
    )
    assert labels.items() <= monitor["metadata"]["labels"].items(), monitor["metadata"]["labels"]
    service = run.cluster.core.read_namespaced_service(name, run.namespace)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service.metadata.labels.items(), (selector, service.metadata.labels)


def check_gpu_pvc(run: Run) -> None:
    check_service_monitor(run, {"release": "kube-prometheus-stack"})
    assert len({p.spec.node_name for p in run.pods}) == 2, "two replicas, one per one-GPU node"
    claims = {
        v.persistent_volume_claim.claim_name
        for p in run.pods
        for v in p.spec.volumes
        if v.persistent_volume_claim
    }
    assert len(claims) == 1, f"both replicas share one claim: {claims}"
    pvc = run.cluster.core.read_namespaced_persistent_volume_claim(claims.pop(), run.namespace)
    assert pvc.spec.access_modes == ["ReadWriteMany"] and pvc.status.phase == "Bound"
    net = client.NetworkingV1Api(run.cluster.api)
    ingress = net.read_namespaced_ingress(f"{RELEASE}-higgs-audio", run.namespace)
    assert [r.host for r in ingress.spec.rules] == ["tts.example.com"]
    assert ingress.spec.ingress_class_name == "nginx"
    assert net.list_namespaced_network_policy(run.namespace).items, "networkPolicy.enabled"


def check_gpu_autoscaling(run: Run) -> None:
    check_service_monitor(run, {})
    name = f"{RELEASE}-higgs-audio"
    hpa = client.AutoscalingV2Api(run.cluster.api).read_namespaced_horizontal_pod_autoscaler(
        name, run.namespace
    )
    target = hpa.spec.scale_target_ref
    assert (target.api_version, target.kind, target.name) == ("apps/v1", "Deployment", name)
    assert [m.pods.metric.name for m in hpa.spec.metrics] == ["vllm:num_requests_waiting"]
    # The controller reads the target's scale subresource: AbleToScale=True (no metrics API here, so
    # ScalingActive stays False).
    kubetest.wait_for_condition(
        run.cluster.api, f"horizontalpodautoscaler/{name}", "AbleToScale", namespace=run.namespace, timeout=45
    )
    unauthorized = httpx.post(f"{run.url}/v1/audio/speech", json={}, timeout=10)
    assert unauthorized.status_code == 401, "apiKey.existingSecret: requests without the key are refused"


def check_mirrored_token(run: Run) -> None:
    copy = run.cluster.core.read_namespaced_secret("tts-fixed-hf-token", run.namespace)
    assert base64.b64decode(copy.data["hf_access_token"]).decode() == ex.HUB_TOKEN
    assert copy.metadata.owner_references[0].kind == "HiggsDeployment"
    own = {s.metadata.name for s in run.cluster.core.list_namespaced_secret(run.namespace).items}
    assert "hf-token-shared" not in own, "the source lives in the operator's namespace only"


EXAMPLES_CASES: dict[str, Example] = {
    "values-local.yaml": Example(
        "chart",
        overrides=(("modelCache.hfEndpoint={hub}", HUB),),
        needs=("hf-token",),
    ),
    "values-local-existing.yaml": Example(
        "chart",
        base=("values-local.yaml",),
        overrides=(
            ("modelCache.existing.hostPath={cache}", "the header's --set: the directory filled for the test"),
        ),
        needs=("hf-token", "filled-cache"),
        check=check_existing_cache,
    ),
    "values-local-omni.yaml": Example(
        "chart",
        overrides=(("modelCache.hfEndpoint={hub}", HUB),),
        needs=("hf-token",),
        generation="omni",
    ),
    "values-gpu-single.yaml": Example(
        "chart",
        overrides=(
            (
                "modelCache.existing.hostPath={cache}",
                "the node directory /data/hf-models an admin fills on a GPU node: a temporary directory "
                "filled the same way (never write into this host's /data)",
            ),
        ),
        needs=("runtimeclass-nvidia", "filled-cache"),
        check=check_gpu_single,
    ),
    "values-gpu-pvc.yaml": Example(
        "chart",
        overrides=(("modelCache.hfEndpoint={hub}", HUB),),
        needs=("hf-token", "prometheus-operator-crds"),
        pods=2,
        check=check_gpu_pvc,
    ),
    "values-gpu-autoscaling.yaml": Example(
        "chart",
        overrides=(("modelCache.hfEndpoint={hub}", HUB),),
        needs=("hf-token", "higgs-api-key", "prometheus-operator-crds"),
        api_key=True,
        check=check_gpu_autoscaling,
    ),
    "higgsdeployment-local.yaml": Example(
        "resource",
        overrides=(("spec.modelCache.hfEndpoint={hub}", HUB),),
        needs=("hf-token",),
    ),
    "higgsdeployment-gpu.yaml": Example(
        "resource",
        overrides=(("spec.modelCache.hfEndpoint={hub}", HUB),),
        needs=("hf-token",),
    ),
    "higgsdeployment-mirrored-token.yaml": Example(
        "resource",
        overrides=(("spec.modelCache.hfEndpoint={hub}", HUB),),
        needs=("hf-token-shared",),
        pods=2,
        check=check_mirrored_token,
    ),
    # Proved serving the way `make demo` uses it: it runs examples/higgsdeployment-local.yaml.
    "operator-values-local.yaml": Example(
        "operator",
        overrides=(("spec.modelCache.hfEndpoint={hub}", f"(on higgsdeployment-local.yaml) {HUB}"),),
        needs=("hf-token",),
    ),
}


def test_every_example_has_a_case() -> None:
    files = sorted(p.name for p in EXAMPLES.iterdir() if p.is_file())
    missing = sorted(set(files) - set(EXAMPLES_CASES))
    assert not missing, f"examples/ files with no case in EXAMPLES_CASES of {__file__}: {missing}"
    assert sorted(EXAMPLES_CASES) == files, (
        f"cases for files no longer in examples/: {set(EXAMPLES_CASES) - set(files)}"
    )
    for name, case in EXAMPLES_CASES.items():
        assert set(case.needs) <= set(PREREQUISITES), f"{name}: unknown prerequisite in {case.needs}"
        assert all(why for _, why in case.overrides), f"{name}: every override says why"


# --- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token_hub() -> Iterator[HubProcess]:
    """The fake hub requiring the token the examples' Secrets hold."""
    h = HubProcess("--token", ex.HUB_TOKEN)
    try:
        yield h
    finally:
        h.stop()


def fill(value: str, hub_url: str, cache: Path) -> str:
    return value.replace("{hub}", hub_url).replace("{cache}", str(cache))


@dataclass
class Prepared:
    # Where the operator looks for mirrorFrom sources (higgs-system in a Helm install).
    operator_namespace: str
    undo: list[Callable[[], None]] = field(default_factory=list)


def prepare(cluster: kubetest.Cluster, namespace: str, case: Example, cache: Path) -> Prepared:
    """Create the case's prerequisites; `undo` removes those outside the test's namespace."""
    done = Prepared(operator_namespace=namespace)
    if "hf-token" in case.needs:
        ex.create_secret(cluster, namespace, "hf-token", "hf_access_token", ex.HUB_TOKEN)
    if "higgs-api-key" in case.needs:
        ex.create_secret(cluster, namespace, "higgs-api-key", "api_key", ex.API_KEY)
    if "hf-token-shared" in case.needs:  # in another namespace: the operator's own
        done.operator_namespace = ex.create_namespace(cluster, f"{namespace}-op")
        done.undo.append(lambda: ex.delete_namespace(cluster, done.operator_namespace))
        ex.create_secret(cluster, done.operator_namespace, "hf-token-shared", "hf_access_token", ex.HUB_TOKEN)
    if "filled-cache" in case.needs:
        ex.fill_existing_cache(cache)
    if "prometheus-operator-crds" in case.needs:
        crds.install(cluster, "prometheus-operator")  # as kube-prometheus-stack installs them
    if "runtimeclass-nvidia" in case.needs and ex.ensure_runtime_class(cluster, "nvidia"):
        done.undo.append(lambda: ex.delete_runtime_class(cluster, "nvidia"))
    return done


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def server_pods(cluster: kubetest.Cluster, namespace: str, instance: str) -> list[client.V1Pod]:
    selector = f"app.kubernetes.io/instance={instance},app.kubernetes.io/component=server"
    return [
        p
        for p in cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
        if p.metadata.deletion_timestamp is None
    ]


# --- the installs -------------------------------------------------------------------------------------------
def install_chart(
    cluster: kubetest.Cluster, namespace: str, name: str, case: Example, hub_url: str, cache: Path
) -> Run:
    files = [*case.base, name]
    args = ["install", RELEASE, str(CHART), "-n", namespace]
    for f in files:
        args += ["-f", str(EXAMPLES / f)]
    for setting, _ in case.overrides:
        args += ["--set", fill(setting, hub_url, cache)]
    proc = cluster.helm(*args, "--wait", "--timeout", INSTALL_TIMEOUT, check=False)
    assert proc.returncode == 0, (
        f"helm install {name} failed:\n{proc.stderr}\n{kubetest.namespace_report(cluster.api, namespace)}"
    )
    pods = server_pods(cluster, namespace, RELEASE)
    assert len(pods) == case.pods, kubetest.namespace_report(cluster.api, namespace)
    url = kubetest.routed_service_url(cluster, namespace, f"{RELEASE}-higgs-audio", backends=case.pods)
    return Run(cluster, namespace, url, pods)


def apply_resource(
    cluster: kubetest.Cluster,
    namespace: str,
    path: Path,
    case: Example,
    hub_url: str,
    cache: Path,
    timeout: float = 120,
) -> Run:
    overrides = {
        dotted: fill(value, hub_url, cache) for dotted, value in (o.split("=", 1) for o, _ in case.overrides)
    }
    body = ex.load_resource(path, overrides)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    name = body["metadata"]["name"]
    kubetest.wait_for_condition(
        cluster.api, f"higgsdeployment/{name}", "Available", namespace=namespace, timeout=timeout,
        fail_on_pods=f"app.kubernetes.io/instance={name}",
    )  # fmt: skip
    kubetest.wait_for(
        lambda: (get_hd(cluster, namespace, name).get("status") or {}).get("readyReplicas") == case.pods,
        timeout,
        describe=lambda: kubetest.namespace_report(cluster.api, namespace),
        what=f"HiggsDeployment/{name} readyReplicas={case.pods}",
    )
    pods = [p for p in server_pods(cluster, namespace, name) if ready(p)]
    url = kubetest.routed_service_url(cluster, namespace, name, backends=case.pods)
    return Run(cluster, namespace, url, pods)


def delete_resources(cluster: kubetest.Cluster, namespace: str) -> None:
    """Delete the namespace's HiggsDeployments while their operator still runs."""
    cluster.kubectl(
        "delete", "higgsdeployments", "--all", "-n", namespace, "--wait=true", "--timeout=30s", check=False
    )


def install_operator_and_resource(
    cluster: kubetest.Cluster, namespace: str, name: str, case: Example, hub_url: str, cache: Path
) -> Run:
    """`make demo`'s way: charts/higgs-operator with the example (two peered pods on the tainted nodes,
    the image mapped to this checkout), then examples/higgsdeployment-local.yaml, run by those pods."""
    proc = cluster.helm(
        "install", OPERATOR_RELEASE, str(REPO / "charts" / "higgs-operator"), "-n", namespace,
        "-f", str(EXAMPLES / name), "--wait", "--timeout", INSTALL_TIMEOUT,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"helm install {name} failed:\n{proc.stderr}\n{kubetest.namespace_report(cluster.api, namespace)}"
    )
    selector = f"app.kubernetes.io/instance={OPERATOR_RELEASE}"
    operators = kubetest.wait_for_pods_ready(cluster.api, namespace, selector, count=2, timeout=60)
    run = apply_resource(cluster, namespace, EXAMPLES / "higgsdeployment-local.yaml", case, hub_url, cache)
    logs = "".join(
        cluster.kubectl("-n", namespace, "logs", p.metadata.name, check=False).stdout for p in operators
    )
    # No other operator runs during this case: the resource's creation was handled by these pods.
    assert "Creation is processed: 1 succeeded" in logs, (
        f"the in-cluster operator did not act:\n{logs[-3000:]}"
    )
    return run


# --- the test ----------------------------------------------------------------------------------------------
@pytest.mark.cluster
@pytest.mark.timeout(240)
@pytest.mark.localstack(
    "the fake Hugging Face hub and the filled model directories are on this host, where the serving pods "
    "must reach them"
)
@pytest.mark.parametrize("name", sorted(EXAMPLES_CASES))
def test_example_installs_and_serves(
    name: str,
    cluster: kubetest.Cluster,
    namespace: str,
    token_hub: HubProcess,
    crd: None,
    tmp_path: Path,
) -> None:
    case = EXAMPLES_CASES[name]
    cache = tmp_path / "models"
    started = time.monotonic()
    prepared = prepare(cluster, namespace, case, cache)
    operator: OperatorProcess | None = None
    try:
        if case.how == "chart":
            run = install_chart(cluster, namespace, name, case, token_hub.url, cache)
        elif case.how == "resource":
            operator = OperatorProcess(
                tmp_path / "operator.log", "--operator-namespace", prepared.operator_namespace
            )
            operator.start()
            run = apply_resource(cluster, namespace, EXAMPLES / name, case, token_hub.url, cache)
        else:
            run = install_operator_and_resource(cluster, namespace, name, case, token_hub.url, cache)
        seconds = ex.speech_seconds(run.url, case.generation, ex.API_KEY if case.api_key else None)
        assert seconds > 0.5, f"{name}: only {seconds:.2f} s of audio"
        if case.check:
            case.check(run)
        print(f"{name}: Ready and serving ({seconds:.1f} s of audio) in {time.monotonic() - started:.1f} s")
    except AssertionError:
        if operator is not None:
            print(f"--- operator log ---\n{operator.log()[-4000:]}")
        raise
    finally:
        if case.how != "chart":
            delete_resources(cluster, namespace)
        if case.how == "operator":
            cluster.helm(
                "uninstall", OPERATOR_RELEASE, "-n", namespace, "--wait", "--timeout", "60s", check=False
            )
        if operator is not None:
            operator.stop()
        ex.release_gpus(cluster, namespace)
        for step in prepared.undo:
            step()
