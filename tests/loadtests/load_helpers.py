"""Helpers for the headless tests and the benchmark: simulator and Locust as bounded subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
BIN = Path(sys.executable).parent
MODEL = "higgs-audio-v2-generation-3B-base"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


@dataclass
class SimProc:
    proc: subprocess.Popen
    port: int
    log_path: Path
    trace_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        kill_group(self.proc)


def start_sim(tmp: Path, *flags: str, startup_s: float = 20.0) -> SimProc:
    port = free_port()
    log_path, trace_path = tmp / f"sim-{port}.log", tmp / f"trace-{port}.jsonl"
    cmd = [
        str(BIN / "higgs-sim"),
        "--model",
        MODEL,
        "--served-model-name",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--sim-trace-file",
        str(trace_path),
        *flags,
    ]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sim = SimProc(proc, port, log_path, trace_path)
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{sim.url}/health", timeout=1.0).status_code == 200:
                return sim
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    sim.stop()
    raise RuntimeError(f"simulator not healthy after {startup_s} s:\n{log_path.read_text()}")


def locust_cmd(host: str, report_dir: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--host",
        host,
        "--report-dir",
        str(report_dir),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *extra,
    ]


def run_bounded(cmd: list[str], timeout: float, log_path: Path) -> int:
    """Run to completion in its own process group; on timeout kill the group and fail loudly."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise AssertionError(
                f"{cmd[0]} ran past {timeout} s and was killed:\n{log_path.read_text()[-3000:]}"
            ) from None
