"""Command line: the real server's flags (Boson's fork), bad flags exit 2, start-up failures exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from higgs_sim.config import DEFAULT_LIMIT_MM, SimConfig, StartupError, check_startup, parse_args
from higgs_sim.timing import DEFAULT_SLOWDOWN
from higgs_sim.voices import BUILTIN_PRESETS_DIR
from tests.support.simulator import run_cli

MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
RECIPE = [
    "--model", MODEL, "--served-model-name", "higgs-audio-v2-generation-3B-base",
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


@pytest.mark.contract("L4")
def test_recipe_flags_fork() -> None:
    config = parse_args([*RECIPE, "--limit-mm-per-prompt", "audio=50", "--disable-mm-preprocessor-cache"])
    assert config.model == MODEL and config.served_model_name == "higgs-audio-v2-generation-3B-base"
    assert config.audio_limit == 50 and config.max_model_len == 8192 and config.gpu_memory_utilization == 0.8
    assert config.slowdown == DEFAULT_SLOWDOWN
    # 0.8 x 80 GiB - 12.3 GB of weights, at 112 KiB per token
    assert config.kv_budget_tokens == int((0.8 * 80 * 1024**3 - 12.3e9) // (112 * 1024))


@pytest.mark.contract("L4")
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--limit-mm-per-prompt", '{"audio": 50}'], "JSON form is current vLLM's"),
        (["--mm-processor-cache-gb", "0"], "unrecognized arguments: --mm-processor-cache-gb"),
        (["--limit-mm-per-prompt.audio", "50"], "unrecognized arguments"),
    ],
)
def test_later_vllm_syntax_is_rejected(
    extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fork's parser refuses later vLLM's forms of the same settings (exit 2)."""
    assert needle in parse_error([*RECIPE, *extra], capsys)


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
        (["--sim-vllm-generation", "current"], "unrecognized arguments: --sim-vllm-generation"),  # removed
        (["--sim-crash-after-requests", "0"], "must be >= 1"),
        (["--sim-stall-seconds", "2"], "--sim-stall-seconds needs --sim-stall-after-frames"),
        (["--dtype", "int3"], "argument --dtype: invalid choice"),
        ([MODEL], f"unrecognized arguments: {MODEL}"),  # Boson's parser has no positional model
        (["--voice-presets-refresh-interval", "0.5"], "invalid int value: '0.5'"),
        (["--max-log-len", "x"], "argument --max-log-len: invalid int value"),
        (["--max-model"], "unrecognized arguments: --max-model"),  # no abbreviations, as vLLM
    ],
)
def test_bad_flags_exit_2(extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert needle in parse_error([*RECIPE, *extra], capsys)


@pytest.mark.contract("L1", "L2", "S7")
def test_fork_defaults_are_the_real_parsers() -> None:
    """api_server.py make_arg_parser and vLLM 0.8's EngineArgs: no flag at all is a valid command line."""
    config = parse_args([])
    assert config.model == "facebook/opt-125m" and config.served_model_names == ("facebook/opt-125m",)
    assert config.audio_tokenizer_type == "xcodec_tps25_0215" and config.audio_tokenizer_path is None
    assert config.voice_presets_dir == BUILTIN_PRESETS_DIR
    assert config.voice_presets_refresh_interval == 10 and isinstance(
        config.voice_presets_refresh_interval, int
    )
    assert config.limit_mm_per_prompt == {"audio": 50} and config.audio_limit == 50  # lines 186-189
    assert config.revision is None and not config.enable_request_id_headers and config.chat_template is None


@pytest.mark.contract("L2", "L3")
def test_fork_server_flags() -> None:
    config = parse_args([
        "--model", "/m", "--revision", "abc", "--audio-tokenizer-type", "/t", "--audio-tokenizer-path", "/p",
        "--enable-request-id-headers", "--disable-uvicorn-access-log", "--chat-template", "{{ x }}",
        "--disable-fastapi-docs", "--max-log-len", "100", "--voice-presets-refresh-interval", "3",
        "--uvicorn-log-level", "warning", "--root-path", "/api", "--limit-mm-per-prompt", "image=1",
    ])  # fmt: skip
    assert (config.model, config.revision, config.audio_tokenizer_type) == ("/m", "abc", "/t")
    assert config.audio_tokenizer_path == "/p" and config.enable_request_id_headers
    assert config.chat_template == "{{ x }}" and config.voice_presets_refresh_interval == 3
    assert config.audio_limit == DEFAULT_LIMIT_MM  # given without audio: vLLM's per-modality default


def test_model_flag_and_profiles() -> None:
    config = parse_args(["--model", "/models/higgs", "--sim-profile", "raw"])
    assert config.model == "/models/higgs" and config.served_model_name == "/models/higgs"
    assert config.slowdown == 1.0 and config.audio_limit == 50
    assert parse_args(["--model", MODEL, "--sim-profile", "raw", "--sim-slowdown", "2"]).slowdown == 2.0


def test_bind_host_overrides_host() -> None:
    config = parse_args(["--sim-bind-host", "127.0.0.7", "--model", MODEL, "--host", "0.0.0.0"])
    assert config.host == "127.0.0.7"


def test_ignored_vllm_flags_are_accepted() -> None:
    parse_args(["--model", MODEL, "--enforce-eager", "--trust-remote-code", "--dtype", "bfloat16", "-tp", "1",
                "--no-enable-prefix-caching", "--max-num-batched-tokens", "8192"])  # fmt: skip


def _config(*extra: str) -> SimConfig:
    return parse_args(["--model", MODEL, *extra])


def test_kv_cache_checks() -> None:
    """What vLLM finds after loading the weights (the files before that: test_sim_startup.py)."""
    with pytest.raises(StartupError, match="No available memory for the cache blocks"):
        check_startup(_config("--gpu-memory-utilization", "0.1"))
    with pytest.raises(StartupError, match="larger than the maximum number of tokens"):
        check_startup(_config("--gpu-memory-utilization", "0.16", "--max-model-len", "100000"))
    check_startup(_config("--voice-presets-dir", "/nope"))  # presets never stop the start


@pytest.mark.contract("L5")
def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    assert parse_args([]).api_key == "from-env"
    assert parse_args(["--api-key", "flag"]).api_key == "flag"
    monkeypatch.delenv("VLLM_API_KEY")
    assert parse_args([]).api_key is None


@pytest.mark.contract("L1")
def test_cli_exit_codes(tmp_path: Path) -> None:
    """The real process: argparse errors exit 2, start-up errors exit 1, both with a clear message."""
    bad = run_cli("--model", MODEL, "--limit-mm-per-prompt", '{"audio": 50}')
    assert bad.returncode == 2 and "--limit-mm-per-prompt" in bad.stderr and "Traceback" not in bad.stderr
    positional = run_cli(MODEL)
    assert positional.returncode == 2 and f"unrecognized arguments: {MODEL}" in positional.stderr
    missing = run_cli("--model", str(tmp_path / "no-model-here"), "--port", "1")
    assert (
        missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
