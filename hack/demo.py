"""`make demo`: the whole system on the local stack, end to end.

Local cluster -> fake Hugging Face hub -> charts/higgs-operator (CRD, RBAC, two peered operator pods,
which the node agent runs as local processes with their ServiceAccount's token) ->
examples/higgsdeployment-local.yaml -> wait for Available -> a 60 s step-shaped Locust load through
the Service's ClusterIP, during which the operator scales up -> report, plots, what to do next.
Every wait is bounded and a failure names the step and shows what the cluster says.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from localkube import podwatch

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
STATE = REPO / ".cache" / "demo"
REPORT_DIR = REPO / "reports" / "demo"
KUBECONFIG = REPO / ".cache" / "cluster" / "kubeconfig"
TOOLS_BIN = Path(os.environ.get("HIGGS_CACHE", Path.home() / ".cache/higgs-k8s")) / "bin"
GROUP, VERSION, PLURAL = "audio.higgs.dev", "v1alpha1", "higgsdeployments"
NAMESPACE = "higgs-demo"
OPERATOR_NS = "higgs-system"
HUB_LISTEN = "127.0.0.1:18089"
HUB_TOKEN = "hf_local_fake_token"  # a fake token for the fake hub; never a real one
RESOURCE = REPO / "examples" / "higgsdeployment-local.yaml"


class DemoError(Exception):
    """A failed step: printed as one clear message, no traceback."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"ERROR [{step}]: {message}")


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def run(step: str, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise DemoError(step, f"`{' '.join(argv)}` exited {proc.returncode}:\n{proc.stderr or proc.stdout}")
    return proc


def start_daemon(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a background process with its log under .cache/demo; replaces the one a previous demo left."""
    STATE.mkdir(parents=True, exist_ok=True)
    stop_daemon(name)
    log = open(STATE / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
    )
    (STATE / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def stop_daemon(name: str) -> None:
    pid_file = STATE / f"{name}.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if str(REPO).encode() in cmdline or b"higgs" in cmdline:  # never kill a recycled pid
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
    except (ValueError, OSError):
        pass
    pid_file.unlink(missing_ok=True)


def wait_until(step: str, check, timeout: float, explain) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise DemoError(step, f"not done after {timeout:.0f} s.\n{explain()}")


def remove_workload() -> None:
    """Take what the demo put into the cluster back out (its namespace, then the operator release), so
    the GPU nodes are free again. The cluster's state outlives `make cluster-down`, so this is the way
    to remove it. Does nothing when the cluster is not running."""
    if not KUBECONFIG.exists():
        return
    api = config.new_client_from_config(config_file=str(KUBECONFIG))
    core = client.CoreV1Api(api)
    try:
        core.read_namespace(NAMESPACE, _request_timeout=5)
        say(f"deleting namespace {NAMESPACE} (the demo's HiggsDeployment and its pods)")
        for pod in core.list_namespaced_pod(NAMESPACE).items:
            core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
        core.delete_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # connection refused, timeout: not running
        print(f"the local cluster is not running ({type(exc).__name__}); nothing to remove", flush=True)
        return

    def namespace_gone() -> bool:
        try:
            core.read_namespace(NAMESPACE)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_until("remove", namespace_gone, 120, lambda: f"namespace {NAMESPACE} is still terminating")
    # Helm keeps a release's record in Secrets labelled owner=helm: no record, nothing to uninstall.
    if not core.list_namespaced_secret(OPERATOR_NS, label_selector="owner=helm,name=higgs-operator").items:
        return
    helm = shutil.which("helm") or str(TOOLS_BIN / "helm")
    if not Path(helm).exists():
        raise DemoError("remove", f"helm is not on PATH nor in {TOOLS_BIN}; run `make tools`")
    say(f"helm uninstall higgs-operator -n {OPERATOR_NS}")
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    run("remove", [helm, "uninstall", "higgs-operator", "-n", OPERATOR_NS, "--wait"], env=env)


def cluster_up() -> None:
    # Room for the resource's maxReplicas (3) plus a rolling update's surge pod: 2 nodes x 2 GPUs.
    os.environ.setdefault("HIGGS_GPUS_PER_NODE", "2")
    say(
        f"local Kubernetes control plane and fake GPU nodes, {os.environ['HIGGS_GPUS_PER_NODE']} GPUs each (higgs-localkube up)"
    )
    subprocess.run([str(VENV_BIN / "higgs-localkube"), "up"], check=False)
    if subprocess.run([str(VENV_BIN / "higgs-localkube"), "status"], capture_output=True).returncode != 0:
        raise DemoError("cluster", "the local cluster is not healthy; see `make cluster-status`")
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    config.load_kube_config(str(KUBECONFIG))


def start_hub() -> None:
    say(f"fake Hugging Face hub on {HUB_LISTEN} (the real download code runs against it)")
    start_daemon(
        "hub",
        [str(VENV_BIN / "python"), "-m", "higgs_sim.hub", "--listen", HUB_LISTEN, "--token", HUB_TOKEN],
    )
    import httpx

    def answers() -> bool:
        try:
            return httpx.get(f"http://{HUB_LISTEN}/api/models", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until("hub", answers, 20, lambda: (STATE / "hub.log").read_text()[-2000:])


OPERATOR_SELECTOR = "app.kubernetes.io/name=higgs-operator"


def find_helm() -> str:
    helm = shutil.which("helm") or str(TOOLS_BIN / "helm")
    if not os.access(helm, os.X_OK):
        raise DemoError("operator", f"helm is not on PATH nor in {TOOLS_BIN}; run `make tools`")
    return helm


def install_operator(
    repo: Path = REPO,
    kubeconfig: Path = KUBECONFIG,
    set_values: tuple[str, ...] = (),
    timeout: float = 180,
) -> list[client.V1Pod]:
    """helm upgrade --install charts/higgs-operator of `repo` into the cluster of `kubeconfig`, then wait
    for its pods to be Ready: returns them; a pod that fails for good (an image the node agent cannot
    map, a crash loop, ...) fails the step at once with the pod's events and last error.

    No host path goes into the values: on the local stack the operator image's helm comes from the
    images file (hack/localkube-images.yaml), so nothing here can collide with the pod's volume mounts."""
    say("helm install higgs-operator: CRD, least-privilege RBAC, two peered operator pods")
    sets = [arg for value in set_values for arg in ("--set", value)]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    run(
        "operator",
        [
            find_helm(), "upgrade", "--install", "higgs-operator", str(repo / "charts" / "higgs-operator"),
            "-n", OPERATOR_NS, "--create-namespace", "-f", str(repo / "examples" / "operator-values-local.yaml"),
            *sets,
        ],
        env=env,
    )  # fmt: skip
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    replicas, selector = current_operator_pods(core)
    try:
        return podwatch.wait_for_pods_ready(
            core, OPERATOR_NS, selector, timeout, "the operator's pods", count=replicas
        )
    except podwatch.PodsFailed as exc:
        raise DemoError("operator", str(exc)) from None


REVISION = "deployment.kubernetes.io/revision"


def current_operator_pods(core: client.CoreV1Api, timeout: float = 20) -> tuple[int, str]:
    """The operator Deployment's replicas and a selector for the pods of its current revision (an upgrade's
    old pods stay Ready while the new ones roll out: they must not count)."""
    apps = client.AppsV1Api(core.api_client)
    deadline = time.monotonic() + timeout
    while True:
        deps = apps.list_namespaced_deployment(OPERATOR_NS, label_selector=OPERATOR_SELECTOR).items
        if len(deps) == 1 and (deps[0].status.observed_generation or 0) >= deps[0].metadata.generation:
            dep = deps[0]
            revision = (dep.metadata.annotations or {}).get(REVISION)
            for rs in apps.list_namespaced_replica_set(OPERATOR_NS, label_selector=OPERATOR_SELECTOR).items:
                owned = any(o.uid == dep.metadata.uid for o in rs.metadata.owner_references or [])
                if owned and revision and (rs.metadata.annotations or {}).get(REVISION) == revision:
                    pod_hash = rs.metadata.labels.get("pod-template-hash", "")
                    return dep.spec.replicas or 1, f"{OPERATOR_SELECTOR},pod-template-hash={pod_hash}"
        if time.monotonic() > deadline:
            raise DemoError(
                "operator",
                f"the operator's Deployment in {OPERATOR_NS} has no current ReplicaSet after {timeout:.0f} s",
            )
        time.sleep(0.5)


def apply_resource() -> str:
    say(f"kubectl apply -f {RESOURCE.relative_to(REPO)} -n {NAMESPACE}")
    core = client.CoreV1Api()
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="hf-token"), string_data={"hf_access_token": HUB_TOKEN}
    )
    try:
        core.create_namespaced_secret(NAMESPACE, secret)
    except ApiException as exc:
        if exc.status != 409:
            raise
    run("apply", ["kubectl", "apply", "-n", NAMESPACE, "-f", str(RESOURCE)])
    return yaml.safe_load(RESOURCE.read_text())["metadata"]["name"]


