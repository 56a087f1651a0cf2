"""The load test's command-line options (Locust's init_command_line_parser): the group "Higgs Audio load
test". Locust-free: the parser is handed in by the listener (higgs_load.listeners)."""

from __future__ import annotations

import os
from typing import Any

from higgs_load.capacity_options import add_capacity_options
from higgs_load.metrics import STEP_WARMUP_FRACTION
from higgs_load.payloads import DEFAULT_MIXES, DEFAULT_PROMPTS, SERVER_APIS
from higgs_load.plans import SHAPES
from higgs_load.sessions import add_session_options

DEFAULT_MODEL = "higgs-audio-v2-generation-3B-base"


class _EnvGroup:
    """Every option also reads LOCUST_<NAME> (e.g. LOCUST_SLO_TTFA_MS), like Locust's own, so a
    ConfigMap can carry them (charts/higgs-loadtest), and shows in the web UI's swarm form (an
    argument group bypasses LocustArgumentParser.add_argument, which would mark it so)."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def add_argument(self, flag: str, **kw: Any) -> Any:
        kw.setdefault("env_var", "LOCUST_" + flag.lstrip("-").upper().replace("-", "_"))
        action = self.group.add_argument(flag, **kw)
        action.include_in_web_ui = True
        action.is_secret = flag == "--api-key"
        action.is_required = action.is_multiple = False
        return action


def add_options(parser: Any) -> None:
    """Add our options to Locust's parser (a LocustArgumentParser: configargparse, with env_var and the
    web UI's per-action marks, hence Any here)."""
    g = _EnvGroup(parser.add_argument_group("Higgs Audio load test"))
    g.add_argument("--model", default=DEFAULT_MODEL, help="served model name sent in each request")
    g.add_argument(
        "--api-key", default=os.environ.get("HIGGS_API_KEY", ""), help="Bearer token (or HIGGS_API_KEY)"
    )
    g.add_argument(
        "--server-api",
        default="auto",
        choices=("auto", *SERVER_APIS),
        help="the server's API: boson (Boson's vLLM fork), omni (vLLM-Omni), or auto: detected at test "
        "start from GET /v1/audio/voices (a JSON array: boson; an object with voices: omni), else /health",
    )
    g.add_argument(
        "--mix",
        default="",
        help="request kinds and weights: stream, chat, speech_pcm, speech_wav, speech_mp3, clone (Boson's "
        "fork); speech_sse, speech_pcm, speech_wav, speech_mp3 (vLLM-Omni). Default: "
        f"{DEFAULT_MIXES['boson']} (boson), {DEFAULT_MIXES['omni']} (omni)",
    )
    g.add_argument(
        "--prompts", default=str(DEFAULT_PROMPTS), help="JSONL prompt file (text, length, voice, ...)"
    )
    g.add_argument("--prompt-lengths", default="", help="only prompts of these lengths, e.g. short,medium")
    g.add_argument(
        "--voice",
        default="",
        help="voice preset of every speech request, one of GET /v1/audio/voices (default: a listed voice "
        "drawn per request; a prompt's own voice wins); chat sends no preset. vLLM-Omni: an uploaded "
        "voice (default: none, the model's own voice)",
    )
    g.add_argument(
        "--max-tokens", type=int, default=None, help="max_tokens per request (vLLM-Omni: max_new_tokens)"
    )
    g.add_argument(
        "--temperature", type=float, default=None, help="sampling temperature per request (not vLLM-Omni)"
    )
    g.add_argument("--seed", type=int, default=None, help="sampling seed sent with each request")
    g.add_argument(
        "--max-audio-factor",
        type=float,
        default=3.0,
        help="implausible_length: audio longer than this many times its text's length at 15 characters "
        "per second (and than 5 s) fails the request; 0 turns the check off",
    )
    g.add_argument("--slo-ttfa-ms", type=float, default=None, help="SLO: time to first audio, ms")
    g.add_argument("--slo-rtf", type=float, default=None, help="SLO: real-time factor (wall / audio)")
    g.add_argument("--slo-underrun-s", type=float, default=None, help="SLO: allowed stall seconds per stream")
    g.add_argument(
        "--prebuffer-ms",
        type=float,
        default=0.0,
        help="the listener's pre-buffer: ms of audio buffered before playback starts; underruns (and "
        "--slo-underrun-s) are judged at it (default 0: playback starts at the first audio)",
    )
    g.add_argument("--raw-out", default="", help="raw per-request JSONL (default REPORT_DIR/raw.jsonl)")
    g.add_argument(
        "--report-dir",
        default="",
        help="where summary.json/.md and plots go (default: reports/loadtest-<UTC time>/ under the "
        "working directory, one per run)",
    )
    g.add_argument("--no-plots", action="store_true", default=False, help="skip the PNG plots")
    g.add_argument(
        "--fail-on", default="", help="gates, e.g. 'ttfa_p99_ms<=800,error_rate<=0.01' (exit 3 if missed)"
    )
    g.add_argument(
        "--request-timeout", type=float, default=120.0, help="seconds without bytes before 'timeout'"
    )
    g.add_argument("--shape", default="constant", choices=SHAPES, help=" | ".join(SHAPES))
    g.add_argument("--step-max-users", type=int, default=8, help="step/sweep: last level (1, 2, 4, ... N)")
    g.add_argument("--levels", default="", help="step/sweep: explicit user levels, e.g. 1,2,4,8,16")
    g.add_argument(
        "--step-hold",
        type=float,
        default=None,
        help="step/sweep: seconds each level is held (default and minimum: 3 times the longest request "
        "the prompts can make at real time, 15 characters per audio second, capped by --max-tokens)",
    )
    g.add_argument(
        "--step-warmup",
        type=float,
        default=STEP_WARMUP_FRACTION,
        help="step/sweep: share of each level left out of its figures as warm-up (0.33)",
    )
    g.add_argument(
        "--arrival-rate", type=float, default=1.0, help="poisson: requests per second (all workers)"
    )
    g.add_argument(
        "--max-lateness", type=float, default=1.0, help="poisson: drop an arrival later than this (s)"
    )
    g.add_argument("--min-good-share", type=float, default=0.95, help="sweep: share of requests meeting SLOs")
    g.add_argument("--sweep-continue", action="store_true", default=False, help="sweep: run every level")
    g.add_argument(
        "--replicas", type=int, default=1, help="serving replicas behind --host (per-replica figures)"
    )
    add_session_options(g)  # --session-rate, --session-turns, --think-time, --max-sessions
    add_capacity_options(g)  # --slo-target, --capacity-max-streams/-min-requests, --higgsdeployment
