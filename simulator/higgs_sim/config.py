"""Command line: the real server's flags (in the syntax of the emulated vLLM generation) plus ``--sim-*``.

Parsing follows vLLM: argparse, no abbreviations, unknown flags and malformed values exit with
status 2 and an argparse message. Conditions vLLM only finds while starting (a missing local model
path, no memory left for the KV cache) raise :class:`StartupError` (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from higgs_sim.timing import PROFILES, slowdown_for

GENERATIONS = ("fork", "current")
MM_MODALITIES = ("audio", "image", "video")
GIB = 1024**3
WEIGHT_BYTES = 12.3e9  # 11.5 GB bf16 generation model + 0.8 GB audio tokenizer
KV_BYTES_PER_TOKEN = 112 * 1024
DEFAULT_LIMIT_MM = 1  # vLLM's default per-modality limit when the flag is absent


class StartupError(Exception):
    """The server cannot start with this configuration (exit status 1, like vLLM's engine errors)."""


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0
    crash_after_requests: int | None = None
    crash_after_seconds: float | None = None
    stall_after_frames: int | None = None
    stall_seconds: float = 5.0
    truncate_after_frames: int | None = None
    silent_audio: bool = False


@dataclass(frozen=True)
class SimConfig:
    model: str
    served_model_names: tuple[str, ...]
    audio_tokenizer_type: str | None
    limit_mm_per_prompt: dict[str, int]
    max_model_len: int
    gpu_memory_utilization: float
    max_num_seqs: int
    host: str
    port: int
    api_key: str | None
    voice_presets_dir: str | None
    voice_presets_refresh_interval: float
    vllm_generation: str
    profile: str
    slowdown: float
    startup_seconds: float
    shutdown_timeout: float
    seed: int
    trace_file: str | None
    gpu_memory_gib: float
    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def served_model_name(self) -> str:
        return self.served_model_names[0]

    @property
    def kv_budget_tokens(self) -> int:
        """Tokens of KV cache that fit in the memory vLLM may use, after the weights."""
        free = self.gpu_memory_utilization * self.gpu_memory_gib * GIB - WEIGHT_BYTES
        return max(int(free // KV_BYTES_PER_TOKEN), 0)

    @property
    def audio_limit(self) -> int:
        return self.limit_mm_per_prompt.get("audio", DEFAULT_LIMIT_MM)


# --- value types: each raises ArgumentTypeError so argparse prints "argument --x: ..." and exits 2 ---


def _number(kind: Callable[[str], float | int], lo: float | None, hi: float | None, lo_open: bool = False):
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo}, got {text!r}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _limit_mm_fork(text: str) -> dict[str, int]:
    """vLLM 0.8 syntax: ``audio=50`` or ``audio=50,image=1``."""
    if text.lstrip().startswith("{"):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected key=value pairs such as 'audio=50' "
            "(the JSON form is current vLLM's syntax, not the 0.8 fork's)"
        )
    limits: dict[str, int] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: expected key=value pairs such as 'audio=50'"
            )
        limits[key] = _mm_count(key, value.strip(), text)
    return limits


