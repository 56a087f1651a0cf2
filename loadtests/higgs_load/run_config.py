"""The run's configuration: parsed options -> RunConfig (build_config), then what the server is
(with_server: its API, hence the default mix, and its voices). Locust-free."""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from higgs_load.capacity_options import CapacityConfig, capacity_config
from higgs_load.metrics import SLO, STEP_WARMUP_FRACTION, min_step_hold_s
from higgs_load.payloads import (
    API_KINDS,
    API_NAMES,
    DEFAULT_MIXES,
    SERVER_APIS,
    SPEECH_FORMATS,
    Prompt,
    Settings,
    check_kinds_served,
    load_prompts,
    load_reference,
    parse_mix,
    runnable_kinds,
)
from higgs_load.plans import ConstantPlan, StepPlan, doubling_levels, expected_audio_s, parse_levels
from higgs_load.sessions import SessionConfig, session_config
from higgs_load.thresholds import Gate, parse_gates
from higgs_load.voices import (
    VOICES_PATH,
    VoiceError,
    VoiceList,
    check_uploaded_voice,
    check_voices,
    detect_api,
    fetch_voice_list,
)

log = logging.getLogger("higgs_load")
DEFAULT_HOST = "http://127.0.0.1:8000"  # --host when none is given (HiggsUser.host)
REPORTS_DIR = Path("reports")  # --report-dir's default parent, under the working directory (git-ignored)
DRAIN_MIN_S = 10.0  # the end of a run waits at least this long for the requests in flight


