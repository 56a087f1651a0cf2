"""Command line: the real server's flags (in the syntax of Boson's vLLM 0.8 fork) plus ``--sim-*``.

Parsing follows vLLM: argparse, no abbreviations, unknown flags and malformed values exit with
status 2 and an argparse message. Conditions vLLM only finds while starting (a missing local model
path, no memory left for the KV cache) raise :class:`StartupError` (exit status 1).

The parser follows Boson's (boson-ai/higgs-audio-vllm@892184b4,
``vllm/entrypoints/bosonai/api_server.py`` make_arg_parser, lines 580-789, plus vLLM 0.8's
AsyncEngineArgs): no positional model, ``--model`` defaults to ``facebook/opt-125m``,
``--audio-tokenizer-type`` to ``xcodec_tps25_0215``, and without ``--limit-mm-per-prompt`` the
server uses ``{"audio": 50}`` (api_server.py lines 186-189).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from higgs_sim.timing import PROFILES, slowdown_for
from higgs_sim.voices import BUILTIN_PRESETS_DIR  # the real default: the image's own presets

# --sim-fault's kinds (the faults themselves: higgs_sim.content_faults)
CONTENT_FAULTS = ("runaway", "short", "silence", "clip", "truncate")

MM_MODALITIES = ("audio", "image", "video")
GIB = 1024**3
WEIGHT_BYTES = 12.3e9  # 11.5 GB bf16 generation model + 0.8 GB audio tokenizer
KV_BYTES_PER_TOKEN = 112 * 1024
DEFAULT_LIMIT_MM = 1  # vLLM's default per-modality limit when the flag is absent
# Boson's server sets {"audio": 50} when --limit-mm-per-prompt is absent (api_server.py lines 186-189).
FORK_DEFAULT_LIMIT_MM = {"audio": 50}
# Defaults of the real parser (vLLM 0.8 EngineArgs.model; api_server.py --audio-tokenizer-type and
# --voice-presets-refresh-interval).
FORK_DEFAULT_MODEL = "facebook/opt-125m"
FORK_DEFAULT_AUDIO_TOKENIZER = "xcodec_tps25_0215"
FORK_DEFAULT_REFRESH_INTERVAL = 10


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
    # Every streamed response fails once this many frames were sent (status stays 200), as the real
    # server reports an engine error mid-stream.
    error_after_frames: int | None = None
    # --sim-fault: wrong audio (higgs_sim.content_faults) on every Nth generation request
    content_faults: tuple[str, ...] = ()
    content_fault_every: int = 1


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
    profile: str
    slowdown: float
    startup_seconds: float
    shutdown_timeout: float
    seed: int
    trace_file: str | None
    gpu_memory_gib: float
    faults: FaultConfig = field(default_factory=FaultConfig)
    # --audio-tokenizer-path: the API process loads it instead of the type, the engine does not.
    audio_tokenizer_path: str | None = None
    # --revision of the model (a hub id is resolved at it; None: main).
    revision: str | None = None
    # --enable-request-id-headers: the real server adds X-Request-Id to responses only then.
    enable_request_id_headers: bool = False
    # --chat-template: a file path or the template inline (accepted; the simulator renders no prompt).
    chat_template: str | None = None

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


def number_type(
    kind: Callable[[str], Any], lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind`` (int or float), finite, within [lo, hi] (``lo_open``: (lo, hi])."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {text!r}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi:g}, got {text!r}")
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of Boson's server (``vllm.entrypoints.bosonai.api_server``)."""
    p = argparse.ArgumentParser(
        prog="higgs-sim",
        description=(
            "SIMULATOR of Boson AI's Higgs Audio vLLM server (a test double: no GPU, synthetic audio). "
            "Accepts the real server's flags; simulator-only flags start with --sim-."
        ),
        allow_abbrev=False,
    )
    real = p.add_argument_group("server flags (as the real server)")
    # Boson's api_server takes no positional model: a stray MODEL is an unrecognized argument.
    real.add_argument("--model", default=FORK_DEFAULT_MODEL, help="model id or local path")
    real.add_argument("--served-model-name", nargs="+", help="model name(s) clients use; the first is the id")
    real.add_argument(
        "--audio-tokenizer-type",
        default=FORK_DEFAULT_AUDIO_TOKENIZER,
        help="audio tokenizer id or local path (both the API process and the engine load it)",
    )
    real.add_argument(
        "--audio-tokenizer-path",
        help="audio tokenizer path for the API process only (the engine still loads the type)",
    )
    real.add_argument(
        "--limit-mm-per-prompt", type=_limit_mm_fork, help="max inputs per modality, e.g. audio=50"
    )
    real.add_argument("--disable-mm-preprocessor-cache", action="store_true")
    real.add_argument("--revision", help="model revision: a hub id is resolved at it (default: main)")
    real.add_argument("--max-model-len", type=number_type(int, 1), default=8192)
    real.add_argument("--gpu-memory-utilization", type=number_type(float, 0, 1, lo_open=True), default=0.9)
    real.add_argument("--max-num-seqs", type=number_type(int, 1), default=256)
    real.add_argument("--host", default="0.0.0.0")
    real.add_argument("--port", type=number_type(int, 1, 65535), default=8000)
    real.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 (or $VLLM_API_KEY)"
    )
    real.add_argument(
        "--voice-presets-dir",
        default=BUILTIN_PRESETS_DIR,
        help="directory with config.json and WAV files (default: the built-in presets)",
    )
    real.add_argument(
        "--voice-presets-refresh-interval",
        type=number_type(int, 0),
        default=FORK_DEFAULT_REFRESH_INTERVAL,
        help="seconds between re-reads of the presets' config.json",
    )
    real.add_argument(
        "--enable-request-id-headers", action="store_true", help="add X-Request-Id to responses"
    )
    real.add_argument("--chat-template", help="chat template file or inline template (accepted, unused)")
    real.add_argument("--disable-uvicorn-access-log", action="store_true")
    real.add_argument("--disable-fastapi-docs", action="store_true")
    real.add_argument("--max-log-len", type=number_type(int, 0))

    # Common vLLM flags that a chart's extraArgs may carry: validated, accepted, no effect here.
    ignored = p.add_argument_group("vLLM flags accepted and ignored by the simulator")
    for name in ("--tokenizer", "--tokenizer-revision", "--download-dir", "--root-path"):
        ignored.add_argument(name)
    for name in ("--trust-remote-code", "--enforce-eager", "--disable-log-requests", "--disable-log-stats"):
        ignored.add_argument(name, action="store_true")
    ignored.add_argument("--dtype", choices=("auto", "half", "float16", "bfloat16", "float", "float32"))
    ignored.add_argument("--tensor-parallel-size", "-tp", type=number_type(int, 1))
    ignored.add_argument("--seed", type=number_type(int, 0))
    ignored.add_argument("--max-num-batched-tokens", type=number_type(int, 1))
    ignored.add_argument("--swap-space", type=number_type(float, 0))
    ignored.add_argument("--block-size", type=int, choices=(8, 16, 32, 64, 128))
    ignored.add_argument(
        "--uvicorn-log-level", choices=("debug", "info", "warning", "error", "critical", "trace")
    )
    ignored.add_argument("--enable-chunked-prefill", action=argparse.BooleanOptionalAction)
    ignored.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction)

    sim = p.add_argument_group("simulator-only flags")
    sim.add_argument(
        "--sim-profile",
        choices=PROFILES,
        default="calibrated",
        help="calibrated = H100 table x slowdown (default); raw = the H100 table as measured",
    )
    sim.add_argument(
        "--sim-slowdown",
        type=number_type(float, 0, lo_open=True),
        default=None,
        help="multiply step times by this (default: 3.4 for calibrated, 1 for raw)",
    )
    sim.add_argument(
        "--sim-gpu-memory-gib",
        type=number_type(float, 0, lo_open=True),
        default=80.0,
        help="simulated GPU memory (default 80, an H100 80GB)",
    )
    sim.add_argument(
        "--sim-startup-seconds",
        type=number_type(float, 0),
        default=0.0,
        help="simulated weight loading before the port opens",
    )
    sim.add_argument(
        "--sim-shutdown-timeout",
        type=number_type(float, 0),
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
        type=number_type(float, 0, 1),
        default=0.0,
        help="fraction of requests answered with HTTP 500",
    )
    faults.add_argument(
        "--sim-crash-after-requests",
        type=number_type(int, 1),
        help="exit with status 1 after this many requests finished",
    )
    faults.add_argument(
        "--sim-crash-after-seconds",
        type=number_type(float, 0, lo_open=True),
        help="exit with status 1 this long after the server became ready",
    )
    faults.add_argument(
        "--sim-stall-after-frames",
        type=number_type(int, 0),
        help="every response pauses once after this many audio frames were sent",
    )
    faults.add_argument(
        "--sim-stall-seconds",
        type=number_type(float, 0),
        default=None,
        help="length of the stall (default 5)",
    )
    faults.add_argument(
        "--sim-truncate-after-frames",
        type=number_type(int, 0),
        help="every response is cut (connection closed) after this many frames",
    )
    faults.add_argument("--sim-silent-audio", action="store_true", help="all audio samples are zero")
    faults.add_argument(
        "--sim-error-after-frames",
        type=number_type(int, 0),
        help="every streamed response fails mid-stream (status 200, an error in the body) after this many frames",
    )
    faults.add_argument(
        "--sim-fault",
        type=_content_faults,
        default=(),
        metavar="KIND[,KIND...]",
        help="wrong audio for the load test's correctness checks: runaway (2.5x the audio its text takes), "
        "short (a quarter), silence (2 s inside the speech), clip (0.4 s at full scale), truncate (cut "
        "half way); on every --sim-fault-every'th generation request, the kinds in turn",
    )
    faults.add_argument(
        "--sim-fault-every",
        type=number_type(int, 1),
        default=1,
        help="--sim-fault hits the Nth, 2Nth, ... generation request (default 1: every one)",
    )
    return p


