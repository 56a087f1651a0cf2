"""The pod worker: one thread per pod bound to a fake node, running its containers as local processes.

Lifecycle, as the kubelet does it: set up the "sandbox" (a loopback pod IP and a directory with
the pod's volumes), run init containers one by one to completion, then start every container,
probe them, restart them per restartPolicy with exponential backoff, and report it all in the
pod's status. On deletion: preStop hooks, SIGTERM, the remaining grace period, SIGKILL, then the
final delete with gracePeriodSeconds=0.

Files per pod under ``<state-dir>/pods/<namespace>_<name>_<uid>/``: ``<container>.log`` (stdout and
stderr), ``<container>.pid`` (the running process), ``volumes/<volume>/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .container_procs import UID_ENV, StartError, exit_code, signal_group, start_process, stop_process
from .images import (
    ImageMapFile,
    ImageNotMapped,
    ImagesFileError,
    Placeholders,
    container_argv_parts,
    image_env,
    image_files,
)
from .json_client import ApiError, KubeClient, ns_path
from .pods import (
    Backoff,
    EnvConfigError,
    EnvSources,
    container_env,
    expand,
    pod_dir_name,
    rewrite_path,
    service_env,
    shell_safe_path,
)
from .probes import ContainerProber, ProbeContext, ProbeSpec, run_probe
from .volumes import VolumeBuilder, VolumeError, container_mounts

log = logging.getLogger("localkube.kubelet")

TICK = 0.25  # seconds between checks of the pod's processes (exit -> status within ~1 s)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AgentContext:
    """What every pod worker shares: the API, paths, images, node facts, services, events."""

    api: KubeClient
    state_dir: Path
    images: ImageMapFile
    venv_bin: str
    repo_root: str
    node_allocatable: dict[str, str]
    services_in: Callable[[str], list[dict]]  # namespace -> Services (for service links)
    events: EventRecorder
    backoff_initial: float = 1.0
    backoff_max: float = 10.0
    agent_path: str = field(default_factory=lambda: os.environ.get("PATH", "/usr/bin:/bin"))
    cache_dir: str = ""  # the {cache} placeholder


class EventRecorder:
    """core/v1 Events like the kubelet's; a repeated (object, reason, message) bumps count."""

    def __init__(self, api: KubeClient) -> None:
        self.api = api
        self._seen: dict[tuple, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def emit(self, pod: dict, node: str, kind: str, reason: str, message: str, container: str = "") -> None:
        meta = pod["metadata"]
        ns = meta.get("namespace", "default")
        key = (meta["uid"], container, reason, message)
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            seen = self._seen.get(key)
        try:
            if seen:
                name, count = seen
                self.api.patch(ns_path(ns, "events", name), {"count": count + 1, "lastTimestamp": ts})
                with self._lock:
                    self._seen[key] = (name, count + 1)
                return
            involved = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": ns,
                "uid": meta["uid"],
            }
            if container:
                involved["fieldPath"] = (
                    container if container.startswith("spec.") else f"spec.containers{{{container}}}"
                )
            name = f"{meta['name']}.{time.time_ns():x}"
            body = {
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": kind,
                "source": {"component": "kubelet", "host": node},
                "reportingComponent": "kubelet",
                "reportingInstance": node,
                "firstTimestamp": ts,
                "lastTimestamp": ts,
                "count": 1,
            }
            self.api.create(ns_path(ns, "events"), body)
            with self._lock:
                self._seen[key] = (name, 1)
        except ApiError as exc:
            log.debug("event %s for %s/%s not recorded: %s", reason, ns, meta["name"], exc)

    def forget(self, uid: str) -> None:
        with self._lock:
            for key in [k for k in self._seen if k[0] == uid]:
                del self._seen[key]


