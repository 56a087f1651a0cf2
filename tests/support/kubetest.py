"""Helpers for tests against a Kubernetes cluster (the local stack, or any cluster a kubeconfig names):
the cluster handle, waits with diagnostics.

Every wait is bounded; on timeout it raises AssertionError with what a person debugging needs: the
object's conditions, recent events of the namespace, and pod statuses (container states, restarts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

REPO_ROOT = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 300

T = TypeVar("T")


# --- the cluster ---------------------------------------------------------------------------------------
@dataclass
class Cluster:
    """A running local cluster: its kubeconfig, an API client and kubectl/helm bound to it."""

    kubeconfig: Path
    api: client.ApiClient
    tools_bin: Path
    _dynamic: DynamicClient | None = field(default=None, repr=False)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        return self._dynamic

    def _tool(self, name: str, args: Sequence[str], check: bool, timeout: float, input: str | None):
        exe = self.tools_bin / name
        cmd = [str(exe), *map(str, args)]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`{name} {' '.join(map(str, args))}` exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
            )
        return proc

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self._tool("kubectl", args, check, timeout, input)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 180, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self._tool("helm", args, check, timeout, input)


def localkube(*args: str, env: dict[str, str] | None = None, timeout: float = UP_TIMEOUT_S):
    """Run the `higgs-localkube` CLI of this checkout (same interpreter as the tests)."""
    cmd = [sys.executable, "-m", "localkube.cli", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ), cwd=REPO_ROOT
    )


def ensure_cluster() -> Cluster:
    """Start the cluster, or reuse the one already up (`up` is idempotent and takes ~1 s then)."""
    try:
        proc = localkube("up")
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"`higgs-localkube up` did not finish within {UP_TIMEOUT_S} s; see `make cluster-status`"
        ) from None
    if proc.returncode != 0:
        raise AssertionError(
            "the local Kubernetes cluster could not start (`higgs-localkube up` exited "
            f"{proc.returncode}):\n{proc.stderr.strip()}\n{proc.stdout.strip()[-2000:]}"
        )
    env = localkube("env", timeout=30).stdout
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in env.splitlines() if line.startswith("export ")
    )
    kubeconfig = Path(exports["KUBECONFIG"])
    tools_bin = Path(exports["PATH"].strip('"').split(":", 1)[0])
    missing = [str(tools_bin / t) for t in ("kubectl", "helm") if not os.access(tools_bin / t, os.X_OK)]
    if missing:
        raise AssertionError(f"missing {', '.join(missing)}; run `make tools` (hack/install-tools.sh)")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    if str(tools_bin) not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = f"{tools_bin}:{os.environ.get('PATH', '')}"
    api = config.new_client_from_config(config_file=str(kubeconfig))
    return Cluster(kubeconfig=kubeconfig, api=api, tools_bin=tools_bin)


def tools_dir() -> Path:
    """The folder holding both kubectl and helm: the project's (`make tools`), else the one on PATH."""
    cache = Path(os.environ.get("HIGGS_CACHE", Path.home() / ".cache" / "higgs-k8s")) / "bin"
    candidates = [cache]
    if found := shutil.which("kubectl"):
        candidates.append(Path(found).resolve().parent)
        candidates.append(Path(found).parent)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("kubectl", "helm")):
            return folder
    raise AssertionError(
        f"no folder with both kubectl and helm (looked in {', '.join(map(str, candidates))}); "
        "run `make tools` (hack/install-tools.sh) or put them on PATH"
    )


def connect_cluster(kubeconfig: Path) -> Cluster:
    """A handle on the cluster a kubeconfig names (e2e mode): nothing is started, stopped or cleared.
    Processes the tests start (the operator) reach it through $KUBECONFIG, set here."""
    kubeconfig = kubeconfig.expanduser().resolve()
    if not kubeconfig.is_file():
        raise AssertionError(f"--kubeconfig {kubeconfig}: no such file")
    tools_bin = tools_dir()
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.VersionApi(api).get_code()
    except Exception as exc:  # any failure to reach it is reported the same way
        raise AssertionError(f"the cluster of {kubeconfig} does not answer: {exc}") from None
    os.environ["KUBECONFIG"] = str(kubeconfig)
    return Cluster(kubeconfig=kubeconfig, api=api, tools_bin=tools_bin)


