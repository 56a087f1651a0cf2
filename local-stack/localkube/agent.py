"""The fake GPU node agent: our own tiny kubelet (plus provisioner and service proxy) for the local stack.

``higgs-localkube agent --kubeconfig PATH --state-dir DIR --nodes N --gpus-per-node G --images FILE``
registers N nodes ``gpu-node-0..N-1`` that advertise ``nvidia.com/gpu: G``, keeps them Ready,
and runs every pod the scheduler binds to them as local processes on loopback pod IPs
(see :mod:`localkube.kubelet`). It also provisions hostPath volumes for the default StorageClass
(:mod:`localkube.provisioner`) and proxies loopback ClusterIPs (:mod:`localkube.proxy`).
It tolerates an API server restart: watches reconnect with backoff. SIGTERM stops every pod
process (SIGTERM, then SIGKILL after a short grace) and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from .container_procs import kill_orphans
from .images import ImageMapFile, ImagesFileError
from .json_client import ApiError, KubeClient
from .kubelet import AgentContext, EventRecorder, PodWorker
from .kubelet_server import KubeletServer, ensure_serving_cert
from .nodes import NodeManager, NodeSpec
from .pods import IpAllocator, IpPoolExhausted
from .provisioner import Provisioner
from .proxy import ServiceProxy
from .settings import ROOT_ENV, ConfigError, cache_dir, pod_ip_octet, project_root

log = logging.getLogger("localkube.agent")


class Informer(threading.Thread):
    """List + watch one resource into a cache; reconnects with backoff (API server restarts)."""

    def __init__(
        self,
        api: KubeClient,
        path: str,
        on_event: Callable[[str, dict], None],
        on_relist: Callable[[dict[str, dict]], None] | None = None,
        name: str = "informer",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.api = api
        self.path = path
        self.on_event = on_event
        self.on_relist = on_relist
        self.cache: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.synced = threading.Event()

    @staticmethod
    def key(obj: dict) -> str:
        meta = obj["metadata"]
        return f"{meta.get('namespace', '')}/{meta['name']}"

    def items(self) -> list[dict]:
        with self.lock:
            return list(self.cache.values())

    def run(self) -> None:
        delay = 0.5
        while not self.stopped.is_set():
            try:
                listing = self.api.list(self.path)
                with self.lock:
                    self.cache = {self.key(o): o for o in listing.get("items", [])}
                    snapshot = dict(self.cache)
                if self.on_relist:
                    self.on_relist(snapshot)
                for obj in snapshot.values():
                    self.on_event("ADDED", obj)
                self.synced.set()
                rv = listing["metadata"]["resourceVersion"]
                delay = 0.5
                while not self.stopped.is_set():
                    for event in self.api.watch(self.path, rv, timeout_seconds=240):
                        etype, obj = event.get("type"), event.get("object") or {}
                        if etype == "ERROR":
                            raise ApiError(
                                int(obj.get("code", 500)), obj.get("message", ""), obj.get("reason", "")
                            )
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if etype == "BOOKMARK":
                            continue
                        with self.lock:
                            if etype == "DELETED":
                                self.cache.pop(self.key(obj), None)
                            else:
                                self.cache[self.key(obj)] = obj
                        self.on_event(etype, obj)
                        if self.stopped.is_set():
                            return
            except ApiError as exc:
                if exc.status != 410:
                    log.warning("watch %s: %s; relisting in %.1fs", self.path, exc, delay)
                    self.stopped.wait(delay)
                    delay = min(delay * 2, 10.0)
            except Exception:
                log.exception("watch %s crashed; relisting in %.1fs", self.path, delay)
                self.stopped.wait(delay)
                delay = min(delay * 2, 10.0)


class Agent:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.state_dir = Path(opts.state_dir).absolute()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "pods").mkdir(exist_ok=True)
        self.api = KubeClient(opts.kubeconfig)
        self.images = ImageMapFile(opts.images)
        octet = pod_ip_octet()
        self.nodes = [
            NodeSpec(
                f"{opts.node_prefix}{i}",
                i,
                opts.gpus_per_node,
                IpAllocator(i, octet).host_ip,
                cpu=opts.cpu,
                memory=opts.memory,
                kubelet_port=opts.kubelet_port,
            )
            for i in range(opts.nodes)
        ]
        self.allocators = {n.name: IpAllocator(n.index, octet) for n in self.nodes}
        self.node_by_name = {n.name: n for n in self.nodes}
        self.workers: dict[str, PodWorker] = {}
        self.workers_lock = threading.Lock()
        self.stopping = threading.Event()
        self.kubelet_api: KubeletServer | None = None
        venv_bin = opts.venv_bin or str(Path(sys.executable).parent)
        self.ctx = AgentContext(
            api=self.api,
            state_dir=self.state_dir,
            images=self.images,
            venv_bin=venv_bin,
            repo_root=str(opts.repo_root),
            cache_dir=str(cache_dir()),
            node_allocatable=self.nodes[0].resources if self.nodes else {},
            services_in=self.services_in,
            events=EventRecorder(self.api),
            backoff_initial=opts.backoff_initial,
            backoff_max=opts.backoff_max,
        )
        self.node_manager = NodeManager(self.api, self.nodes)
        self.provisioner = Provisioner(self.api, self.state_dir / "pv")
        self.proxy = ServiceProxy()
        self.services = Informer(self.api, "/api/v1/services", self._on_service, name="services")
        self.pods = Informer(self.api, "/api/v1/pods", self._on_pod, self._on_pod_relist, name="pods")
        self._proxy_dirty = threading.Event()
        # The `kubernetes` Service has no Endpoints here (loopback): its ClusterIP forwards to the API server.
        server = urlsplit(self.api.server)
        apiserver = (server.hostname or "127.0.0.1", server.port or 443)
        self.fixed_backends = {("default", "kubernetes"): [apiserver]}

    def services_in(self, namespace: str) -> list[dict]:
        return [s for s in self.services.items() if s["metadata"].get("namespace") == namespace]

    # --- pods -----------------------------------------------------------------------------------
    def _on_pod(self, etype: str, pod: dict) -> None:
        self._proxy_dirty.set()
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.node_by_name:
            return
        uid = pod["metadata"]["uid"]
        with self.workers_lock:
            worker = self.workers.get(uid)
            if etype == "DELETED":
                if worker is not None:
                    worker.removed.set()
                    worker.wake.set()
                return
            if worker is not None:
                worker.update(pod)
                return
            if self.stopping.is_set():
                return
            # On IpPoolExhausted (logged) the pod stays Pending until an IP frees up and it is updated again.
            with contextlib.suppress(IpPoolExhausted):
                self.workers[uid] = self._new_worker(pod, node)

    def _new_worker(self, pod: dict, node: str) -> PodWorker:
        allocator = self.allocators[node]
        old_ip = (pod.get("status") or {}).get("podIP", "")
        ip = old_ip if old_ip and allocator.claim(old_ip) else ""
        if not ip:
            try:
                ip = allocator.allocate()
            except IpPoolExhausted as exc:
                log.error("pod %s: %s", pod["metadata"]["name"], exc)
                raise
        worker = PodWorker(self.ctx, pod, node, ip, allocator.host_ip, self._worker_done)
        log.info(
            "pod %s/%s on %s gets IP %s", pod["metadata"].get("namespace"), pod["metadata"]["name"], node, ip
        )
        worker.start()
        return worker

    def _worker_done(self, worker: PodWorker) -> None:
        with self.workers_lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
        self.ctx.events.forget(worker.uid)
        if not self.stopping.is_set():
            self.allocators[worker.node].release(worker.pod_ip)
        self._proxy_dirty.set()

    def _on_pod_relist(self, snapshot: dict[str, dict]) -> None:
        """After a relist, pods that vanished while the watch was down are gone for good."""
        live = {p["metadata"]["uid"] for p in snapshot.values()}
        with self.workers_lock:
            for uid, worker in self.workers.items():
                if uid not in live:
                    worker.removed.set()
                    worker.wake.set()

    def locate_log(self, namespace: str, pod: str, container: str, previous: bool):
        """The log file of a container (for the kubelet API) and whether it is still running."""
        with self.workers_lock:
            worker = next(
                (
                    w
                    for w in self.workers.values()
                    if w.pod["metadata"]["name"] == pod and w.pod["metadata"].get("namespace") == namespace
                ),
                None,
            )
        name = f"{container}.previous.log" if previous else f"{container}.log"
        if worker is not None:
            c = next((c for c in worker.inits + worker.mains if c.name == container), None)
            path = worker.dir / name
            if c is None or not path.exists():
                return None
            return path, lambda: c.proc is not None and not worker.removed.is_set()
        matches = sorted((self.state_dir / "pods").glob(f"{namespace}_{pod}_*/{name}"))
        return (matches[-1], lambda: False) if matches else None

    def start_kubelet_api(self) -> None:
        ips = [n.host_ip for n in self.nodes]
        try:
            cert, key = ensure_serving_cert(self.state_dir / "kubelet-pki", ips)
            self.kubelet_api = KubeletServer(
                ips, self.opts.kubelet_port, cert, key, self.api.ca_file, self.locate_log
            )
            self.kubelet_api.start()
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("kubelet API not served (kubectl logs will not work): %s", exc)

    def _on_service(self, etype: str, svc: dict) -> None:
        self._proxy_dirty.set()

    def proxy_loop(self) -> None:
        while not self.stopping.is_set():
            if self._proxy_dirty.wait(1.0):
                self._proxy_dirty.clear()
                try:
                    self.proxy.sync(self.services.items(), self.pods.items(), self.fixed_backends)
                except Exception:
                    log.exception("service proxy sync failed")
                time.sleep(0.2)  # coalesce bursts of pod status updates

    # --- lifecycle ------------------------------------------------------------------------------
    def prune_pod_dirs(self, max_age_s: float = 24 * 3600) -> None:
        """Drop what is left (logs) of pods gone for a day, so the state directory does not grow forever."""
        cutoff = time.time() - max_age_s
        for pod_dir in (self.state_dir / "pods").iterdir():
            with contextlib.suppress(OSError):
                if pod_dir.is_dir() and pod_dir.stat().st_mtime < cutoff and not any(pod_dir.glob("*.pid")):
                    shutil.rmtree(pod_dir, ignore_errors=True)

    def run(self) -> int:
        killed = kill_orphans(self.state_dir / "pods")
        self.prune_pod_dirs()
        if killed:
            log.info("stopped %d process(es) left by a previous agent: %s", len(killed), killed)
        log.info(
            "agent starting: %d node(s) x %d GPU(s), state in %s, images from %s",
            len(self.nodes),
            self.opts.gpus_per_node,
            self.state_dir,
            self.images.path,
        )
        self.start_kubelet_api()
        self.node_manager.start()
        self.provisioner.start()
        self.proxy.start()
        self.services.start()
        self.services.synced.wait(10)
        self.pods.start()
        threading.Thread(target=self.proxy_loop, name="proxy-sync", daemon=True).start()
        while not self.stopping.wait(1.0):
            pass
        return self.shutdown()

    def shutdown(self) -> int:
        log.info("stopping: ending every pod process")
        for component in (self.pods, self.services):
            component.stopped.set()
        self.node_manager.stop()
        self.provisioner.stop()
        with self.workers_lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.shutdown.set()
            worker.wake.set()
        deadline = time.monotonic() + self.opts.shutdown_grace + 5
        for worker in workers:
            worker.join(max(0.1, deadline - time.monotonic()))
        self.proxy.stop()
        log.info("stopped")
        return 0


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="higgs-localkube agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--nodes", type=positive_int, default=2)
    parser.add_argument("--gpus-per-node", type=positive_int, default=1)
    parser.add_argument(
        "--repo-root",
        default="",
        help=f"the project root: the {{repo}} placeholder (default ${ROOT_ENV}, else this package's checkout)",
    )
    parser.add_argument(
        "--images", default="", help="the images file (default <repo-root>/hack/localkube-images.yaml)"
    )
    parser.add_argument("--node-prefix", default="gpu-node-")
    parser.add_argument("--cpu", default="16", help="CPU capacity per node")
    parser.add_argument("--kubelet-port", type=int, default=10250, help="kubelet API (container logs) port")
    parser.add_argument("--memory", default="64Gi", help="memory capacity per node")
    parser.add_argument(
        "--venv-bin", default="", help="the {venv} placeholder (default: this Python's bin dir)"
    )
    parser.add_argument("--backoff-initial", type=float, default=1.0, help="first restart back-off (s)")
    parser.add_argument("--backoff-max", type=float, default=10.0, help="restart back-off cap (s)")
    parser.add_argument(
        "--shutdown-grace", type=float, default=2.0, help="SIGTERM -> SIGKILL grace at exit (s)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    opts = parser.parse_args(argv)
    if opts.nodes > 253:
        parser.error("--nodes: at most 253 nodes (one loopback /24 each)")
    try:
        opts.repo_root = project_root({ROOT_ENV: opts.repo_root} if opts.repo_root else None)
    except ConfigError as exc:
        parser.error(f"--repo-root: {exc}")
    if not opts.images:
        opts.images = str(opts.repo_root / "hack" / "localkube-images.yaml")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if opts.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not Path(opts.kubeconfig).is_file():
        print(f"agent: --kubeconfig {opts.kubeconfig}: no such file", file=sys.stderr)
        return 2
    try:
        agent = Agent(opts)
    except ImagesFileError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ConfigError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: object) -> None:
        agent.stopping.set()

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <agent>`: thread stacks to the log
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return agent.run()


if __name__ == "__main__":
    raise SystemExit(main())
