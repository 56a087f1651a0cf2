"""Bring the local control plane (etcd, kube-apiserver, controller-manager, scheduler) and the fake GPU
node agent up and down, idempotently, recovering from whatever a crashed run left behind.

State lives in one directory (default <repo>/.cache/cluster): pki/, etcd/, logs/, run/ (pid files),
agent/, and the admin kubeconfig. A lock file serialises concurrent `up`/`down` calls (several test
sessions may share one cluster).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import components as comps
from . import settings as settings_mod
from .api_checks import HttpsClient
from .certs import CertError, Pki, ensure_pki
from .daemons import (
    PidFile,
    all_processes,
    descendants,
    is_ours,
    is_running,
    proc_info,
    spawn,
    tail,
    terminate,
)
from .kubeconfig import write_kubeconfig
from .ports import Listener, describe_owner, listeners_on
from .settings import Settings

# Addresses whose listener blocks a bind to 127.0.0.1:<port>.
_BLOCKING_ADDRESSES = {"127.0.0.1", "0.0.0.0", "0000:0000:0000:0000:0000:0000:0000:0000"}
_AGENT = "node-agent"
_LOCK_WAIT_S = 600


class StepError(Exception):
    """A step of up/down failed: says which, why, what to do, and shows the component's log."""

    def __init__(self, step: str, message: str, log_path: Path | None = None, log_lines: int = 15):
        super().__init__(message)
        self.step, self.message, self.log_path, self.log_lines = step, message, log_path, log_lines

    def render(self) -> str:
        text = f"ERROR [{self.step}]: {self.message}"
        if self.log_path is not None:
            body = "\n".join("    " + line for line in tail(self.log_path, self.log_lines).splitlines())
            text += f"\n  log: {self.log_path} (last lines):\n{body}"
        return text


@dataclass
class Running:
    """What `up` found for one component."""

    name: str
    pid: int | None
    alive: bool
    healthy: bool
    same_config: bool