# --- waiting -------------------------------------------------------------------------------------------
NAMESPACE_LABEL = "higgs.test/namespace"  # on every namespace a test creates
CLEAR_TIMEOUT_S = 180


def gpu_holders(core: client.CoreV1Api) -> list[str]:
    """namespace/pod of every pod that asks for a GPU."""
    held = []
    for pod in core.list_pod_for_all_namespaces().items:
        if any("nvidia.com/gpu" in ((c.resources and c.resources.limits) or {}) for c in pod.spec.containers):
            held.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
    return held


def clear_leftovers(cluster: Cluster) -> list[str]:
    """Give the test session the GPU nodes to itself, and say what was removed.

    The cluster's state outlives `make cluster-down`, so it may still hold the demo's workload
    (removed by the demo's own teardown, `hack/demo.py --stop`) or namespaces a killed session left
    behind. Anything else still asking for a GPU afterwards fails the session with its name."""
    removed: list[str] = []
    core = client.CoreV1Api(cluster.api)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "demo.py"), "--stop"],
        capture_output=True, text=True, timeout=CLEAR_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, f"could not remove the demo's workload:\n{proc.stdout}\n{proc.stderr}"
    removed += [f"the demo's workload: {line[4:]} (`make demo` brings it back)"
                for line in proc.stdout.splitlines() if line.startswith("==> ")]  # fmt: skip
    for ns in core.list_namespace(label_selector=f"{NAMESPACE_LABEL}=true").items:
        name = ns.metadata.name
        for pod in core.list_namespaced_pod(name).items:
            core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
        if ns.metadata.deletion_timestamp is None:  # else already going: the last session deleted it
            core.delete_namespace(name)
            removed.append(f"namespace {name}, left by an earlier test session")
    wait_for(
        lambda: not gpu_holders(core),
        CLEAR_TIMEOUT_S,
        lambda: (
            "pods the tests did not create still ask for GPUs the tests need: "
            f"{', '.join(gpu_holders(core))}; delete them (this is the project's own local cluster)"
        ),
        interval=1,
        what="free GPU nodes",
    )
    return removed


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    describe: str | Callable[[], str] = "",
    interval: float = 0.5,
    what: str | None = None,
) -> T:
    """Call predicate until it returns something truthy (returned); AssertionError after timeout.

    `describe` (text, or a function called only on failure) goes into the failure message; an
    ApiException raised by the predicate counts as "not yet" and its reason is shown on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ApiException as exc:
            last_error = f"last API error: {exc.status} {exc.reason}: {str(exc.body)[:300]}"
        if time.monotonic() >= deadline:
            label = what or getattr(predicate, "__name__", "condition")
            details = describe() if callable(describe) else describe
            parts = [f"timed out after {timeout:.0f} s waiting for {label}", last_error, details]
            raise AssertionError("\n".join(p for p in parts if p))
        time.sleep(interval)


def wait_for_pods_ready(
    api: client.ApiClient, namespace: str, selector: str, count: int, timeout: float = 60
) -> list[client.V1Pod]:
    """Wait until `count` pods matching the label selector are Ready; returns them.

    Fails at once (AssertionError) when a matching pod fails for good before that (crash loop, image the
    node agent cannot map, failed init container, lasting Unschedulable: localkube.podwatch), with the
    pods' events and each failing container's last error; on timeout with the same explanation."""
    from localkube import podwatch

    what = f"{count} Ready pod(s) with selector {selector!r} in namespace {namespace}"
    try:
        return podwatch.wait_for_pods_ready(
            client.CoreV1Api(api), namespace, selector, timeout, what, count=count, interval=0.5
        )
    except podwatch.PodsNotReady as exc:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {exc}") from None
    except podwatch.PodsFailed as exc:
        raise AssertionError(f"pods failed while waiting for {exc}") from None


def wait_for_condition(
    api: client.ApiClient,
    ref: str,
    cond_type: str,
    status: str = "True",
    *,
    namespace: str | None = None,
    timeout: float = 60,
    fail_on_pods: str | None = None,
) -> dict:
    """Wait until object `ref` ("kind/name", e.g. "deployment/web", "higgsdeployment/tts") has
    status.conditions[type=cond_type].status == status. Works for any kind the API serves (CRDs too).

    With `fail_on_pods` (a label selector in `namespace`), the wait fails at once when one of those pods
    fails for good (localkube.podwatch), e.g. the serving pods of a HiggsDeployment awaited Available."""
    from localkube import podwatch

    kind, name = _split_ref(ref)
    dyn = DynamicClient(api)
    resource = _resolve_kind(dyn, kind)
    core = client.CoreV1Api(api)

    def condition_met() -> dict | None:
        obj = resource.get(name=name, namespace=namespace).to_dict()
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == cond_type and str(cond.get("status")) == status:
                return obj
        if fail_on_pods and namespace:
            pods = [
                p
                for p in core.list_namespaced_pod(namespace, label_selector=fail_on_pods).items
                if p.metadata.deletion_timestamp is None
            ]
            failures = [f for p in pods if (f := podwatch.pod_failure(p))]
            if failures:
                raise AssertionError(
                    f"pods failed while waiting for {ref} condition {cond_type}={status}: "
                    + "; ".join(map(str, failures))
                    + f"\n{ref}: {object_conditions(dyn, resource, name, namespace)}\n"
                    + podwatch.explain(core, namespace, pods)
                )
        return None

    def describe() -> str:
        lines = [f"{ref}: {object_conditions(dyn, resource, name, namespace)}"]
        if namespace:
            lines.append(namespace_report(api, namespace))
        return "\n".join(lines)

    return wait_for(
        condition_met, timeout, describe=describe, what=f"{ref} condition {cond_type}={status}", interval=0.5
    )


# --- diagnostics ---------------------------------------------------------------------------------------
def routed_service_url(
    cluster: Cluster, namespace: str, name: str, backends: int, timeout: float = 30
) -> str:
    """``http://clusterIP:port`` of a Service, once it routes: `backends` rounds of consecutive
    ``GET /health`` answers through it (the proxy's endpoints follow the pods a moment later, as
    kube-proxy's do, so a Service can lag the pods it selects)."""
    import httpx

    svc = cluster.core.read_namespaced_service(name, namespace)
    url = f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}"
    answers: list[str] = []

    def routes() -> bool:
        answers.clear()
        for _ in range(2 * backends):  # round-robin: twice over every endpoint
            try:
                status = httpx.get(f"{url}/health", timeout=2).status_code
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)
                return False
            answers.append(str(status))
            if status != 200:
                return False
        return True

    wait_for(
        routes,
        timeout,
        lambda: f"last answers through {url}: {answers}\n{namespace_report(cluster.api, namespace)}",
        what=f"Service {namespace}/{name} to route to {backends} endpoint(s)",
    )
    return url