def _limit_mm_current(text: str) -> dict[str, int]:
    """Current vLLM syntax: a JSON object such as ``{"audio": 50}``."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a JSON object such as '{{\"audio\": 50}}' "
            "(the key=value form is the 0.8 fork's syntax, not current vLLM's)"
        ) from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a JSON object")
    return {str(k): _mm_count(str(k), v, text) for k, v in parsed.items()}


def _mm_count(key: str, value: object, text: str) -> int:
    if key not in MM_MODALITIES:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: unknown modality {key!r} (expected one of {', '.join(MM_MODALITIES)})"
        )
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"invalid value {text!r}: limit for {key!r} must be an integer >= 0")


def build_parser(generation: str) -> argparse.ArgumentParser:
    """The argument parser of the emulated server generation (``fork`` or ``current``)."""
    p = argparse.ArgumentParser(
        prog="higgs-sim",
        description=(
            "SIMULATOR of Boson AI's Higgs Audio vLLM server (a test double: no GPU, synthetic audio). "
            "Accepts the real server's flags; simulator-only flags start with --sim-."
        ),
        allow_abbrev=False,
    )
    real = p.add_argument_group("server flags (as the real server)")
    real.add_argument("model_positional", nargs="?", metavar="MODEL", help="model id or local path")
    real.add_argument("--model", help="model id or local path (alternative to the positional MODEL)")
    real.add_argument("--served-model-name", nargs="+", help="model name(s) clients use; the first is the id")
    real.add_argument("--audio-tokenizer-type", help="audio tokenizer id or local path")
    if generation == "fork":
        real.add_argument(
            "--limit-mm-per-prompt", type=_limit_mm_fork, help="max inputs per modality, e.g. audio=50"
        )
        real.add_argument("--disable-mm-preprocessor-cache", action="store_true")
    else:
        real.add_argument(
            "--limit-mm-per-prompt",
            type=_limit_mm_current,
            help="max inputs per modality, e.g. '{\"audio\": 50}'",
        )
        for modality in MM_MODALITIES:
            real.add_argument(
                f"--limit-mm-per-prompt.{modality}",
                dest=f"limit_mm_{modality}",
                type=_number(int, 0, None),
                help=f"max {modality} inputs per prompt",
            )
        real.add_argument("--mm-processor-cache-gb", type=_number(float, 0, None))
    real.add_argument("--max-model-len", type=_number(int, 1, None), default=8192)
    real.add_argument("--gpu-memory-utilization", type=_number(float, 0, 1, lo_open=True), default=0.9)
    real.add_argument("--max-num-seqs", type=_number(int, 1, None), default=256)
    real.add_argument("--host", default="0.0.0.0")
    real.add_argument("--port", type=_number(int, 1, 65535), default=8000)
    real.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 (or $VLLM_API_KEY)"
    )
    real.add_argument("--voice-presets-dir", help="directory with config.json and WAV files")
    real.add_argument("--voice-presets-refresh-interval", type=_number(float, 0, None), default=300.0)

    # Common vLLM flags that a chart's extraArgs may carry: validated, accepted, no effect here.
    ignored = p.add_argument_group("vLLM flags accepted and ignored by the simulator")
    for name in ("--tokenizer", "--revision", "--tokenizer-revision", "--download-dir", "--root-path"):
        ignored.add_argument(name)
    for name in ("--trust-remote-code", "--enforce-eager", "--disable-log-requests", "--disable-log-stats"):
        ignored.add_argument(name, action="store_true")
    ignored.add_argument("--dtype", choices=("auto", "half", "float16", "bfloat16", "float", "float32"))
    ignored.add_argument("--tensor-parallel-size", "-tp", type=_number(int, 1, None))
    ignored.add_argument("--seed", type=_number(int, 0, None))
    ignored.add_argument("--max-num-batched-tokens", type=_number(int, 1, None))
    ignored.add_argument("--swap-space", type=_number(float, 0, None))
    ignored.add_argument("--block-size", type=int, choices=(8, 16, 32, 64, 128))
    ignored.add_argument(
        "--uvicorn-log-level", choices=("debug", "info", "warning", "error", "critical", "trace")
    )
    ignored.add_argument("--enable-chunked-prefill", action=argparse.BooleanOptionalAction)
    ignored.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction)

    sim = p.add_argument_group("simulator-only flags")
    sim.add_argument(
        "--sim-vllm-generation",
        choices=GENERATIONS,
        default="fork",
        help="flag syntax and metric names to emulate: fork = Boson's vLLM 0.8 fork (default), "
        "current = vLLM 0.3x",
    )
    sim.add_argument(
        "--sim-profile",
        choices=PROFILES,
        default="calibrated",
        help="calibrated = H100 table x slowdown (default); raw = the H100 table as measured",
    )
    sim.add_argument(
        "--sim-slowdown",
        type=_number(float, 0, None, lo_open=True),
        default=None,
        help="multiply step times by this (default: 3.4 for calibrated, 1 for raw)",
    )
    sim.add_argument(
        "--sim-gpu-memory-gib",
        type=_number(float, 0, None, lo_open=True),
        default=80.0,
        help="simulated GPU memory (default 80, an H100 80GB)",
    )
    sim.add_argument(
        "--sim-startup-seconds",
        type=_number(float, 0, None),
        default=0.0,
        help="simulated weight loading before the port opens",
    )
    sim.add_argument(
        "--sim-shutdown-timeout",
        type=_number(float, 0, None),
        default=120.0,
        help="on SIGTERM, seconds in-flight requests get to finish (default 120, like uvicorn's drain; "
        "the pod's grace period bounds it)",
    )
    sim.add_argument("--sim-seed", type=int, default=0, help="seed for audio and fault draws")
    sim.add_argument("--sim-bind-host", default=None, help="listen on this address (overrides --host)")
    sim.add_argument("--sim-trace-file", default=None, help="append one JSON line per finished request")
    faults = p.add_argument_group("fault injection")
    faults.add_argument(
        "--sim-error-rate",
        type=_number(float, 0, 1),
        default=0.0,
        help="fraction of requests answered with HTTP 500",
    )
    faults.add_argument(
        "--sim-crash-after-requests",
        type=_number(int, 1, None),
        help="exit with status 1 after this many requests finished",
    )
    faults.add_argument(
        "--sim-crash-after-seconds",
        type=_number(float, 0, None, lo_open=True),
        help="exit with status 1 this long after the server became ready",
    )
    faults.add_argument(
        "--sim-stall-after-frames",
        type=_number(int, 0, None),
        help="every response pauses once after this many audio frames were sent",
    )
    faults.add_argument(
        "--sim-stall-seconds",
        type=_number(float, 0, None),
        default=None,
        help="length of the stall (default 5)",
    )
    faults.add_argument(
        "--sim-truncate-after-frames",
        type=_number(int, 0, None),
        help="every response is cut (connection closed) after this many frames",
    )
    faults.add_argument("--sim-silent-audio", action="store_true", help="all audio samples are zero")
    return p


def _generation_of(argv: Sequence[str]) -> str:
    pre = argparse.ArgumentParser(prog="higgs-sim", add_help=False, allow_abbrev=False)
    pre.add_argument("--sim-vllm-generation", choices=GENERATIONS, default="fork")
    known, _ = pre.parse_known_args(list(argv))
    return known.sim_vllm_generation


def parse_args(argv: Sequence[str]) -> SimConfig:
    """Parse the command line; exits with status 2 (argparse) on a bad flag or value."""
    generation = _generation_of(argv)
    parser = build_parser(generation)
    ns = parser.parse_args(list(argv))

    if ns.model and ns.model_positional and ns.model != ns.model_positional:
        parser.error(
            f"the model is given twice: {ns.model_positional!r} (positional) and --model {ns.model!r}"
        )
    model = ns.model or ns.model_positional
    if not model:
        parser.error("the model is required: pass it as the positional MODEL or with --model")

    limits = dict(ns.limit_mm_per_prompt or {})
    if generation == "current":
        for modality in MM_MODALITIES:
            value = getattr(ns, f"limit_mm_{modality}")
            if value is not None:
                limits[modality] = value
    if ns.sim_stall_after_frames is None and ns.sim_stall_seconds is not None:
        parser.error("--sim-stall-seconds needs --sim-stall-after-frames")

    return SimConfig(
        model=model,
        served_model_names=tuple(ns.served_model_name or [model]),
        audio_tokenizer_type=ns.audio_tokenizer_type,
        limit_mm_per_prompt=limits,
        max_model_len=ns.max_model_len,
        gpu_memory_utilization=ns.gpu_memory_utilization,
        max_num_seqs=ns.max_num_seqs,
        host=ns.sim_bind_host or ns.host,
        port=ns.port,
        api_key=ns.api_key or os.environ.get("VLLM_API_KEY") or None,
        voice_presets_dir=ns.voice_presets_dir,
        voice_presets_refresh_interval=ns.voice_presets_refresh_interval,
        vllm_generation=generation,
        profile=ns.sim_profile,
        slowdown=slowdown_for(ns.sim_profile, ns.sim_slowdown),
        startup_seconds=ns.sim_startup_seconds,
        shutdown_timeout=ns.sim_shutdown_timeout,
        seed=ns.sim_seed,
        trace_file=ns.sim_trace_file,
        gpu_memory_gib=ns.sim_gpu_memory_gib,
        faults=FaultConfig(
            error_rate=ns.sim_error_rate,
            crash_after_requests=ns.sim_crash_after_requests,
            crash_after_seconds=ns.sim_crash_after_seconds,
            stall_after_frames=ns.sim_stall_after_frames,
            stall_seconds=5.0 if ns.sim_stall_seconds is None else ns.sim_stall_seconds,
            truncate_after_frames=ns.sim_truncate_after_frames,
            silent_audio=ns.sim_silent_audio,
        ),
    )


def check_startup(config: SimConfig) -> None:
    """What vLLM finds while loading: a missing local model path, or no room for the KV cache."""
    for what, path in (("model", config.model), ("audio tokenizer", config.audio_tokenizer_type)):
        if path and os.path.isabs(path) and not os.path.exists(path):
            raise StartupError(
                f"{what} path {path!r} does not exist (an absolute path is read as a local directory; "
                "check the cache volume mount and the download step)"
            )
    if config.voice_presets_dir and not os.path.isdir(config.voice_presets_dir):
        raise StartupError(f"--voice-presets-dir {config.voice_presets_dir!r} is not a directory")
    budget = config.kv_budget_tokens
    if budget <= 0:
        raise StartupError(
            "No available memory for the cache blocks: --gpu-memory-utilization "
            f"{config.gpu_memory_utilization} of {config.gpu_memory_gib:g} GiB does not cover the "
            f"{WEIGHT_BYTES / 1e9:.1f} GB of weights. Try increasing --gpu-memory-utilization."
        )
    if budget < config.max_model_len:
        raise StartupError(
            f"The model's max seq len ({config.max_model_len}) is larger than the maximum number of tokens "
            f"that can be stored in KV cache ({budget}). Try increasing --gpu-memory-utilization or "
            "decreasing --max-model-len."
        )
