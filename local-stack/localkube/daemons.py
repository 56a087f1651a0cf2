"""Daemon processes of the local cluster: start detached, track by pid file, recognise, stop.

A process counts as ours only if its command line mentions the cluster's state directory: a pid
file left by a crashed run whose pid now belongs to something else is then treated as stale.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    state: str
    cmdline: str  # argv joined with spaces, for messages and substring checks
    argv: tuple[str, ...]


def proc_info(pid: int) -> ProcInfo | None:
    """The process as /proc shows it, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in stat is in parentheses and may contain spaces: split after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    argv = tuple(raw.decode(errors="replace").split("\0")[:-1]) if raw else ()
    return ProcInfo(pid=pid, ppid=int(rest[1]), state=rest[0], cmdline=" ".join(argv), argv=argv)


def all_processes() -> list[ProcInfo]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := proc_info(int(entry))) is not None:
            found.append(info)
    return found


def is_running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; only its parent has not collected it yet)."""
    info = proc_info(pid)
    return info is not None and info.state not in ("Z", "X")


def is_ours(pid: int, marker: str) -> bool:
    info = proc_info(pid)
    return info is not None and info.state not in ("Z", "X") and marker in info.cmdline


def descendants(pid: int, table: Iterable[ProcInfo] | None = None) -> list[int]:
    """Every process below pid (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for info in table if table is not None else all_processes():
        children.setdefault(info.ppid, []).append(info.pid)
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, []))
    return out


class PidFile:
    def __init__(self, run_dir: Path, name: str) -> None:
        self.path = run_dir / f"{name}.pid"

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start a daemon in its own session (a Ctrl-C in the terminal does not reach it), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            close_fds=True,
        )


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def terminate(pids: Iterable[int], grace_s: float = 10.0) -> list[int]:
    """SIGTERM, wait up to grace_s, then SIGKILL what is left. Returns the pids that needed SIGKILL."""
    pids = [p for p in pids if is_running(p)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(is_running(p) for p in pids):
        _reap()
        time.sleep(0.1)
    killed = [p for p in pids if is_running(p)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(is_running(p) for p in killed):
        _reap()
        time.sleep(0.05)
    return killed


def _reap() -> None:
    """Collect exited children of this process so they do not linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])
