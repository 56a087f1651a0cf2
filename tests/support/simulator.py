"""The simulator as a real process on 127.0.0.1 with a free port: one launcher for every suite.

``launch`` starts Boson's fork (``higgs_sim.cli``), ``launch_omni`` the vLLM-Omni emulation
(``higgs_sim.omni serve``); both return a ``Sim`` (process, port, log, trace) not yet waited on.
``start_sim``/``start_omni`` (the fork / the emulation with the chart's and run_server.sh's flags) also wait
for /health (stopping the process and failing with its log if it
does not come up). A ``Fleet`` keeps the processes one fixture starts and stops them at teardown.
Every process runs in its own session, so ``stop`` ends it and anything it started.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from higgs_sim.omni.deploy import PACKAGED_DEPLOY
from tests.support.ports import free_port
from tests.support.processes import wait_answering

STARTUP_TIMEOUT_S = 20.0
MODEL_ID = "bosonai/higgs-audio-v2-generation-3B-base"  # the hub id the chart passes as --model
SERVED = "higgs-audio-v2-generation-3B-base"  # the served model name (and the Omni model directory)


def kill_group(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session (SIGTERM, then SIGKILL), and everything it started."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


@dataclass
class Sim:
    proc: subprocess.Popen[str]
    port: int
    log_path: Path
    trace_path: Path | None = None  # the --sim-trace-file, when one was asked for
    what: str = "simulator"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Return once /health answers 200; fail with the log if the process exits or stays silent."""
        try:
            wait_answering(self.proc, f"{self.url}/health", self.what, self.log, timeout, interval=0.05)
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        kill_group(self.proc)


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
    """Start ``cmd`` in its own session with its stdout and stderr in ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
        )


def launch(
    args: list[str],
    tmp_path: Path,
    port: int | None = None,
    *,
    trace: bool = False,
    env: dict[str, str] | None = None,
) -> Sim:
    """``python -m higgs_sim.cli ARGS --host 127.0.0.1 --port P`` (with ``trace``, a trace file too)."""
    port = port or free_port()
    log_path = tmp_path / f"sim-{port}.log"
    trace_path = tmp_path / f"trace-{port}.jsonl" if trace else None
    cmd = [sys.executable, "-m", "higgs_sim.cli", *args, "--host", "127.0.0.1", "--port", str(port)]
    if trace_path is not None:
        cmd += ["--sim-trace-file", str(trace_path)]
    return Sim(spawn(cmd, log_path, env), port, log_path, trace_path)


def start_sim(tmp_path: Path, *flags: str, model: str = SERVED, startup_s: float = STARTUP_TIMEOUT_S) -> Sim:
    """The fork's simulator serving ``model`` under the served name, with a trace file, once healthy."""
    sim = launch(["--model", model, "--served-model-name", SERVED, *flags], tmp_path, trace=True)
    sim.wait_healthy(startup_s)
    return sim


def start_as_chart(tmp_path: Path, *flags: str) -> Sim:
    """The fork's simulator with the chart's flags (the hub model id, the served name), no startup delay."""
    return start_sim(tmp_path, "--sim-startup-seconds", "0", *flags, model=MODEL_ID)


def omni_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The emulation's environment: an empty HF cache, voices under ``tmp``, no inherited keys."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "VLLM_API_KEY", "HF_HOME")}
    env["HF_HUB_CACHE"] = str(tmp / "hf-cache")
    env.setdefault("SPEAKER_SAMPLES_DIR", str(tmp / "speakers"))
    env.update(extra)
    return env


def omni_command(model: str | None, *args: str, port: int | None = None) -> list[str]:
    """``python -m higgs_sim.omni serve [MODEL] ARGS --port P --host 127.0.0.1``."""
    cmd = [sys.executable, "-m", "higgs_sim.omni", "serve", *([model] if model else []), *args]
    if port is not None:
        cmd += ["--port", str(port), "--host", "127.0.0.1"]
    return cmd


@dataclass
class OmniSim(Sim):
    model: str = ""

    def speech(self, timeout: float = 30.0, **body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/audio/speech", json=body, timeout=timeout)


def launch_omni(model: str | None, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> OmniSim:
    """Start the emulation (not waited on); ``model`` None: the model is among ``args`` (``--model DIR``)."""
    port = free_port()
    log_path = tmp / f"omni-{port}.log"
    proc = spawn(omni_command(model, *args, port=port), log_path, env if env is not None else omni_env(tmp))
    name = model or args[args.index("--model") + 1]
    return OmniSim(proc, port, log_path, what="vLLM-Omni emulation", model=name)


def run_omni_cli(
    args: list[str], env: dict[str, str], timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run the emulation's command line to completion (for starts that must fail)."""
    cmd = [sys.executable, "-m", "higgs_sim.omni", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def omni_model(root: Path) -> tuple[Path, Path]:
    """(model directory, deploy YAML) for the emulation: the transformers-native `higgs_audio_v2`
    layout (OS8) whose codec (OS11) is a local directory, and the deploy config the image carries (OS14)."""
    codec = root / "codec"
    codec.mkdir(parents=True, exist_ok=True)
    (codec / "config.json").write_text(json.dumps({"model_type": "higgs_audio_v2_tokenizer"}))
    (codec / "model.pth").write_bytes(b"placeholder weights")
    model = root / SERVED
    model.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "higgs_audio_v2",
        "architectures": ["HiggsAudioV2ForConditionalGeneration"],
        "audio_tokenizer_id": str(codec),
    }
    (model / "config.json").write_text(json.dumps(config))
    return model, PACKAGED_DEPLOY


def start_omni(tmp: Path, *flags: str, startup_s: float = STARTUP_TIMEOUT_S) -> Sim:
    """`python -m higgs_sim.omni serve <model> --omni --deploy-config <yaml>` (run_server.sh's flags)
    on a loopback port, fast (raw H100 steps x 0.2), serving the model as SERVED, once healthy."""
    port = free_port()
    model, deploy = omni_model(tmp / f"omni-{port}")
    log_path, trace_path = tmp / f"omni-{port}.log", tmp / f"omni-trace-{port}.jsonl"
    args = [
        "--omni",
        "--deploy-config",
        str(deploy),
        "--gpu-memory-utilization",
        "0.4",
        "--trust-remote-code",
    ]
    args += ["--served-model-name", SERVED, "--sim-profile", "raw", "--sim-slowdown", "0.2"]
    args += ["--sim-trace-file", str(trace_path), *flags]
    env = omni_env(tmp, SPEAKER_SAMPLES_DIR=str(tmp / f"speakers-{port}"))
    proc = spawn(omni_command(str(model), *args, port=port), log_path, env)
    sim = Sim(proc, port, log_path, trace_path, what="vLLM-Omni emulation")
    sim.wait_healthy(startup_s)
    return sim


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
