"""Container probes (httpGet, tcpSocket, exec) with the kubelet's timing and threshold rules.

One :class:`ContainerProber` thread per running container runs its startupProbe until it succeeds
(which gates the other two), then its readinessProbe and livenessProbe each on their own period.
Probes only ever reach loopback addresses: a probe ``host`` outside 127.0.0.0/8 fails.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .pods import is_loopback, resolve_port


@dataclass
class ProbeSpec:
    kind: str  # startup | readiness | liveness
    action: dict
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_probe(cls, kind: str, probe: dict) -> ProbeSpec:
        return cls(
            kind=kind,
            action=probe,
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


@dataclass
class ProbeTracker:
    """Consecutive-result thresholds: the result flips only after enough agreeing probes."""

    success_threshold: int
    failure_threshold: int
    result: bool
    successes: int = 0
    failures: int = 0

    def observe(self, ok: bool) -> bool:
        """Record one probe result; True if the overall result changed."""
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.result and self.successes >= self.success_threshold:
                self.result = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.result and self.failures >= self.failure_threshold:
                self.result = False
                return True
        return False


@dataclass
class ProbeContext:
    """What a probe needs about its container: the pod IP, port names, exec environment."""

    pod_ip: str
    container: dict
    exec_env: dict[str, str] = field(default_factory=dict)
    exec_cwd: str | None = None
    rewrite: Callable[[str], str] = lambda s: s


def run_probe(action: dict, ctx: ProbeContext, timeout: float) -> tuple[bool, str]:
    """Run one probe action once: (success, message for events)."""
    try:
        if "httpGet" in action:
            return _http_get(action["httpGet"], ctx, timeout)
        if "tcpSocket" in action:
            spec = action["tcpSocket"]
            host = spec.get("host") or ctx.pod_ip
            if not is_loopback(host):
                return False, f"probe host {host} is outside 127.0.0.0/8: refused"
            port = resolve_port(spec.get("port"), ctx.container)
            with socket.create_connection((host, port), timeout=timeout):
                return True, ""
        if "exec" in action:
            argv = [ctx.rewrite(a) for a in action["exec"].get("command") or []]
            proc = subprocess.run(
                argv, env=ctx.exec_env, cwd=ctx.exec_cwd, capture_output=True, timeout=timeout, check=False
            )
            out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
            return proc.returncode == 0, out or f"command exited with {proc.returncode}"
        if "grpc" in action:
            return False, "grpc probes are not supported by the local node agent"
        return False, "probe has no handler"
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {timeout}s"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, str(exc) or exc.__class__.__name__


def _http_get(spec: dict, ctx: ProbeContext, timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or ctx.pod_ip
    if not is_loopback(host):
        return False, f"probe host {host} is outside 127.0.0.0/8: refused"
    port = resolve_port(spec.get("port"), ctx.container)
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    if spec.get("scheme", "HTTP").upper() == "HTTPS":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"User-Agent": "kube-probe/1.35", "Accept": "*/*"}
    for header in spec.get("httpHeaders") or []:
        headers[header["name"]] = header.get("value", "")
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read(10240)
        url = f"http://{host}:{port}{path}"
        if 200 <= resp.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {resp.status} ({url})"
    finally:
        conn.close()


ProbeEvent = Callable[[str, bool, str], None]  # (kind, new result, message)


class ContainerProber(threading.Thread):
    """Runs a container's probes until stopped; results read by the pod worker."""

    def __init__(
        self,
        specs: list[ProbeSpec],
        ctx: ProbeContext,
        on_change: Callable[[], None],
        on_failure: ProbeEvent,
        name: str = "prober",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.specs = {s.kind: s for s in specs}
        self.ctx = ctx
        self.on_change = on_change
        self.on_failure = on_failure
        self.stopped = threading.Event()
        self.trackers = {
            kind: ProbeTracker(s.success_threshold, s.failure_threshold, result=(kind == "liveness"))
            for kind, s in self.specs.items()
        }
        self.started = "startup" not in self.specs
        self.failed: str | None = None  # set when liveness/startup failed: the container must be killed

    @property
    def ready(self) -> bool:
        if not self.started:
            return False
        tracker = self.trackers.get("readiness")
        return tracker.result if tracker else True

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        t0 = time.monotonic()
        due = {kind: t0 + s.initial_delay for kind, s in self.specs.items()}
        while not self.stopped.is_set() and self.failed is None:
            active = (
                ["startup"] if not self.started else [k for k in ("readiness", "liveness") if k in self.specs]
            )
            if not active:
                return
            now = time.monotonic()
            for kind in active:
                if now >= due[kind] and not self.stopped.is_set():
                    self._probe_once(kind)
                    due[kind] = time.monotonic() + self.specs[kind].period
            upcoming = (
                ["startup"] if not self.started else [k for k in ("readiness", "liveness") if k in self.specs]
            )
            wait = min((due[k] for k in upcoming), default=time.monotonic()) - time.monotonic()
            self.stopped.wait(max(0.05, min(wait, 1.0)))

    def _probe_once(self, kind: str) -> None:
        spec = self.specs[kind]
        ok, message = run_probe(spec.action, self.ctx, spec.timeout)
        if self.stopped.is_set():
            return
        tracker = self.trackers[kind]
        changed = tracker.observe(ok)
        if not ok:
            self.on_failure(kind, tracker.result, message)
        if kind == "startup":
            if tracker.result:
                self.started = True
                self.on_change()
            elif tracker.failures >= spec.failure_threshold:
                self.failed = f"Container {self.ctx.container['name']} failed startup probe"
                self.on_change()
        elif kind == "liveness" and changed and not tracker.result:
            self.failed = f"Container {self.ctx.container['name']} failed liveness probe"
            self.on_change()
        elif changed:
            self.on_change()