def default_report_dir(now: float | None = None) -> Path:
    """reports/loadtest-<UTC time>: a new directory per run, under the working directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return REPORTS_DIR / f"loadtest-{stamp}"


def drain_s(cfg: RunConfig) -> float:
    """How long the end of a step or sweep run waits for its requests in flight (then they are cut and
    not recorded): twice the prompts' longest request at real time, at least 10 s, at most
    --request-timeout."""
    return min(cfg.request_timeout, max(DRAIN_MIN_S, 2 * cfg.longest_request_s))


def longest_request_s(prompts: list[Prompt], max_tokens: int | None) -> float:
    """The longest audio (hence request, at real time) the prompts can make: a prompt's own max_tokens
    wins over --max-tokens, as in the requests."""
    return max(
        (
            expected_audio_s(len(p.text), p.max_tokens if p.max_tokens is not None else max_tokens)
            for p in prompts
        ),
        default=0.0,
    )


N = TypeVar("N", int, float)


@dataclass
class RunConfig:
    """Everything a user needs, built once per process from the parsed options."""

    mix: dict[str, int]  # empty until the server's API is known: its default mix (DEFAULT_MIXES)
    prompts: list[Prompt]
    settings: Settings
    slo: SLO
    api_key: str
    request_timeout: float
    reference: tuple[str, str] | None
    shape: str
    plan: StepPlan | ConstantPlan
    spawn_rate: float
    arrival_rate: float
    max_lateness: float
    pool_users: int
    gates: list[Gate] = field(default_factory=list)
    min_good_share: float = 0.95
    sweep_continue: bool = False
    replicas: int = 1
    max_audio_factor: float = 3.0
    prebuffer_s: float = 0.0  # --prebuffer-ms / 1000: the listener's pre-buffer (higgs_load.playback)
    report_dir: Path = REPORTS_DIR / "loadtest"
    raw_out: Path = REPORTS_DIR / "loadtest" / "raw.jsonl"
    step_warmup: float = STEP_WARMUP_FRACTION  # share of each step left out of its figures
    longest_request_s: float = 0.0  # the prompts' longest expected request (s of audio, at real time)
    plots: bool = True
    server_api: str = "auto"  # as asked; settings.api is the one in use once resolved
    api_detected: str = ""  # how --server-api auto decided
    sessions: SessionConfig | None = None  # --shape sessions (higgs_load.sessions)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)  # --shape capacity, --higgsdeployment


def _optional_number(name: str, value: object, kind: Callable[[Any], N]) -> N | None:
    flag = "--" + name.replace("_", "-")
    if value is None or value == "":
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{flag} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if number < 0:
        raise ValueError(f"{flag} must be >= 0, got {value}")
    return number


def build_config(o: argparse.Namespace) -> RunConfig:
    """Parsed options -> RunConfig; ValueError with the option's name on bad input."""
    mix = parse_mix(o.mix) if o.mix.strip() else {}
    if o.server_api not in ("auto", *SERVER_APIS):
        raise ValueError(f"--server-api must be auto, boson or omni, got {o.server_api!r}")
    lengths = {x.strip() for x in o.prompt_lengths.split(",") if x.strip()} or None
    prompts = load_prompts(Path(o.prompts), lengths)
    # Options whose default is None arrive as strings from the web UI's form: coerce them here (and leave
    # the parsed options as they are, so the next form is read the same way).
    slo_ttfa_ms = _optional_number("slo_ttfa_ms", o.slo_ttfa_ms, float)
    slo_rtf = _optional_number("slo_rtf", o.slo_rtf, float)
    slo_underrun_s = _optional_number("slo_underrun_s", o.slo_underrun_s, float)
    max_tokens = _optional_number("max_tokens", o.max_tokens, int)
    temperature = _optional_number("temperature", o.temperature, float)
    seed = _optional_number("seed", o.seed, int)
    if o.request_timeout <= 0:
        raise ValueError(f"--request-timeout must be > 0, got {o.request_timeout}")
    if o.replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {o.replicas}")
    if o.max_audio_factor < 0:
        raise ValueError(f"--max-audio-factor must be >= 0, got {o.max_audio_factor}")
    users = int(o.num_users or 1)
    run_time = float(o.run_time) if o.run_time else None
    longest = longest_request_s(prompts, max_tokens)
    step_warmup = float(o.step_warmup)
    if o.shape in ("step", "sweep"):
        levels = parse_levels(o.levels) if o.levels else doubling_levels(o.step_max_users)
        if not 0 < step_warmup < 1:
            raise ValueError(f"--step-warmup must be a fraction between 0 and 1, got {o.step_warmup}")
        minimum = math.ceil(min_step_hold_s(longest, step_warmup))
        hold = _optional_number("step_hold", o.step_hold, float)
        if hold is not None and hold < minimum:
            raise ValueError(
                f"--step-hold {hold:g} is too short for the prompts: their longest request makes "
                f"{longest:.1f} s of audio, so a level needs at least {minimum} s (a {step_warmup:.2f} "
                f"warm-up that outlasts one request, then two of them measured); raise --step-hold to "
                f">= {minimum}, or use shorter prompts (--prompt-lengths, --max-tokens)"
            )
        plan: StepPlan | ConstantPlan = StepPlan(tuple(levels), hold if hold is not None else float(minimum))
        spawn_rate = float(o.spawn_rate) if o.spawn_rate else float(max(levels))
    else:
        plan = ConstantPlan(users, run_time)
        spawn_rate = float(o.spawn_rate or users)
    if o.shape == "poisson" and o.arrival_rate <= 0:
        raise ValueError(f"--arrival-rate must be > 0, got {o.arrival_rate}")
    report_dir = Path(o.report_dir) if o.report_dir else default_report_dir()
    return RunConfig(
        mix=mix,
        prompts=prompts,
        settings=Settings(
            o.model,
            o.voice or None,
            max_tokens,
            temperature,
            seed,
            api=o.server_api if o.server_api in SERVER_APIS else "boson",
        ),
        slo=SLO(slo_ttfa_ms, slo_rtf, slo_underrun_s),
        api_key=o.api_key,
        request_timeout=o.request_timeout,
        reference=load_reference() if "clone" in mix else None,
        shape=o.shape,
        plan=plan,
        spawn_rate=spawn_rate,
        arrival_rate=o.arrival_rate,
        max_lateness=o.max_lateness,
        pool_users=users,
        gates=parse_gates(o.fail_on),
        min_good_share=o.min_good_share,
        sweep_continue=o.sweep_continue,
        replicas=o.replicas,
        max_audio_factor=o.max_audio_factor,
        prebuffer_s=(_optional_number("prebuffer_ms", getattr(o, "prebuffer_ms", None), float) or 0.0) / 1000,
        report_dir=report_dir,
        raw_out=Path(o.raw_out) if o.raw_out else report_dir / "raw.jsonl",
        plots=not o.no_plots,
        server_api=o.server_api,
        step_warmup=step_warmup,
        longest_request_s=longest,
        sessions=session_config(o) if o.shape == "sessions" else None,
        capacity=capacity_config(o),
    )