def _content_faults(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in CONTENT_FAULTS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose one or more of {', '.join(CONTENT_FAULTS)}, comma-separated"
        )
    return kinds


def parse_args(argv: Sequence[str]) -> SimConfig:
    """Parse the command line; exits with status 2 (argparse) on a bad flag or value."""
    parser = build_parser()
    ns = parser.parse_args(list(argv))

    limits = dict(FORK_DEFAULT_LIMIT_MM if ns.limit_mm_per_prompt is None else ns.limit_mm_per_prompt)
    if ns.sim_stall_after_frames is None and ns.sim_stall_seconds is not None:
        parser.error("--sim-stall-seconds needs --sim-stall-after-frames")

    return SimConfig(
        model=ns.model,
        served_model_names=tuple(ns.served_model_name or [ns.model]),
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
            error_after_frames=ns.sim_error_after_frames,
            content_faults=ns.sim_fault,
            content_fault_every=ns.sim_fault_every,
        ),
        audio_tokenizer_path=ns.audio_tokenizer_path,
        revision=ns.revision,
        enable_request_id_headers=ns.enable_request_id_headers,
        chat_template=ns.chat_template,
    )


def check_startup(config: SimConfig) -> None:
    """What vLLM finds after loading the weights: no room for the KV cache.

    The files the server opens before that (model, audio tokenizer, semantic teacher) are checked
    by :mod:`higgs_sim.startup`, which calls this last.
    """
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