def _pod_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _split_ref(ref: str) -> tuple[str, str]:
    kind, sep, name = ref.partition("/")
    if not sep or not kind or not name:
        raise ValueError(f"object reference {ref!r} must look like kind/name, e.g. deployment/web")
    return kind, name


def _resolve_kind(dyn: DynamicClient, kind: str):
    """Find the API resource for a kind, plural, singular or short name (optionally .group)."""
    wanted, _, group = kind.lower().partition(".")
    for attempt in range(2):
        matches = []
        for res in dyn.resources.search():
            if not getattr(res, "kind", None) or "/" in (getattr(res, "name", "") or ""):
                continue  # subresources (status, scale) carry a slash
            names = {
                res.kind.lower(),
                (res.name or "").lower(),
                (getattr(res, "singular_name", "") or "").lower(),
                *(s.lower() for s in (getattr(res, "short_names", None) or [])),
            }
            if wanted in names and (not group or (res.group or "").startswith(group)):
                matches.append(res)
        if matches:
            # Prefer the preferred version of the first group that serves it.
            matches.sort(key=lambda r: not getattr(r, "preferred", False))
            return matches[0]
        if attempt == 0:
            dyn.resources.invalidate_cache()  # a CRD may have been created after the discovery cache
    raise AssertionError(f"the API serves no resource kind {kind!r}")


