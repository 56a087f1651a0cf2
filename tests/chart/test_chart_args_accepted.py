"""The pod the chart renders, run as processes: the download init container's args fill the cache from
the fake Hub, then the server args and env start the simulator offline from that cache (model and
tokenizer by path, the semantic teacher by name through HF_HUB_CACHE). The simulator parses flags like
Boson's fork and refuses later vLLM's syntax: a chart/server mismatch is caught here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from higgs_sim import hub
from tests.support import chart as ck
from tests.support.ports import free_port

VENV_BIN = Path(sys.executable).parent
TOKEN = "hf_fake_token_for_args_test"


def rendered_pod(cache: Path, port: int, hub_url: str, **values: object) -> dict:
    values = {
        "port": port,
        "modelCache": {"mountPath": str(cache), "hfEndpoint": hub_url},
        "maxNumSeqs": 8,
        **values,
    }
    return ck.deployment_pod(ck.render(values))


def container_env(container: dict, scratch: Path) -> dict[str, str]:
    """The container's plain env values, /tmp (the scratch emptyDir) moved to `scratch`, as the
    local node agent rewrites a volume's mountPath."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "VLLM_"))}
    for item in container.get("env", []):
        if "value" in item:
            value = item["value"]
            scratch_path = value == "/tmp" or value.startswith("/tmp/.cache")  # not pytest's tmp_path
            env[item["name"]] = str(scratch) + value[4:] if scratch_path else value
    return env


def download(pod: dict, scratch: Path) -> None:
    """The init container's command and args, with the token it would get from the Secret."""
    init = ck.container(pod, "download-model", init=True)
    script = str(ck.CHART / "files" / "download_model.py")
    env = {**container_env(init, scratch), "HF_TOKEN": TOKEN}
    proc = subprocess.run(
        [sys.executable, script, *init["args"]], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"download failed:\n{proc.stdout}\n{proc.stderr}"


def start(pod: dict, scratch: Path) -> subprocess.Popen[str]:
    server = ck.container(pod, "server")
    assert "command" not in server
    cmd = [str(VENV_BIN / "higgs-sim"), "--sim-bind-host", "127.0.0.1"]
    env = container_env(server, scratch)
    return subprocess.Popen(
        [*cmd, *server["args"]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def hub_url() -> object:
    state = hub.new_state(token=TOKEN, weights_bytes=4096)
    with hub.running_hub(state) as url:
        yield url


def test_rendered_pod_downloads_then_starts_offline(tmp_path: Path, hub_url: str) -> None:
    port = free_port()
    pod = rendered_pod(tmp_path / "models", port, hub_url)
    download(pod, tmp_path / "scratch")
    assert (tmp_path / "models" / "hub" / "models--bosonai--hubert_base" / "refs" / "main").is_file()
    proc = start(pod, tmp_path / "scratch")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"server refused the chart's pod: {proc.stderr.read() if proc.stderr else ''}"
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
    # transformers' remote-code cache went to HF_HOME on the scratch volume, not the read-only cache.
    assert (tmp_path / "scratch" / ".cache" / "huggingface" / "modules" / "__init__.py").is_file()


def test_rendered_pod_without_the_teacher_does_not_start(tmp_path: Path, hub_url: str) -> None:
    pod = rendered_pod(tmp_path / "models", free_port(), hub_url)
    download(pod, tmp_path / "scratch")
    (tmp_path / "models" / "hub" / "models--bosonai--hubert_base" / "refs" / "main").unlink()
    proc = start(pod, tmp_path / "scratch")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "bosonai/hubert_base is not the path to a directory containing a file named config.json" in err
    assert "refs/main is missing" in err


@pytest.mark.parametrize(
    "extra_args",
    [
        ["--mm-processor-cache-gb", "0"],
        ["--limit-mm-per-prompt.audio", "4"],
        ["--limit-mm-per-prompt", '{"audio": 4}'],
    ],
)
def test_later_vllm_syntax_in_extra_args_is_refused(extra_args: list[str], tmp_path: Path) -> None:
    """Later vLLM's forms of the typed flags, smuggled in through extraArgs, stop the fork's parser
    (exit 2) before it loads anything."""
    pod = rendered_pod(
        tmp_path / "models",
        free_port(),
        "http://127.0.0.1:9",
        disableMmPreprocessorCache=False,
        extraArgs=extra_args,
    )
    proc = start(pod, tmp_path / "scratch")
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, f"the fork's parser accepted {extra_args}: {err}"
    assert extra_args[0].split(".")[0] in err
