"""Helpers for the headless tests and the benchmark: simulator (Boson's fork, or the vLLM-Omni
emulation) and Locust as bounded subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from higgs_sim.omni.deploy import PACKAGED_DEPLOY

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
    return _wait_healthy(SimProc(proc, port, log_path, trace_path), startup_s, "simulator")


def _wait_healthy(sim: SimProc, startup_s: float, what: str) -> SimProc:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if sim.proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {sim.proc.returncode}:\n{sim.log_path.read_text()}")
        try:
            if httpx.get(f"{sim.url}/health", timeout=1.0).status_code == 200:
                return sim
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    sim.stop()
    raise RuntimeError(f"{what} not healthy after {startup_s} s:\n{sim.log_path.read_text()}")


def omni_model(root: Path) -> tuple[Path, Path]:
    """(model directory, deploy YAML) for the emulation: the transformers-native `higgs_audio_v2`
    layout (OS8) whose codec (OS11) is a local directory, and the deploy config."""
    codec = root / "codec"
    codec.mkdir(parents=True, exist_ok=True)
    (codec / "config.json").write_text(json.dumps({"model_type": "higgs_audio_v2_tokenizer"}))
    (codec / "model.pth").write_bytes(b"placeholder weights")
    model = root / MODEL
    model.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "higgs_audio_v2",
        "architectures": ["HiggsAudioV2ForConditionalGeneration"],
        "audio_tokenizer_id": str(codec),
    }
    (model / "config.json").write_text(json.dumps(config))
    return model, PACKAGED_DEPLOY  # OS14's values, as the image carries them


def start_omni(tmp: Path, *flags: str, startup_s: float = 20.0) -> SimProc:
    """`python -m higgs_sim.omni serve <model> --omni --deploy-config <yaml>` (run_server.sh's flags)
    on a loopback port, fast (raw H100 steps x 0.2), serving the model as MODEL."""
    port = free_port()
    model, deploy = omni_model(tmp / f"omni-{port}")
    log_path, trace_path = tmp / f"omni-{port}.log", tmp / f"omni-trace-{port}.jsonl"
    cmd = [sys.executable, "-m", "higgs_sim.omni", "serve", str(model), "--omni"]
    cmd += ["--deploy-config", str(deploy), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--gpu-memory-utilization", "0.4", "--trust-remote-code", "--served-model-name", MODEL]
    cmd += ["--sim-profile", "raw", "--sim-slowdown", "0.2", "--sim-trace-file", str(trace_path), *flags]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "VLLM_API_KEY", "HF_HOME")}
    env |= {"HF_HUB_CACHE": str(tmp / "hf-cache"), "SPEAKER_SAMPLES_DIR": str(tmp / f"speakers-{port}")}
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    return _wait_healthy(SimProc(proc, port, log_path, trace_path), startup_s, "vLLM-Omni emulation")


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