class LocalCluster:
    def __init__(self, settings: Settings, out: Callable[[str], None] = print) -> None:
        self.s = settings
        self.out = out
        self.marker = str(settings.state_dir) + "/"  # in every argv of ours (data dir, certs, kubeconfigs)
        self._procs: dict[int, subprocess.Popen] = {}  # daemons started by this call, to read exit codes

    # --- shared pieces ---------------------------------------------------------------------------------
    @contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        self.s.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.s.state_dir / "lock"
        with open(path, "a+") as fh:
            deadline = time.monotonic() + _LOCK_WAIT_S
            told = False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told:
                        self.out(f"waiting for another up/down on {self.s.state_dir} to finish ...")
                        told = True
                    if time.monotonic() > deadline:
                        raise StepError(
                            what, f"another up/down holds {path} for over {_LOCK_WAIT_S} s"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _pidfile(self, name: str) -> PidFile:
        return PidFile(self.s.run_dir, name)

    def _our_pid(self, name: str) -> int | None:
        pid = self._pidfile(name).read()
        return pid if pid is not None and is_ours(pid, self.marker) else None

    def _components(self, pki: Pki) -> list[comps.Component]:
        return comps.control_plane(self.s, pki)

    def _agent_wanted(self) -> bool:
        return self.s.nodes > 0

    def _check_binaries(self) -> None:
        needed = [self.s.tools_bin / "etcd"] + [
            self.s.k8s_bin / c for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        ]
        missing = [str(p) for p in needed if not os.access(p, os.X_OK)]
        if missing:
            raise StepError(
                "binaries",
                f"missing {', '.join(missing)}; run `make tools` (hack/install-tools.sh) to install them",
            )

    def _ensure_pki(self) -> Pki:
        try:
            pki, changed = ensure_pki(self.s)
        except CertError as exc:
            raise StepError("certificates", str(exc)) from None
        for name, stem, user in (
            ("admin", "admin", "kubernetes-admin"),
            ("kube-controller-manager", "controller-manager", "system:kube-controller-manager"),
            ("kube-scheduler", "scheduler", "system:kube-scheduler"),
            ("agent", "agent", "higgs-localkube-agent"),
        ):
            path = self.s.kubeconfig if name == "admin" else self.s.component_kubeconfig(name)
            if changed or not path.exists():
                write_kubeconfig(path, self.s.server_url, pki, stem, user)
        return pki

    def api(self, pki: Pki) -> HttpsClient:
        return comps.apiserver_client(self.s, pki)

    def _inspect(self, comp: comps.Component) -> Running:
        pid = self._our_pid(comp.name)
        if pid is None:
            return Running(comp.name, None, False, False, False)
        info = proc_info(pid)
        argv = info.argv if info else ()
        # The agent runs under whichever python started it; compare the arguments only.
        same = argv[1:] == comp.argv[1:] if comp.name == _AGENT else argv == comp.argv
        return Running(comp.name, pid, True, comp.health(), same)

    def ready_nodes(self, pki: Pki, heartbeat_since: float | None = None) -> tuple[int, int]:
        """(ready, total) nodes; (0, 0) if the API cannot be read. With heartbeat_since (epoch seconds),
        a Ready condition counts only if posted since then: Node objects keep their last status in
        etcd, so after a restart they look Ready before the agent has said anything."""
        try:
            resp = self.api(pki).get("/api/v1/nodes", timeout=5)
        except OSError:
            return 0, 0
        if resp.status != 200:
            return 0, 0
        items = resp.json().get("items", [])
        since = int(heartbeat_since) if heartbeat_since is not None else None
        ready = sum(
            1
            for node in items
            for cond in node.get("status", {}).get("conditions", [])
            if cond.get("type") == "Ready"
            and cond.get("status") == "True"
            and (since is None or _epoch(cond.get("lastHeartbeatTime")) >= since)
        )
        return ready, len(items)

    # --- up ----------------------------------------------------------------------------------------------
    def up(self) -> None:
        t0 = time.monotonic()
        with self._locked("up"):
            self._up(t0)

    def _up(self, t0: float) -> None:
        self._check_binaries()
        pki = self._ensure_pki()
        plane = self._components(pki)
        agent = comps.node_agent(self.s, pki)
        agent_ok = self._agent_wanted() and comps.agent_available()
        wanted = plane + ([agent] if agent_ok else [])
        found = {c.name: self._inspect(c) for c in wanted}

        if all(r.alive and r.healthy and r.same_config for r in found.values()):
            ready, _ = self.ready_nodes(pki)
            if not agent_ok or ready >= self.s.nodes:
                self.out(
                    f"cluster already up and healthy ({ready} nodes Ready; checked in "
                    f"{time.monotonic() - t0:.1f} s)"
                )
                self._report_missing_agent()
                self.out(f"export KUBECONFIG={self.s.kubeconfig}")
                return

        self._recover(wanted, found)
        to_start = [c for c in wanted if not found[c.name].alive]
        self._check_ports([c for c in to_start if c.port is not None])
        timings: list[tuple[str, float]] = []

        def start_and_wait(batch: list[comps.Component]) -> None:
            started = {c.name: self._start(c) for c in batch if c in to_start}
            for comp in batch:
                if comp.name in started:
                    self._wait_ready(comp, started[comp.name])
                    timings.append((comp.name, time.monotonic() - t0))
                elif not found[comp.name].healthy:
                    self._wait_ready(comp, found[comp.name].pid)

        etcd, apiserver, *rest = plane
        start_and_wait([etcd])
        start_and_wait([apiserver])
        start_and_wait(rest)  # controller-manager and scheduler start side by side
        self._wait_system_namespaces(pki)
        timings.append(("system namespaces", time.monotonic() - t0))
        if agent_ok:
            since = None
            if agent in to_start:
                since = time.time()
                self._start(agent)
            self._wait_nodes(pki, agent, since)
            timings.append((f"{self.s.nodes} nodes Ready", time.monotonic() - t0))
        self._report_missing_agent()
        for name, at in timings:
            self.out(f"  {name:<26} ready at {at:5.1f} s")
        self.out(f"cluster up in {time.monotonic() - t0:.1f} s (state: {self.s.state_dir})")
        self.out(f"export KUBECONFIG={self.s.kubeconfig}")

    def _report_missing_agent(self) -> None:
        if self._agent_wanted() and not comps.agent_available():
            self.out(
                f"note: the fake GPU node agent ({comps.AGENT_MODULE}) is not installed yet; "
                "the control plane runs without nodes"
            )

    def _recover(self, wanted: list[comps.Component], found: dict[str, Running]) -> None:
        """Clear what a crashed or half-done run left: stale pid files, sick or outdated daemons, orphans."""
        for comp in wanted:
            r = found[comp.name]
            pidfile = self._pidfile(comp.name)
            if not r.alive and pidfile.path.exists():
                self.out(
                    f"recovering: {comp.name} was not running (stale pid file of a past run); restarting"
                )
                pidfile.remove()
            elif r.alive and not r.same_config:
                self.out(f"recovering: {comp.name} (pid {r.pid}) runs with other settings; restarting it")
                self._stop_tree(comp.name, r.pid)
                found[comp.name] = Running(comp.name, None, False, False, False)
            elif r.alive and not r.healthy and comp.name not in ("kube-apiserver", _AGENT):
                # The apiserver may be still starting (its readiness is awaited below); others answer at once.
                self.out(f"recovering: {comp.name} (pid {r.pid}) is running but unhealthy; restarting it")
                self._stop_tree(comp.name, r.pid)
                found[comp.name] = Running(comp.name, None, False, False, False)
        tracked = {r.pid for r in found.values() if r.pid is not None}
        for orphan in self._orphans(tracked):
            self.out(
                f"recovering: stopping leftover pid {orphan.pid} of an earlier run ({orphan.cmdline[:80]})"
            )
            self._stop_tree("leftover", orphan.pid, grace_s=10)

    def _orphans(self, tracked: set[int]) -> list:
        """Daemons of ours (by binary and state dir) that no pid file accounts for."""
        names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "localkube.cli agent")
        out = []
        for info in all_processes():
            if info.pid in tracked or info.pid == os.getpid() or self.marker not in info.cmdline:
                continue
            head = info.cmdline.split(" --", 1)[0]
            if any(head.endswith(n) or head.endswith(f"-m {n}") for n in names):
                out.append(info)
        return out

    def _check_ports(self, batch: list[comps.Component]) -> None:
        wanted = {c.port: c.name for c in batch if c.port is not None}
        if any(c.name == "etcd" for c in batch):
            wanted[self.s.etcd_peer_port] = "etcd-peer"
        env_var = {name: var for name, (_, var) in self.s.ports().items()}
        for listener in listeners_on(set(wanted)):
            if listener.address not in _BLOCKING_ADDRESSES:
                continue
            if listener.pid is not None and is_ours(listener.pid, self.marker):
                self.out(
                    f"recovering: stopping pid {listener.pid}, a leftover of ours on port {listener.port}"
                )
                terminate([listener.pid], grace_s=5)
                continue
            name = wanted[listener.port]
            raise StepError("ports", port_conflict_message(name, listener, env_var[name]))

    def _start(self, comp: comps.Component) -> int:
        self.s.run_dir.mkdir(parents=True, exist_ok=True)
        (self.s.run_dir / comp.name).mkdir(exist_ok=True)
        # The project root travels in the environment (not the argv, which identifies a running daemon):
        # the agent's {repo} placeholder is this root even when the package is imported from elsewhere.
        env = {**os.environ, settings_mod.ROOT_ENV: str(self.s.repo_root)}
        proc = spawn(comp.argv, comp.log_path(self.s), env)
        self._pidfile(comp.name).write(proc.pid)
        self._procs[proc.pid] = proc
        return proc.pid

    def _exit_code(self, pid: int | None) -> int | None:
        proc = self._procs.get(pid) if pid is not None else None
        return proc.poll() if proc is not None else None

    def _wait_ready(self, comp: comps.Component, pid: int | None) -> None:
        deadline = time.monotonic() + comp.ready_timeout_s
        log = comp.log_path(self.s)
        while not comp.health():
            code = self._exit_code(pid)
            # A process this run started is judged by its exit status; one found running, by /proc.
            ended = code is not None if pid in self._procs else (pid is None or not is_ours(pid, self.marker))
            if ended:
                self._pidfile(comp.name).remove()
                how = f"exited with code {code}" if code is not None else "is not running"
                raise StepError(comp.name, f"{comp.name} {how} while starting", log)
            if time.monotonic() > deadline:
                raise StepError(
                    comp.name,
                    f"{comp.name} (pid {pid}) not healthy after {comp.ready_timeout_s:.0f} s; "
                    "`make cluster-down` then `make cluster-up` restarts it",
                    log,
                )
            time.sleep(0.2)

    def _wait_system_namespaces(self, pki: Pki, timeout_s: float = 60) -> None:
        """default and kube-system exist, and the serviceaccount controller has made default's account."""
        api = self.api(pki)
        paths = (
            "/api/v1/namespaces/default",
            "/api/v1/namespaces/kube-system",
            "/api/v1/namespaces/default/serviceaccounts/default",
        )
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [p for p in paths if not api.ok(p)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise StepError(
                    "system namespaces",
                    f"still missing after {timeout_s:.0f} s: {', '.join(missing)}",
                    self.s.log_dir / "kube-controller-manager.log",
                )
            time.sleep(0.2)

    def _wait_nodes(
        self, pki: Pki, agent: comps.Component, since: float | None, timeout_s: float = 90
    ) -> None:
        deadline = time.monotonic() + timeout_s
        log = agent.log_path(self.s)
        while True:
            ready, total = self.ready_nodes(pki, since)
            if ready >= self.s.nodes:
                return
            pid = self._pidfile(agent.name).read()
            if pid is None or not is_ours(pid, self.marker):
                code = self._exit_code(pid)
                self._pidfile(agent.name).remove()
                raise StepError(
                    "node agent", f"the node agent exited (code {code}) before its nodes were Ready", log
                )
            if time.monotonic() > deadline:
                raise StepError(
                    "node agent",
                    f"{ready} of {self.s.nodes} nodes Ready after {timeout_s:.0f} s ({total} registered); "
                    "`make cluster-down` then `make cluster-up` restarts the agent",
                    log,
                )
            time.sleep(0.3)

    # --- down ------------------------------------------------------------------------------------------
    def down(self, purge: bool = False) -> None:
        t0 = time.monotonic()
        with self._locked("down"):
            stopped = self._stop_all()
            if stopped:
                self.out(f"stopped {', '.join(stopped)} in {time.monotonic() - t0:.1f} s")
            else:
                self.out("nothing was running")
            self._verify_no_listeners()
            if purge:
                self._purge()
        if purge:
            (self.s.state_dir / "lock").unlink(missing_ok=True)
            with suppress(OSError):
                self.s.state_dir.rmdir()
            self.out(
                f"purged {self.s.state_dir} (certificates, etcd data, logs); binaries stay in "
                f"{self.s.cache_dir}"
            )

    def _stop_tree(self, name: str, pid: int | None, grace_s: float = 10) -> bool:
        """Stop a daemon and then anything it started that outlived it (pod processes of the agent)."""
        if pid is None:
            self._pidfile(name).remove()
            return False
        table = all_processes()
        children = descendants(pid, table)
        terminate([pid], grace_s=grace_s)
        leftovers = [child for child in children if is_running(child)]
        if leftovers:
            terminate(leftovers, grace_s=2)
            self.out(f"warning: {name} left {len(leftovers)} child process(es) behind; stopped {leftovers}")
        self._pidfile(name).remove()
        return True

    def _stop_all(self) -> list[str]:
        order = [_AGENT, "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        stopped = []
        for name in order:
            # The agent gets time to stop its pod processes before anything else goes away.
            if self._stop_tree(name, self._our_pid(name), grace_s=20 if name == _AGENT else 10):
                stopped.append(name)
        for orphan in self._orphans(set()):
            self._stop_tree("leftover", orphan.pid, grace_s=10)
            stopped.append(f"leftover pid {orphan.pid}")
        return stopped

    def _verify_no_listeners(self) -> None:
        """Nothing of ours may still listen on 127.x after down."""
        ours = []
        for info in all_processes():
            if self.marker in info.cmdline:
                ours.append(info.pid)
        if not ours:
            return
        found = [lst for lst in listeners_on(set(range(1, 65536))) if lst.pid in ours]
        if found:
            what = ", ".join(f"{lst.address}:{lst.port} by {describe_owner(lst)}" for lst in found)
            raise StepError(
                "down", f"processes of this cluster still listen: {what}; stop them with kill <pid>"
            )

    def _purge(self) -> None:
        for entry in self.s.state_dir.iterdir():
            if entry.name == "lock":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # --- status / env ------------------------------------------------------------------------------------
    def status(self) -> bool:
        """Print a table of components and nodes; True if everything wanted is up and healthy."""
        if not (self.s.pki_dir / "ca.crt").exists():
            self.out(f"no cluster state in {self.s.state_dir}; start it with `make cluster-up`")
            return False
        pki = Pki(self.s.pki_dir)
        rows = [self._inspect(c) for c in self._components(pki)]
        agent = comps.node_agent(self.s, pki)
        if self._agent_wanted():
            rows.append(self._inspect(agent))
        ports = {name: port for name, (port, _) in self.s.ports().items()}
        self.out(f"{'COMPONENT':<25} {'PID':>8} {'ALIVE':<6} {'PORT':>6} {'HEALTH':<8} LOG")
        for r in rows:
            port = ports.get(r.name)
            health = "ok" if r.alive and r.healthy else ("-" if not r.alive else "failing")
            self.out(
                f"{r.name:<25} {r.pid or '-':>8} {'yes' if r.alive else 'no':<6} {port or '-':>6} "
                f"{health:<8} "
                f"{self.s.log_dir / (r.name + '.log')}"
            )
        healthy = all(r.alive and r.healthy for r in rows)
        if rows[1].healthy:
            self._print_nodes(pki)
        self.out(f"export KUBECONFIG={self.s.kubeconfig}")
        return healthy

    def _print_nodes(self, pki: Pki) -> None:
        resp = self.api(pki).get("/api/v1/nodes")
        items = resp.json().get("items", []) if resp.status == 200 else []
        if not items:
            self.out("nodes: none registered")
            return
        self.out(f"{'NODE':<25} {'READY':<6} {'GPUS':>5} {'CPU':>5} {'MEMORY':>10}")
        for node in items:
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            alloc = node.get("status", {}).get("allocatable", {})
            self.out(
                f"{node['metadata']['name']:<25} {conds.get('Ready', '?'):<6} "
                f"{alloc.get('nvidia.com/gpu', '0'):>5} "
                f"{alloc.get('cpu', '?'):>5} {alloc.get('memory', '?'):>10}"
            )

    def env_lines(self) -> list[str]:
        return [f"export KUBECONFIG={self.s.kubeconfig}", f'export PATH="{self.s.tools_bin}:$PATH"']


def _epoch(timestamp: str | None) -> float:
    """RFC 3339 time as the API writes it ("2026-01-02T03:04:05Z") to epoch seconds; 0 if absent."""
    if not timestamp:
        return 0.0
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def port_conflict_message(component: str, listener: Listener, env_var: str) -> str:
    return (
        f"port {listener.port} ({component}) is already in use on {listener.address} by "
        f"{describe_owner(listener)}; stop that process or pick a free port with {env_var}=<port>"
    )