@dataclass
class Container:
    """Runtime state of one container of the pod."""

    spec: dict
    is_init: bool
    backoff: Backoff
    restart_count: int = 0
    ever_started: bool = False
    proc: subprocess.Popen | None = None
    start_mono: float = 0.0
    started_at: str = ""
    container_id: str = ""
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    terminated: dict | None = None
    last_terminated: dict | None = None
    next_start: float = 0.0
    done: bool = False  # will not run again
    prober: ContainerProber | None = None
    kill_deadline: float | None = None
    kill_reason: str = ""
    image_id: str = ""
    reported_waiting: str = ""

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return self.proc is not None

    @property
    def is_sidecar(self) -> bool:
        return self.is_init and self.spec.get("restartPolicy") == "Always"

    @property
    def started(self) -> bool:
        return self.running and (self.prober is None or self.prober.started)

    @property
    def ready(self) -> bool:
        return self.running and (self.prober is None or self.prober.ready)

    def state_dict(self) -> dict:
        if self.running:
            return {"running": {"startedAt": self.started_at}}
        if self.waiting is not None:
            reason, message = self.waiting
            return {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if self.terminated is not None:
            return {"terminated": self.terminated}
        return {"waiting": {"reason": "ContainerCreating"}}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state_dict(),
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES = 2048, 80  # the kubelet's limits for FallbackToLogsOnError


TERMINATION_MESSAGE_BYTES = 4096  # the kubelet reads at most this much of the termination message file
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def termination_message_path(spec: dict) -> str:
    """The container path of its termination message file (the pod spec's, defaulted as the API server does)."""
    return spec.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH


def termination_message(spec: dict, code: int, message_file: Path, log_path: Path) -> str:
    """A terminated container's message, as the kubelet builds it: what the process wrote to its
    termination message file (the first 4096 bytes); when that is empty and the container failed under
    ``terminationMessagePolicy: FallbackToLogsOnError``, the tail of its log."""
    try:
        with message_file.open("rb") as f:
            written = f.read(TERMINATION_MESSAGE_BYTES).decode("utf-8", "replace").strip()
    except OSError:
        written = ""
    return written or fallback_message(spec, code, log_path)


def fallback_message(spec: dict, code: int, log_path: Path) -> str:
    """The termination message of a failed container under ``terminationMessagePolicy:
    FallbackToLogsOnError`` whose message file is empty: the tail of its log (2048 bytes or 80 lines,
    whichever is smaller), as the kubelet does."""
    if code == 0 or spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
        return ""
    try:
        with log_path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - FALLBACK_LOG_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()[-FALLBACK_LOG_LINES:]
    return "\n".join(lines).strip()


def condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> dict:
    cond: dict[str, Any] = {"type": ctype, "status": "True" if ok else "False"}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def compute_phase(
    restart_policy: str, inits: list[Container], mains: list[Container], init_failed: bool
) -> str:
    """Pod phase from its containers, as the kubelet's getPhase."""
    if init_failed:
        return "Failed"
    if any(not c.done and not c.is_sidecar for c in inits) or any(
        c.is_sidecar and not c.ever_started for c in inits
    ):
        return "Pending"
    if all(c.done for c in mains):
        failed = any((c.terminated or {}).get("exitCode", 0) != 0 for c in mains)
        return "Failed" if failed else "Succeeded"
    if any(c.ever_started for c in mains):
        return "Running"
    return "Pending"


def build_conditions(
    phase: str, sandbox_ready: bool, inits: list[Container], mains: list[Container], previous: list[dict]
) -> list[dict]:
    """Our conditions merged with the others (PodScheduled, readiness gates); transition times kept."""
    pending_inits = [c.name for c in inits if not c.done and not (c.is_sidecar and c.started)]
    unready = [c.name for c in mains if not c.ready]
    initialized = not pending_inits
    if phase == "Succeeded":
        initialized, ready = True, False
        ready_reason, ready_msg = "PodCompleted", ""
    else:
        ready = not unready and phase == "Running"
        ready_reason = "" if ready else "ContainersNotReady"
        ready_msg = "" if ready else f"containers with unready status: [{' '.join(unready)}]"
    ours = [
        condition("PodReadyToStartContainers", sandbox_ready),
        condition(
            "Initialized",
            initialized,
            "" if initialized else "ContainersNotInitialized",
            "" if initialized else f"containers with incomplete status: [{' '.join(pending_inits)}]",
        ),
        condition("Ready", ready, ready_reason, ready_msg),
        condition("ContainersReady", ready, ready_reason, ready_msg),
    ]
    ts = now_rfc3339()
    old = {c["type"]: c for c in previous}
    owned = {c["type"] for c in ours}
    merged = [c for c in previous if c["type"] not in owned]
    for cond in ours:
        prev = old.get(cond["type"])
        same = prev is not None and prev.get("status") == cond["status"]
        cond["lastTransitionTime"] = prev.get("lastTransitionTime", ts) if same and prev else ts
        cond["lastProbeTime"] = None
        merged.append(cond)
    if not any(c["type"] == "PodScheduled" for c in merged):
        merged.insert(
            0, {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts, "lastProbeTime": None}
        )
    return merged


def terminated_state(c: Container, code: int, reason: str = "", message: str = "") -> dict:
    """The container status' ``terminated`` state of ``c``'s run that ended now with ``code``."""
    state = {
        "exitCode": code,
        "reason": reason or ("Completed" if code == 0 else "Error"),
        "startedAt": c.started_at,
        "finishedAt": now_rfc3339(),
        "containerID": c.container_id,
    }
    if message:
        state["message"] = message
    return state


class PodWorker(threading.Thread):
    def __init__(
        self,
        ctx: AgentContext,
        pod: dict,
        node: str,
        pod_ip: str,
        host_ip: str,
        on_exit: Callable[[PodWorker], None],
    ) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"{meta.get('namespace')}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.uid = meta["uid"]
        self.node = node
        self.pod_ip = pod_ip
        self.host_ip = host_ip
        self.on_exit = on_exit
        self.wake = threading.Event()
        self.removed = threading.Event()  # the pod object is gone: stop everything now
        self.shutdown = threading.Event()  # the agent stops
        self.dir = ctx.state_dir / "pods" / pod_dir_name(pod)
        self.sandbox_ready = False
        self.volume_paths: dict[str, str] = {}
        self.start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self.last_status: dict | None = None
        self.init_failed = False
        self._next_setup = 0.0
        self._status_retry_at = 0.0
        self.lock = threading.Lock()
        previous = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        previous.update({s["name"]: s for s in (pod.get("status") or {}).get("initContainerStatuses") or []})
        self.inits = [self._container(c, True, previous) for c in pod["spec"].get("initContainers") or []]
        self.mains = [self._container(c, False, previous) for c in pod["spec"].get("containers") or []]
        for c in self.mains:
            if not c.done:
                c.waiting = ("PodInitializing", "") if self.inits else ("ContainerCreating", "")
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self.sandbox_ready = True  # nothing to run: only its deletion is left to handle

    def _container(self, spec: dict, is_init: bool, previous: dict[str, dict]) -> Container:
        c = Container(
            spec, is_init, Backoff(self.ctx.backoff_initial, self.ctx.backoff_max, 2 * self.ctx.backoff_max)
        )
        prev = previous.get(spec["name"])
        if (self.pod.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
        ):  # finished before we saw it
            c.done, c.waiting, c.ever_started = True, None, True
            c.restart_count = int((prev or {}).get("restartCount", 0))
            c.terminated = ((prev or {}).get("state") or {}).get("terminated") or {
                "exitCode": 0,
                "reason": "Completed",
            }
            c.container_id = (prev or {}).get("containerID", "")
            return c
        if prev and prev.get("containerID"):  # the agent restarted: this pod ran before
            c.restart_count = int(prev.get("restartCount", 0))  # the next start counts as a restart
            c.ever_started = True
            c.container_id = prev["containerID"]
            state = prev.get("state") or {}
            c.last_terminated = (prev.get("lastState") or {}).get("terminated")
            if "terminated" in state:
                c.terminated = state["terminated"]
            elif "running" in state:  # its process ended with the previous agent
                c.terminated = {"exitCode": 137, "reason": "Error", "message": "the node agent restarted",
                                "startedAt": state["running"].get("startedAt"), "finishedAt": now_rfc3339(),
                                "containerID": c.container_id}  # fmt: skip
            if is_init and c.terminated is not None and c.terminated.get("exitCode") == 0:
                c.done, c.waiting = True, None
        return c

    # --- helpers --------------------------------------------------------------------------------
    @property
    def restart_policy(self) -> str:
        return self.pod["spec"].get("restartPolicy", "Always")

    def update(self, pod: dict) -> None:
        self.pod = pod
        self.wake.set()

    def event(self, kind: str, reason: str, message: str, container: str = "") -> None:
        if container and any(c.name == container for c in self.inits):
            container = f"spec.initContainers{{{container}}}"
        self.ctx.events.emit(self.pod, self.node, kind, reason, message, container)

    def _sources(self) -> EnvSources:
        ns = self.pod["metadata"].get("namespace", "default")
        return EnvSources(
            get_secret=lambda n: self.ctx.api.get(ns_path(ns, "secrets", n)),
            get_configmap=lambda n: self.ctx.api.get(ns_path(ns, "configmaps", n)),
            pod_ip=self.pod_ip,
            host_ip=self.host_ip,
            node_allocatable=self.ctx.node_allocatable,
        )

    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    # --- main loop ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not (self.removed.is_set() or self.shutdown.is_set()):
                if self.deleting():
                    self.terminate_and_delete()
                    return
                self.step()
                self.sync_status()
                self.wake.wait(TICK)
                self.wake.clear()
            grace = 0.5 if self.removed.is_set() else 2.0
            self.kill_all(grace)
        except Exception:
            log.exception("pod worker %s crashed; stopping its processes", self.name)
            self.kill_all(1.0)
        finally:
            self.on_exit(self)

    def setup_sandbox(self) -> bool:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.volume_paths = VolumeBuilder(self.ctx.api, self.pod, self.dir, self._sources()).build_all()
        except VolumeError as exc:
            log.info("pod %s: volumes not ready (retrying): %s", self.name, exc)
            self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
            for c in self.inits + self.mains:
                c.waiting = ("ContainerCreating", f"setting up volumes: {exc}")
            return False
        except ApiError as exc:
            log.warning("pod %s: volume setup: %s", self.name, exc)
            return False
        self.sandbox_ready = True
        return True

    def step(self) -> None:
        now = time.monotonic()
        if self.phase() in ("Succeeded", "Failed"):
            return
        if not self.sandbox_ready:
            if now < self._next_setup:
                return
            if not self.setup_sandbox():
                self._next_setup = now + 2.0  # retry: the claim may bind, the ConfigMap may appear
                return
        phase = self.phase()
        if phase in ("Succeeded", "Failed"):
            return
        for c in self.inits + self.mains:
            if c.running:
                self.check_running(c)
        pending_init = next((c for c in self.inits if not c.done and not c.is_sidecar), None)
        for c in self.inits:
            if c.is_sidecar and not c.running and not c.done:
                self.maybe_start(c)
                if not c.started:
                    return
            elif c is pending_init:
                if not c.running:
                    self.maybe_start(c)
                return
            if c.is_sidecar and not c.started:
                return
        for c in self.mains:
            if not c.running and not c.done:
                self.maybe_start(c)

    def phase(self) -> str:
        return compute_phase(self.restart_policy, self.inits, self.mains, self.init_failed)

    def check_running(self, c: Container) -> None:
        assert c.proc is not None
        if c.prober is not None and c.prober.failed and c.kill_deadline is None:
            message = f"{c.prober.failed}, will be restarted"
            self.event("Normal", "Killing", message, c.name)
            c.kill_reason = c.prober.failed
            signal_group(c.proc, signal.SIGTERM)
            c.kill_deadline = time.monotonic() + self.grace_seconds()
        if c.kill_deadline is not None and time.monotonic() > c.kill_deadline:
            signal_group(c.proc, signal.SIGKILL)
        rc = c.proc.poll()
        if rc is not None:
            self.on_exited(c, exit_code(rc))

    def grace_seconds(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def on_exited(self, c: Container, code: int) -> None:
        ran_for = time.monotonic() - c.start_mono
        if c.prober is not None:
            c.prober.stop()
            c.prober = None
        assert c.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.proc.pid, signal.SIGKILL)  # leftovers of the container's process group
        c.proc = None
        c.kill_deadline = None
        (self.dir / f"{c.name}.pid").unlink(missing_ok=True)
        c.terminated = terminated_state(c, code)
        if c.kill_reason:
            c.terminated["message"] = c.kill_reason
            c.kill_reason = ""
        elif message := termination_message(
            c.spec, code, self.termination_file(c), self.dir / f"{c.name}.log"
        ):
            c.terminated["message"] = message
        log.info("pod %s container %s exited with %d after %.1fs", self.name, c.name, code, ran_for)
        policy = "Always" if c.is_sidecar else self.restart_policy
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if c.is_init and not c.is_sidecar and code == 0:
            c.done = True
            c.waiting = None
            return
        if not restart:
            c.done = True
            c.waiting = None
            if c.is_init:  # an init container failed under restartPolicy Never: the pod fails
                self.init_failed = True
            return
        delay = c.backoff.next_delay(ran_for)
        c.next_start = time.monotonic() + delay
        c.last_terminated = c.terminated
        if delay > 0:
            pod_ref = f"{self.pod['metadata']['name']}_{self.pod['metadata'].get('namespace')}({self.uid})"
            c.waiting = (
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={c.name} pod={pod_ref}",
            )
            self.event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod {pod_ref}",
                c.name,
            )
        else:
            c.waiting = None

    def maybe_start(self, c: Container) -> None:
        if time.monotonic() < c.next_start:
            return
        try:
            argv, env, cwd = self.command_for(c)
        except ImageNotMapped as exc:
            self._wait(c, "ImageNotMapped", str(exc), retry=3.0)
            return
        except ImagesFileError as exc:
            self._wait(c, "ImageNotMapped", str(exc), retry=3.0)
            return
        except (EnvConfigError, VolumeError) as exc:
            self._wait(c, "CreateContainerConfigError", str(exc), retry=1.0)
            return
        except ApiError as exc:
            log.warning("pod %s container %s: API error while preparing: %s", self.name, c.name, exc)
            c.next_start = time.monotonic() + 1.0
            return
        if c.ever_started:
            c.restart_count += 1
        if c.terminated is not None:
            c.last_terminated = c.terminated
        self.termination_file(c).write_bytes(
            b""
        )  # a fresh, empty message file per instance, like the kubelet
        log_path = self.dir / f"{c.name}.log"
        if c.ever_started and log_path.exists():  # keep the last instance's log, like the kubelet
            log_path.replace(self.dir / f"{c.name}.previous.log")
        c.start_mono = time.monotonic()
        c.started_at = now_rfc3339()
        c.container_id = (
            "localkube://"
            + hashlib.sha256(f"{self.uid}/{c.name}/{c.restart_count}/{time.time_ns()}".encode()).hexdigest()
        )
        c.image_id = f"localkube://{c.spec.get('image', '')}"
        if not c.ever_started:
            self.event(
                "Normal",
                "Pulled",
                f'Container image "{c.spec.get("image")}" already present on machine',
                c.name,
            )
        self.event("Normal", "Created", f"Created container: {c.name}", c.name)
        try:
            c.proc = start_process(argv, env, cwd, log_path, self.dir / f"{c.name}.pid")
        except StartError as exc:
            c.ever_started = True
            self.event("Warning", "Failed", f"Error: {exc}", c.name)
            c.terminated = terminated_state(c, 128, "StartError", str(exc))
            c.proc = None
            policy = "Always" if c.is_sidecar else self.restart_policy
            if policy == "Never":
                c.done, c.waiting = True, None
                self.init_failed = self.init_failed or c.is_init
            else:
                delay = max(1.0, c.backoff.next_delay(0.0))
                c.next_start = time.monotonic() + delay
                c.last_terminated = c.terminated
                c.waiting = ("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container={c.name}")
            return
        c.ever_started = True
        c.waiting = None
        c.terminated = None
        c.reported_waiting = ""
        log.info("pod %s container %s started pid %d: %s", self.name, c.name, c.proc.pid, argv)
        self.event("Normal", "Started", f"Started container {c.name}", c.name)
        self.start_prober(c, env, cwd)

    def _wait(self, c: Container, reason: str, message: str, retry: float) -> None:
        c.waiting = (reason, message)
        c.next_start = time.monotonic() + retry
        if c.reported_waiting != message:
            c.reported_waiting = message
            log.info("pod %s container %s waits: %s: %s", self.name, c.name, reason, message)
            self.event("Warning", "Failed", f"Error: {message}", c.name)

    def mounts(self, c: Container) -> list[tuple[str, str]]:
        """(mountPath, host path) of the container's volumes; host paths shell-safe (see shell_safe_path)."""
        return [(m, shell_safe_path(h)) for m, h in container_mounts(c.spec, self.volume_paths, self.pod)]

    def termination_file(self, c: Container) -> Path:
        """The host file behind the container's terminationMessagePath (the kubelet mounts one per container)."""
        return self.dir / f"{c.name}.termination-log"

    @property
    def safe_dir(self) -> Path:
        """The pod directory under a path without spaces (the working dir, $HOME, the pod's kubeconfig)."""
        return Path(shell_safe_path(str(self.dir)))

    def command_for(self, c: Container) -> tuple[list[str], dict[str, str], str]:
        """argv, env and working directory of the container's process."""
        image_map = self.ctx.images.get()
        config = image_map.lookup(c.spec.get("image", ""))
        ph = Placeholders(
            self.ctx.venv_bin, self.ctx.repo_root, self.pod_ip, self.ctx.agent_path, self.ctx.cache_dir
        )
        mounts = self.mounts(c)
        # Paths the image itself holds (images file `files`), rewritten like mounts; a volume mounted
        # at the same path comes later in the list and wins.
        paths = [(image_path, shell_safe_path(host)) for image_path, host in image_files(config, ph)]
        # The termination message file, at the path the pod spec names (a process told that path writes
        # here; one that writes the default /dev/termination-log unasked cannot be redirected).
        paths.append((termination_message_path(c.spec), shell_safe_path(str(self.termination_file(c)))))
        paths += mounts
        ns = self.pod["metadata"].get("namespace", "default")
        svc_env: dict[str, str] = {}
        if self.pod["spec"].get("enableServiceLinks", True) is not False:
            svc_env = service_env(self.ctx.services_in(ns))
        svc_env.update(
            service_env([s for s in self.ctx.services_in("default") if s["metadata"]["name"] == "kubernetes"])
        )
        kenv = container_env(self.pod, c.spec, self._sources(), svc_env)
        env = {
            "HOME": str(self.safe_dir / "home"),
            "HOSTNAME": self.pod["spec"].get("hostname") or self.pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            **image_env(image_map, config, ph),
        }
        # Only what the pod spec says is a container path: the agent's own values (HOME, the images
        # file's PATH and entrypoint) are host paths already, and a clone under a mountPath (/tmp) must
        # not have them rewritten into a volume.
        env.update({k: rewrite_path(v, paths) for k, v in kenv.items()})
        env[UID_ENV] = self.uid
        kubeconfig = self.write_pod_kubeconfig(mounts)
        if kubeconfig and "KUBECONFIG" not in env:
            env["KUBECONFIG"] = kubeconfig
        (self.dir / "home").mkdir(exist_ok=True)
        parts = container_argv_parts(config, c.spec.get("command"), c.spec.get("args"), ph)
        # Rewrite the pod's own text first, then expand $(VAR): a variable's value is final (a host path
        # already, e.g. $(HOME)) and is never rewritten again. Images-file parts are host paths as written.
        argv = [expand(rewrite_path(p.value, paths), env) if p.from_pod else p.value for p in parts]
        cwd = str(self.safe_dir)
        if c.spec.get("workingDir"):
            wd = rewrite_path(c.spec["workingDir"], mounts)
            if os.path.isdir(wd):
                cwd = wd
            else:
                log.warning("pod %s container %s: workingDir %s does not exist here", self.name, c.name, wd)
        return argv, env, cwd

    def write_pod_kubeconfig(self, mounts: list[tuple[str, str]]) -> str:
        """A kubeconfig with the pod's service-account token, for in-cluster clients running on the host."""
        sa_path = "/var/run/secrets/kubernetes.io/serviceaccount"
        sa_dir = rewrite_path(sa_path, mounts)
        if sa_dir == sa_path:  # not mounted: never read the host's own /var/run/secrets (agent in a pod)
            return ""
        token = Path(sa_dir) / "token"
        if not token.is_file():
            return ""
        ca = Path(sa_dir) / "ca.crt"
        path = self.safe_dir / "kubeconfig"
        ns = self.pod["metadata"].get("namespace", "default")
        cluster: dict[str, Any] = {"server": self.ctx.api.server}
        if ca.is_file():
            cluster["certificate-authority"] = str(ca)
        import yaml

        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": "pod", "user": {"token": token.read_text().strip()}}],
            "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod", "namespace": ns}}],
            "current-context": "pod",
        }
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    def start_prober(self, c: Container, env: dict[str, str], cwd: str) -> None:
        specs = [
            ProbeSpec.from_probe(kind, c.spec[key])
            for kind, key in (
                ("startup", "startupProbe"),
                ("readiness", "readinessProbe"),
                ("liveness", "livenessProbe"),
            )
            if c.spec.get(key)
        ]
        if not specs:
            c.prober = None
            return
        mounts = self.mounts(c)
        ctx = ProbeContext(self.pod_ip, c.spec, env, cwd, lambda s: rewrite_path(s, mounts))

        def failed(kind: str, result: bool, message: str) -> None:
            self.event("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}", c.name)

        c.prober = ContainerProber(specs, ctx, self.wake.set, failed, name=f"probe-{self.name}-{c.name}")
        c.prober.start()

    # --- status ---------------------------------------------------------------------------------
    def build_status(self) -> dict:
        phase = self.phase()
        previous = (self.pod.get("status") or {}).get("conditions") or []
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": self.start_time,
            "conditions": build_conditions(phase, self.sandbox_ready, self.inits, self.mains, previous),
            "containerStatuses": [c.status() for c in self.mains],
        }
        if self.sandbox_ready:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        status["reason"] = None
        status["message"] = None
        if self.init_failed:
            status["message"] = "an init container failed and restartPolicy is Never"
        return status

    def sync_status(self, force: bool = False) -> None:
        status = self.build_status()
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [(c["type"], c["status"], c.get("reason")) for c in status["conditions"]]
        if not force and (comparable == self.last_status or time.monotonic() < self._status_retry_at):
            return
        meta = self.pod["metadata"]
        try:
            updated = self.ctx.api.patch(
                ns_path(meta.get("namespace", "default"), "pods", meta["name"], "status"), {"status": status}
            )
        except ApiError as exc:
            if exc.status == 404:
                self.removed.set()
            else:
                log.warning("pod %s: status update failed (retrying in 2 s): %s", self.name, exc)
                self._status_retry_at = time.monotonic() + 2.0
            return
        self.last_status = comparable
        if updated.get("metadata", {}).get("uid") == self.uid:
            self.pod = {**self.pod, "status": updated.get("status", {})}

    # --- termination ----------------------------------------------------------------------------
    def kill_all(self, grace: float) -> None:
        threads = []
        for c in self.inits + self.mains:
            if c.prober is not None:
                c.prober.stop()
            if c.proc is not None:
                t = threading.Thread(target=stop_process, args=(c.proc, grace), daemon=True)
                t.start()
                threads.append((c, t))
        for c, t in threads:
            t.join(grace + 5)
            if c.proc is not None and c.proc.returncode is not None:
                self.on_exited_final(c, exit_code(c.proc.returncode))

    def on_exited_final(self, c: Container, code: int) -> None:
        c.proc = None
        (self.dir / f"{c.name}.pid").unlink(missing_ok=True)
        c.waiting = None
        c.done = True
        c.terminated = terminated_state(c, code)

    def run_pre_stop(self, c: Container, deadline: float) -> None:
        hook = (c.spec.get("lifecycle") or {}).get("preStop")
        if not hook or c.proc is None:
            return
        timeout = max(0.0, deadline - time.monotonic())
        if "sleep" in hook:
            time.sleep(min(float(hook["sleep"].get("seconds", 0)), timeout))
            return
        try:
            _, env, cwd = self.command_for(c)
        except Exception as exc:
            log.warning("pod %s: preStop of %s not run: %s", self.name, c.name, exc)
            return
        mounts = self.mounts(c)
        ctx = ProbeContext(self.pod_ip, c.spec, env, cwd, lambda s: rewrite_path(s, mounts))
        ok, message = run_probe(hook, ctx, timeout)
        if not ok:
            self.event("Warning", "FailedPreStopHook", f"PreStopHook failed: {message}", c.name)

    def terminate_and_delete(self) -> None:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        grace = float(grace if grace is not None else self.grace_seconds())
        deadline = time.monotonic() + grace

        def stop_one(c: Container) -> None:
            self.event("Normal", "Killing", f"Stopping container {c.name}", c.name)
            self.run_pre_stop(c, deadline)
            if c.proc is not None:
                stop_process(c.proc, max(0.0, deadline - time.monotonic()))

        running = [c for c in self.inits + self.mains if c.proc is not None]
        for c in running:
            if c.prober is not None:
                c.prober.stop()
        threads = [threading.Thread(target=stop_one, args=(c,), daemon=True) for c in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join(grace + 10)
        for c in running:
            if c.proc is not None and c.proc.returncode is not None:
                self.on_exited_final(c, exit_code(c.proc.returncode))
        for c in self.inits + self.mains:
            if not c.done:
                c.done = True
                if c.terminated is None and c.waiting is not None and c.ever_started is False:
                    c.waiting = ("ContainerCreating", "")
        self.sync_status(force=True)
        ns = meta.get("namespace", "default")
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        for _ in range(5):
            try:
                self.ctx.api.delete(ns_path(ns, "pods", meta["name"]), body)
                break
            except ApiError as exc:
                if exc.status == 409:  # another pod with that name now: ours is gone
                    break
                log.warning("pod %s: final delete failed: %s", self.name, exc)
                time.sleep(1)
        self.cleanup_dir()

    def cleanup_dir(self) -> None:
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)
        shutil.rmtree(self.dir / "home", ignore_errors=True)
        self.ctx.events.forget(self.uid)