def with_server(
    cfg: RunConfig, host: str, tags: list[str] | None = None, exclude_tags: list[str] | None = None
) -> RunConfig:
    """Resolve the server's API (--server-api auto: detected from the server), its default mix, check
    that it serves the kinds that may run, and read its voices when a voice must be checked (a
    ValueError names what is wrong)."""
    timeout = min(cfg.request_timeout, 30.0)
    api, listing, how = cfg.server_api, None, ""
    if api not in SERVER_APIS:
        api, listing, how = _detect(cfg, host, timeout, tags, exclude_tags)
    mix = cfg.mix or parse_mix(DEFAULT_MIXES[api])
    check_kinds_served(api, runnable_kinds(mix, tags, exclude_tags), how)
    if api == "omni" and cfg.settings.temperature is not None:
        raise ValueError(
            "--temperature cannot be sent to vLLM-Omni: it takes no per-request "
            "sampling; its deploy YAML's stage-0 sampling applies (docs/server-contract-omni.md OR2)"
        )
    cfg = replace(
        cfg,
        mix=mix,
        settings=replace(cfg.settings, api=api),
        reference=cfg.reference or (load_reference() if "clone" in mix else None),
        api_detected=how,
    )
    url = host.rstrip("/") + VOICES_PATH
    if api == "omni":
        # No voice unless --voice names an uploaded one (the model's own voice, OR5); the prompts'
        # voices name Boson's presets and are not sent.
        if not cfg.settings.voice:
            return cfg
        listing = listing or fetch_voice_list(host, cfg.api_key, timeout)
        check_uploaded_voice(listing.names, cfg.settings.voice, url)
        return replace(cfg, settings=replace(cfg.settings, voices=tuple(listing.names)))
    wanted = [("--voice", cfg.settings.voice)] if cfg.settings.voice else []
    wanted += [("the prompts' voice", p.voice) for p in cfg.prompts if p.voice]
    speech = runnable_kinds(mix, tags, exclude_tags) & set(SPEECH_FORMATS)
    if not speech and not wanted:
        return cfg
    listing = listing or fetch_voice_list(host, cfg.api_key, timeout)
    check_voices(listing.names, wanted, url)
    return replace(cfg, settings=replace(cfg.settings, voices=tuple(listing.names)))


def _detect(
    cfg: RunConfig, host: str, timeout: float, tags: list[str] | None, exclude_tags: list[str] | None
) -> tuple[str, VoiceList | None, str]:
    """--server-api auto: ask the server (higgs_load.voices.detect_api). When it cannot tell (not up
    yet, say) and the kinds of an explicit --mix are served by one of the two servers only, that one."""
    try:
        api, listing, how = detect_api(host, cfg.api_key, timeout)
    except VoiceError as exc:
        kinds = runnable_kinds(cfg.mix, tags, exclude_tags)
        serving = [a for a in SERVER_APIS if kinds and kinds <= set(API_KINDS[a])]
        if len(serving) != 1:
            raise
        api = serving[0]
        how = f"not detected; the kinds of --mix ({', '.join(sorted(kinds))}) run on {API_NAMES[api]} only"
        log.warning("%s; assuming %s: the kinds to run are only its", exc, API_NAMES[api])
        return api, None, how
    log.info("server API: %s (%s)", API_NAMES[api], how)
    return api, listing, how