def read_hd(name: str) -> dict:
    return client.CustomObjectsApi().get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)


def summarize(hd: dict) -> str:
    st = hd.get("status") or {}
    conds = {c["type"]: c["status"] for c in st.get("conditions", [])}
    flags = " ".join(f"{k}={v}" for k, v in sorted(conds.items()))
    return (
        f"phase={st.get('phase', '-')} ready={st.get('readyReplicas', 0)}/{st.get('replicas', 0)} "
        f"desired={st.get('desiredReplicas', '-')} {flags}"
    )


def explain(name: str) -> str:
    out = subprocess.run(
        ["kubectl", "get", "hd,deploy,pods,events", "-n", NAMESPACE], capture_output=True, text=True
    )
    log = subprocess.run(
        ["kubectl", "logs", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=higgs-operator", "--tail", "40"],
        capture_output=True,
        text=True,
    )
    return f"{out.stdout}{out.stderr}\n--- operator log (tail) ---\n{log.stdout}{log.stderr}"


def serving_pods_failed(name: str) -> None:
    """Fail the wait at once when a serving pod failed for good, with its events and last error."""
    core = client.CoreV1Api()
    pods = [
        p
        for p in core.list_namespaced_pod(
            NAMESPACE, label_selector=f"app.kubernetes.io/instance={name}"
        ).items
        if p.metadata.deletion_timestamp is None
    ]
    failures = [f for p in pods if (f := podwatch.pod_failure(p))]
    if failures:
        head = "; ".join(str(f) for f in failures)
        raise DemoError(
            "available",
            f"HiggsDeployment/{name}: {head}\n{podwatch.explain(core, NAMESPACE, pods)}\n{explain(name)}",
        )


def wait_available(name: str) -> dict:
    say(f"waiting for HiggsDeployment/{name} to be Available")
    last = ""
    start = time.monotonic()

    def available() -> dict | None:
        nonlocal last
        hd = read_hd(name)
        line = summarize(hd)
        if line != last:
            print(f"    {time.monotonic() - start:5.1f}s  {line}", flush=True)
            last = line
        conds = {c["type"]: c for c in (hd.get("status") or {}).get("conditions", [])}
        if conds.get("Available", {}).get("status") == "True":
            return hd
        serving_pods_failed(name)
        return None

    return wait_until("available", available, 300, lambda: explain(name))  # type: ignore[return-value]


def service_url(name: str) -> str:
    svcs = client.CoreV1Api().list_namespaced_service(
        NAMESPACE, label_selector=f"app.kubernetes.io/instance={name}"
    )
    for svc in svcs.items:
        ip = svc.spec.cluster_ip
        port = next((p.port for p in svc.spec.ports if p.name == "http"), None)
        if ip and ip != "None" and port:
            return f"http://{ip}:{port}"
    raise DemoError("service", f"no Service with an http port for {name} in {NAMESPACE}")


# (time, ready replicas) as the watcher saw them during the load test: a level served while the operator
# scaled is not a per-replica capacity (print_report says so).
REPLICAS_SEEN: list[tuple[float, int]] = []


def watch_scaling(name: str, stop: threading.Event) -> None:
    last = ""
    while not stop.wait(2):
        try:
            st = read_hd(name).get("status") or {}
        except ApiException:
            continue
        REPLICAS_SEEN.append((time.time(), int(st.get("readyReplicas") or 0)))
        scaling = st.get("lastScaling") or {}
        metrics = st.get("metrics") or {}
        line = (
            f"replicas ready={st.get('readyReplicas', 0)}/{st.get('replicas', 0)} "
            f"desired={st.get('desiredReplicas', '-')} waiting={metrics.get('waiting', '-')} "
            f"running={metrics.get('running', '-')} last-scaling={scaling.get('reason', '-')}"
        )
        if line != last:
            print(f"    [operator] {line}", flush=True)
            last = line


# The capacity sentence is in concurrent streams under a TTFA SLO, so the demo sends streamed kinds
# only: a non-streamed chat's TTFA is its whole generation, and one drawn into a 15 s step would
# decide that step's goodput by the luck of the draw.
STREAMED_MIX = "stream=4,speech_pcm=1,speech_wav=1,clone=1"


def load_test(name: str, url: str, seconds: int) -> int:
    levels = "1,2,4,8"
    # Short prompts (3.2 s of audio at most): a level held 15 s (3 times that, the least that describes
    # it: a warm-up of one request, then two measured; higgs_load.metrics.min_step_hold_s).
    hold = max(seconds / len(levels.split(",")), 10.0)
    say(f"Locust: step load {levels} users, {hold:.0f} s each, mix {STREAMED_MIX}, against the Service {url}")
    if REPORT_DIR.exists():
        shutil.rmtree(REPORT_DIR)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_scaling, args=(name, stop), daemon=True)
    watcher.start()
    argv = [
        str(VENV_BIN / "locust"), "-f", str(REPO / "loadtests" / "locustfile.py"), "--host", url,
        "--headless", "--shape", "step", "--levels", levels, "--step-hold", str(hold),
        "--report-dir", str(REPORT_DIR), "--only-summary", "--loglevel", "WARNING",
        "--slo-ttfa-ms", "1500", "--slo-rtf", "1.0", "--mix", STREAMED_MIX, "--prompt-lengths", "short",
    ]  # fmt: skip
    try:
        proc = subprocess.run(argv, timeout=seconds + 90, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DemoError("load-test", f"Locust did not stop within {seconds + 90} s") from exc
    finally:
        stop.set()
        watcher.join(timeout=5)
    return proc.returncode


def replica_note(summary: dict, seen: list[tuple[float, int]]) -> str:
    """A warning when the ready replica count changed during the capacity level: its figure was then
    served by more than one replica count, and is no per-replica capacity."""
    cap = summary.get("capacity")
    row = next((r for r in summary.get("steps", []) if cap and r["users"] == cap["users"]), None)
    if row is None:
        return ""
    during = [n for t, n in seen if row["t_begin"] <= t <= row["t_end"]]
    before = [n for t, n in seen if t < row["t_begin"]][-1:]
    path = [n for i, n in enumerate(before + during) if i == 0 or n != (before + during)[i - 1]]
    if len(path) < 2:
        return ""
    return (
        f"Note: the ready replica count changed during the {row['users']}-user level "
        f"({' -> '.join(str(n) for n in path)}): the operator scaled while it was measured, "
        "so the capacity sentence above is not a per-replica capacity. Size a deployment with autoscaling "
        "off (a fixed replica count) and --replicas."
    )


def print_report(name: str, url: str) -> None:
    summary_md = REPORT_DIR / "summary.md"
    if not summary_md.exists():
        raise DemoError("report", f"Locust wrote no {summary_md}; see the output above")
    say("report")
    print(summary_md.read_text())
    note = replica_note(json.loads((REPORT_DIR / "summary.json").read_text()), REPLICAS_SEEN)
    if note:
        print(note + "\n")
    plots = sorted(p.relative_to(REPO) for p in REPORT_DIR.glob("*.png"))
    print("Plots: " + ", ".join(str(p) for p in plots))
    report = REPORT_DIR.relative_to(REPO)
    print(f"Summary: {report}/summary.json; raw per-request records: {report}/raw.jsonl")
    hd = read_hd(name)
    print(f"\nHiggsDeployment/{name}: {summarize(hd)}")
    print(
        f"""
Explore:
  export KUBECONFIG={KUBECONFIG}
  kubectl get hd -n {NAMESPACE}                      # Ready, Phase, Model, Endpoint
  kubectl describe hd {name} -n {NAMESPACE}          # conditions, scaling decisions, events
  curl -s {url}/v1/audio/voices                     # the voice presets speech may name
{speech_curl(url, first_voice(url))}
  .venv/bin/locust -f loadtests/locustfile.py --host {url}        # Locust web UI on http://127.0.0.1:8089
  kubectl logs -n {OPERATOR_NS} -l app.kubernetes.io/name=higgs-operator -f   # the operator's decisions

Tear down:
  .venv/bin/python hack/demo.py --stop   # removes the demo's workload, stops its fake hub
  make cluster-down          # stops the control plane, the node agent and every pod process
"""
    )


WAV_WRITER = (
    'python3 -c \'import sys, wave; w = wave.open("hello.wav", "wb"); w.setnchannels(1); '
    "w.setsampwidth(2); w.setframerate(24000); w.writeframes(sys.stdin.buffer.read()); w.close()'"
)


def first_voice(url: str) -> str:
    """`belinda` (a built-in preset) when the server lists it, else the first voice it lists."""
    import httpx

    try:
        voices = httpx.get(f"{url}/v1/audio/voices", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return "belinda"
    if not isinstance(voices, list) or not voices or "belinda" in voices:
        return "belinda"
    return str(voices[0])


def speech_curl(url: str, voice: str) -> str:
    """A shell command that writes hello.wav: speech asks for raw PCM (16-bit, 24 kHz, mono; the
    server's default) and a WAV header is put around it. A `wav` response would be one WAV file per
    chunk of audio, joined, which most players stop reading after the first second."""
    body = (
        '{"model":"higgs-audio-v2-generation-3B-base","input":"Hello from the demo.",'
        f'"voice":"{voice}","response_format":"pcm"}}'
    )
    return (
        f"  curl -s {url}/v1/audio/speech -H 'Content-Type: application/json' \\\n"
        f"    -d '{body}' \\\n"
        f"    | {WAV_WRITER}   # or: | sox -t raw -r 24000 -e signed -b 16 -c 1 -L - hello.wav"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="load-test length (default 60)")
    parser.add_argument(
        "--stop",
        action="store_true",
        help="remove the demo's workload from the cluster and stop its fake hub",
    )
    args = parser.parse_args(argv)
    if args.stop:
        try:
            remove_workload()
        except (DemoError, ApiException) as exc:
            print(f"\n{exc}", file=sys.stderr)
            return 1
        finally:
            stop_daemon("hub")
        return 0
    os.environ["PATH"] = f"{VENV_BIN}:{TOOLS_BIN}:{os.environ['PATH']}"
    os.environ.setdefault("HIGGS_REPO_ROOT", str(REPO))  # the local stack's project root: this checkout
    started = time.monotonic()
    try:
        cluster_up()
        start_hub()
        install_operator()
        name = apply_resource()
        wait_available(name)
        url = service_url(name)
        rc = load_test(name, url, args.seconds)
        print_report(name, url)
    except DemoError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"\nERROR [kubernetes]: {exc.status} {exc.reason}: {exc.body}", file=sys.stderr)
        return 1
    print(
        f"Demo finished in {time.monotonic() - started:.0f} s" + (f" (Locust exit code {rc})" if rc else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
