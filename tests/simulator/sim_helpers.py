"""Helpers: the simulator as a real subprocess on 127.0.0.1 with a free port; WAV builders.

The vLLM-Omni emulation's tests (tests/contract/omni_helpers.py) start theirs with these too."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sim:
    proc: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"simulator exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"simulator not healthy after {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


S = TypeVar("S", bound=Sim)


class Fleet:
    """The processes one fixture starts; ``stop()`` at its teardown stops them all."""

    def __init__(self) -> None:
        self.started: list[Sim] = []

    def add(self, sim: S, wait: bool = True) -> S:
        """Keep ``sim`` for the teardown; with ``wait``, once it answers /health."""
        self.started.append(sim)
        if wait:
            sim.wait_healthy()
        return sim

    def stop(self) -> None:
        for sim in self.started:
            sim.stop()


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``cmd`` with its stdout and stderr in ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)


def launch(args: list[str], tmp_path: Path, port: int | None = None) -> Sim:
    port = port or free_port()
    log_path = tmp_path / f"sim-{port}.log"
    cmd = [sys.executable, "-m", "higgs_sim.cli", *args, "--host", "127.0.0.1", "--port", str(port)]
    return Sim(spawn(cmd, log_path), port, log_path)


def run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run the command line to completion (for flags that must fail at start)."""
    cmd = [sys.executable, "-m", "higgs_sim.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def make_wav(seconds: float = 1.0, rate: int = 24000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x02" * int(seconds * rate))
    return buf.getvalue()


def wav_b64(seconds: float = 1.0) -> str:
    return base64.b64encode(make_wav(seconds)).decode()


def wait_for_trace(path: Path, request_id: str, timeout: float = 5.0) -> dict:
    """The simulator's trace line for one request (written when the request ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if json.loads(line)["request_id"] == request_id:
                    return json.loads(line)
        time.sleep(0.02)
    raise AssertionError(f"no trace record for {request_id}")
