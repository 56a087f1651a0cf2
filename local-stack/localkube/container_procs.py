"""Container processes: start in their own session, log to a file, stop with SIGTERM then SIGKILL.

Each process gets ``LOCALKUBE_POD_UID`` in its environment and a pid file beside its log, so an
agent that crashed can find and stop what it left running (:func:`kill_orphans`) without ever
touching a process that merely reuses the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

UID_ENV = "LOCALKUBE_POD_UID"


class StartError(Exception):
    """The process could not be started (missing executable, bad workingDir): exit code 128."""


def start_process(
    argv: list[str], env: dict[str, str], cwd: str, log_path: Path, pid_path: Path
) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as log:
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: signals reach the whole container
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise StartError(
                f'exec: "{argv[0]}": executable file not found in $PATH ({exc.filename})'
            ) from exc
        except (PermissionError, NotADirectoryError, OSError) as exc:
            raise StartError(f"failed to start {argv[0]!r}: {exc}") from exc
    pid_path.write_text(f"{proc.pid}\n")
    return proc


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a container runtime reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def stop_process(proc: subprocess.Popen, grace: float) -> int:
    """SIGTERM, wait up to grace seconds, then SIGKILL; the container exit code."""
    signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=max(0.0, grace))
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait()
    # Children that outlived the leader still belong to the container: end them too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return exit_code(proc.returncode)


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def kill_orphans(pods_dir: Path, grace: float = 2.0) -> list[int]:
    """Stop processes left by a previous agent (pid files whose process still carries the pod uid)."""
    killed = []
    for pid_file in pods_dir.glob("*/*.pid"):
        uid = pid_file.parent.name.rsplit("_", 1)[-1]
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if _environ_has(pid, f"{UID_ENV}={uid}".encode()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            killed.append(pid)
        pid_file.unlink(missing_ok=True)
    deadline = time.monotonic() + grace
    while killed and time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in killed):
        time.sleep(0.1)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return killed
