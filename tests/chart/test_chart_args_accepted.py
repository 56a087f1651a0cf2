"""The server args the chart renders start the simulator, which parses flags like the server generation
it emulates and refuses the other generation's syntax: a chart/server mismatch is caught here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import chartkit as ck
import httpx
import pytest
from conftest import free_port

VENV_BIN = Path(sys.executable).parent


def rendered_args(generation: str, cache: Path, port: int) -> list[str]:
    values = {
        "serverGeneration": generation,
        "port": port,
        "modelCache": {"mountPath": str(cache)},
        "maxNumSeqs": 8,
    }
    server = ck.container(ck.deployment_pod(ck.render(values)), "server")
    assert "command" not in server
    for flag in ("--model", "--audio-tokenizer-type"):
        Path(server["args"][server["args"].index(flag) + 1]).mkdir(parents=True, exist_ok=True)
    return server["args"]


def start(args: list[str], generation: str) -> subprocess.Popen[str]:
    cmd = [
        str(VENV_BIN / "higgs-sim"),
        "--sim-bind-host",
        "127.0.0.1",
        "--sim-vllm-generation",
        generation,
        *args,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("generation", ["fork", "current"])
def test_rendered_args_start_the_matching_server(generation: str, tmp_path: Path) -> None:
    port = free_port()
    proc = start(rendered_args(generation, tmp_path / "models", port), generation)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"server refused the chart's args: {proc.stderr.read() if proc.stderr else ''}"
            )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("no /health answer in 30 s")
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()
        assert [m["id"] for m in models["data"]] == ["higgs-audio-v2-generation-3B-base"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(("rendered", "server"), [("fork", "current"), ("current", "fork")])
def test_other_generation_syntax_is_refused(rendered: str, server: str, tmp_path: Path) -> None:
    proc = start(rendered_args(rendered, tmp_path / "models", free_port()), server)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, f"the {server} server accepted {rendered} flags: {err}"
    assert "--limit-mm-per-prompt" in err or "mm-preprocessor-cache" in err or "mm-processor-cache" in err
