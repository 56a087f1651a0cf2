"""Command line: the real server's flags per vLLM generation, bad flags exit 2, start-up failures exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from higgs_sim.config import DEFAULT_LIMIT_MM, SimConfig, StartupError, check_startup, parse_args
from higgs_sim.timing import DEFAULT_SLOWDOWN
from sim_helpers import run_cli

MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
RECIPE = [
    MODEL, "--served-model-name", "higgs-audio-v2-generation-3B-base",
    "--audio-tokenizer-type", "bosonai/higgs-audio-v2-tokenizer", "--max-model-len", "8192",
    "--gpu-memory-utilization", "0.8", "--port", "8000",
]  # fmt: skip


def parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: higgs-sim" in err and "error:" in err
    return err


def test_recipe_flags_fork() -> None:
    config = parse_args([*RECIPE, "--limit-mm-per-prompt", "audio=50", "--disable-mm-preprocessor-cache"])
    assert config.model == MODEL and config.served_model_name == "higgs-audio-v2-generation-3B-base"
    assert config.audio_limit == 50 and config.max_model_len == 8192 and config.gpu_memory_utilization == 0.8
    assert config.vllm_generation == "fork" and config.slowdown == DEFAULT_SLOWDOWN
    # 0.8 x 80 GiB - 12.3 GB of weights, at 112 KiB per token
    assert config.kv_budget_tokens == int((0.8 * 80 * 1024**3 - 12.3e9) // (112 * 1024))


@pytest.mark.parametrize(
    "extra",
    [["--limit-mm-per-prompt", '{"audio": 50}'], ["--limit-mm-per-prompt.audio", "50"],
     ["--limit-mm-per-prompt={\"audio\": 50, \"image\": 0}"]],
)  # fmt: skip
def test_current_vllm_syntax(extra: list[str]) -> None:
    config = parse_args([*RECIPE, "--sim-vllm-generation", "current", *extra, "--mm-processor-cache-gb", "0"])
    assert config.audio_limit == 50 and config.vllm_generation == "current"


@pytest.mark.parametrize(
    ("generation", "extra", "needle"),
    [
        ("fork", ["--limit-mm-per-prompt", '{"audio": 50}'], "JSON form is current vLLM's"),
        ("fork", ["--mm-processor-cache-gb", "0"], "unrecognized arguments: --mm-processor-cache-gb"),
        ("fork", ["--limit-mm-per-prompt.audio", "50"], "unrecognized arguments"),
        ("current", ["--limit-mm-per-prompt", "audio=50"], "key=value form is the 0.8 fork's"),
        (
            "current",
            ["--disable-mm-preprocessor-cache"],
            "unrecognized arguments: --disable-mm-preprocessor-cache",
        ),
    ],
)
def test_other_generations_syntax_is_rejected(
    generation: str, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert needle in parse_error([*RECIPE, "--sim-vllm-generation", generation, *extra], capsys)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--max-model-len", "lots"], "argument --max-model-len: invalid int value: 'lots'"),
        (["--max-model-len", "0"], "argument --max-model-len: must be >= 1"),
        (["--gpu-memory-utilization", "1.5"], "argument --gpu-memory-utilization: must be <= 1"),
        (["--gpu-memory-utilization", "0"], "argument --gpu-memory-utilization: must be > 0"),
        (["--port", "70000"], "argument --port: must be <= 65535"),
        (["--max-num-seqs", "-3"], "argument --max-num-seqs: must be >= 1"),
        (["--limit-mm-per-prompt", "audio"], "expected key=value pairs"),
        (["--limit-mm-per-prompt", "audio=many"], "must be an integer >= 0"),
        (["--limit-mm-per-prompt", "speech=5"], "unknown modality 'speech'"),
        (["--sim-slowdown", "0"], "argument --sim-slowdown: must be > 0"),
        (["--sim-slowdown", "nan"], "must be a finite number"),
        (["--sim-error-rate", "2"], "argument --sim-error-rate: must be <= 1"),
        (["--sim-profile", "fast"], "argument --sim-profile: invalid choice: 'fast'"),
        (["--sim-vllm-generation", "0.9"], "invalid choice: '0.9'"),
        (["--sim-crash-after-requests", "0"], "must be >= 1"),
        (["--sim-stall-seconds", "2"], "--sim-stall-seconds needs --sim-stall-after-frames"),
        (["--dtype", "int3"], "argument --dtype: invalid choice"),
        (["--model", "other/model"], "the model is given twice"),
        (["--max-model"], "unrecognized arguments: --max-model"),  # no abbreviations, as vLLM
    ],
)
def test_bad_flags_exit_2(extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert needle in parse_error([*RECIPE, *extra], capsys)


def test_model_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert "the model is required" in parse_error(["--port", "8000"], capsys)


def test_model_flag_and_profiles() -> None:
    config = parse_args(["--model", "/models/higgs", "--sim-profile", "raw"])
    assert config.model == "/models/higgs" and config.served_model_name == "/models/higgs"
    assert config.slowdown == 1.0 and config.audio_limit == DEFAULT_LIMIT_MM
    assert parse_args([MODEL, "--sim-profile", "raw", "--sim-slowdown", "2"]).slowdown == 2.0


def test_bind_host_overrides_host() -> None:
    config = parse_args(["--sim-bind-host", "127.0.0.7", MODEL, "--host", "0.0.0.0"])
    assert config.host == "127.0.0.7"


def test_ignored_vllm_flags_are_accepted() -> None:
    parse_args([MODEL, "--enforce-eager", "--trust-remote-code", "--dtype", "bfloat16", "-tp", "1",
                "--no-enable-prefix-caching", "--max-num-batched-tokens", "8192"])  # fmt: skip


def _config(*extra: str) -> SimConfig:
    return parse_args([MODEL, *extra])


def test_startup_checks(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="does not exist"):
        check_startup(parse_args(["--model", str(tmp_path / "missing"), "--served-model-name", "x"]))
    check_startup(parse_args([str(tmp_path)]))  # an existing local directory is fine
    with pytest.raises(StartupError, match="No available memory for the cache blocks"):
        check_startup(_config("--gpu-memory-utilization", "0.1"))
    with pytest.raises(StartupError, match="larger than the maximum number of tokens"):
        check_startup(_config("--gpu-memory-utilization", "0.16", "--max-model-len", "100000"))
    with pytest.raises(StartupError, match="not a directory"):
        check_startup(_config("--voice-presets-dir", str(tmp_path / "nope")))


def test_cli_exit_codes(tmp_path: Path) -> None:
    """The real process: argparse errors exit 2, start-up errors exit 1, both with a clear message."""
    bad = run_cli(MODEL, "--limit-mm-per-prompt", '{"audio": 50}')
    assert bad.returncode == 2 and "--limit-mm-per-prompt" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli(str(tmp_path / "no-model-here"), "--port", "1")
    assert (
        missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
