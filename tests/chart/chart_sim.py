"""A simulator process on a loopback port, for the chart tests (a module of its own, not conftest:
several test directories have a conftest, and `from conftest import` would pick whichever came first)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(*extra: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    args = [str(VENV_BIN / "higgs-sim"), "--sim-bind-host", "127.0.0.1", "--port", str(port)]
    args += ["--model", "bosonai/higgs-audio-v2-generation-3B-base"]
    args += ["--served-model-name", "higgs-audio-v2-generation-3B-base", "--sim-startup-seconds", "0", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, wait_healthy(proc, port, "simulator")


def wait_healthy(proc: subprocess.Popen[str], port: int, what: str, timeout: float = 30) -> str:
    """The base URL once /health answers 200; stops the process and fails, with its stderr, if it
    exits or does not answer in time."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.1)
    stop(proc)
    raise AssertionError(f"{what} did not answer /health in {timeout:g} s")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