def object_conditions(dyn: DynamicClient, resource: Any, name: str, namespace: str | None) -> str:
    try:
        obj = resource.get(name=name, namespace=namespace).to_dict()
    except ApiException as exc:
        return f"cannot read it ({exc.status} {exc.reason})"
    status = obj.get("status") or {}
    conds = status.get("conditions") or []
    if not conds:
        return f"no conditions; status={status}"
    return "; ".join(
        f"{c.get('type')}={c.get('status')} ({c.get('reason', '')}: {c.get('message', '')})" for c in conds
    )


def _container_state(cs: client.V1ContainerStatus) -> str:
    state = cs.state
    if state is None:
        return "unknown"
    if state.running:
        desc = f"running since {state.running.started_at}"
    elif state.waiting:
        desc = f"waiting ({state.waiting.reason}: {state.waiting.message or ''})"
    elif state.terminated:
        t = state.terminated
        desc = f"terminated (exit {t.exit_code}, {t.reason}: {t.message or ''})"
    else:
        desc = "unknown"
    last = cs.last_state.terminated if cs.last_state else None
    if last is not None:
        desc += f"; last exit {last.exit_code} ({last.reason})"
    return f"{cs.name}: {desc}, ready={cs.ready}, restarts={cs.restart_count}"


def pod_report(pod: client.V1Pod) -> str:
    st = pod.status
    conds = ", ".join(
        f"{c.type}={c.status}" + (f"({c.reason})" if c.reason else "") for c in st.conditions or []
    )
    lines = [
        f"  pod {pod.metadata.name}: phase={st.phase} node={pod.spec.node_name} ip={st.pod_ip} [{conds}]"
        + (f" reason={st.reason}: {st.message}" if st.reason else "")
    ]
    for cs in (st.init_container_statuses or []) + (st.container_statuses or []):
        lines.append(f"    {_container_state(cs)}")
    from localkube import podwatch

    failure = podwatch.pod_failure(pod)
    if failure is not None:
        lines.append(f"    FAILED: {failure.reason}: {failure.message}")
    return "\n".join(lines)


def namespace_report(
    api: client.ApiClient, namespace: str, selector: str | None = None, events: int = 15
) -> str:
    """Pods (optionally by selector) and the most recent events of a namespace, as text."""
    core = client.CoreV1Api(api)
    out = []
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=selector or "").items
        out.append(f"pods in {namespace}" + (f" ({selector})" if selector else "") + f": {len(pods)}")
        out.extend(pod_report(p) for p in pods)
        from localkube import podwatch

        failing = [p for p in pods if podwatch.pod_failure(p)]
        if failing:  # their events and last errors (termination message or log tail)
            out.append("failing pods, their events and last errors:")
            out.append(podwatch.explain(core, namespace, failing))
    except ApiException as exc:
        out.append(f"cannot list pods: {exc.status} {exc.reason}")
    try:
        items = core.list_namespaced_event(namespace).items
        items.sort(key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
        out.append(f"recent events in {namespace}:")
        for ev in items[-events:]:
            obj = f"{ev.involved_object.kind}/{ev.involved_object.name}"
            out.append(f"  {ev.type} {ev.reason} {obj}: {ev.message} (x{ev.count or 1})")
    except ApiException as exc:
        out.append(f"cannot list events: {exc.status} {exc.reason}")
    return "\n".join(out)
