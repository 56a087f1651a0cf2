"""The Locust side: options, the user, the load shape, record collection across workers, the report.

This is the only higgs_load module that imports Locust (and so gevent's monkey-patching); the
measurement, metrics and report modules stay importable without it.
"""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust import FastHttpUser, LoadTestShape, events, tag, task  # isort: skip

import json
import logging
import os
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gevent
import gevent.event
from geventhttpclient.url import URL
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from higgs_load.audio import AudioError
from higgs_load.body_reader import BodyReader
from higgs_load.measure import Measurement, measurement_for
from higgs_load.metrics import SLO, Step, plausible_audio_limit_s, summarize
from higgs_load.payloads import (
    API_KINDS,
    API_NAMES,
    DEFAULT_MIXES,
    DEFAULT_PROMPTS,
    KIND_TAGS,
    SERVER_APIS,
    SPEECH_FORMATS,
    Prompt,
    Settings,
    check_kinds_served,
    load_prompts,
    load_reference,
    parse_mix,
    request_for,
    runnable_kinds,
    weighted_choice,
)
from higgs_load.plans import SHAPES, ConstantPlan, PoissonArrivals, StepPlan, doubling_levels, parse_levels
from higgs_load.records import RequestRecord
from higgs_load.report import build_summary, write_report
from higgs_load.thresholds import EXIT_THRESHOLD_MISSED, evaluate, parse_gates
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
RECORDS_MESSAGE = "higgs_records"
FLUSH_INTERVAL_S = 0.5
FINAL_BATCH_WAIT_S = 10.0
DEFAULT_MODEL = "higgs-audio-v2-generation-3B-base"


class AudioRequestFailure(Exception):
    """Shown in Locust's failures table; the message is the failure class only, so rows group by class."""


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    group = parser.add_argument_group("Higgs Audio load test")

    class _EnvGroup:
        """Every option also reads LOCUST_<NAME> (e.g. LOCUST_SLO_TTFA_MS), like Locust's own, so a
        ConfigMap can carry them (charts/higgs-loadtest), and shows in the web UI's swarm form (an
        argument group bypasses LocustArgumentParser.add_argument, which would mark it so)."""

        def add_argument(self, flag: str, **kw):
            kw.setdefault("env_var", "LOCUST_" + flag.lstrip("-").upper().replace("-", "_"))
            action = group.add_argument(flag, **kw)
            action.include_in_web_ui = True
            action.is_secret = flag == "--api-key"
            action.is_required = action.is_multiple = False
            return action

    g = _EnvGroup()
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
    g.add_argument("--raw-out", default="", help="raw per-request JSONL (default REPORT_DIR/raw.jsonl)")
    g.add_argument("--report-dir", default="loadtest-report", help="where summary.json/.md and plots go")
    g.add_argument("--no-plots", action="store_true", default=False, help="skip the PNG plots")
    g.add_argument(
        "--fail-on", default="", help="gates, e.g. 'ttfa_p99_ms<=800,error_rate<=0.01' (exit 3 if missed)"
    )
    g.add_argument(
        "--request-timeout", type=float, default=120.0, help="seconds without bytes before 'timeout'"
    )
    g.add_argument("--shape", default="constant", choices=SHAPES, help="constant | step | poisson | sweep")
    g.add_argument("--step-max-users", type=int, default=8, help="step/sweep: last level (1, 2, 4, ... N)")
    g.add_argument("--levels", default="", help="step/sweep: explicit user levels, e.g. 1,2,4,8,16")
    g.add_argument("--step-hold", type=float, default=30.0, help="step/sweep: seconds each level is held")
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
    gates: list = field(default_factory=list)
    min_good_share: float = 0.95
    sweep_continue: bool = False
    replicas: int = 1
    max_audio_factor: float = 3.0
    report_dir: Path = Path("loadtest-report")
    raw_out: Path = Path("loadtest-report/raw.jsonl")
    plots: bool = True
    server_api: str = "auto"  # as asked; settings.api is the one in use once resolved
    api_detected: str = ""  # how --server-api auto decided


OPTIONAL_NUMBERS: dict[str, type] = {
    "slo_ttfa_ms": float,
    "slo_rtf": float,
    "slo_underrun_s": float,
    "max_tokens": int,
    "temperature": float,
    "seed": int,
}


def _optional_number(name: str, value: object, kind: type) -> float | int | None:
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


def build_config(o) -> RunConfig:
    """Parsed options -> RunConfig; ValueError with the option's name on bad input."""
    mix = parse_mix(o.mix) if o.mix.strip() else {}
    if o.server_api not in ("auto", *SERVER_APIS):
        raise ValueError(f"--server-api must be auto, boson or omni, got {o.server_api!r}")
    lengths = {x.strip() for x in o.prompt_lengths.split(",") if x.strip()} or None
    prompts = load_prompts(Path(o.prompts), lengths)
    # Options whose default is None arrive as strings from the web UI's form: coerce them here (and leave
    # the parsed options as they are, so the next form is read the same way).
    num = {name: _optional_number(name, getattr(o, name), kind) for name, kind in OPTIONAL_NUMBERS.items()}
    if o.request_timeout <= 0:
        raise ValueError(f"--request-timeout must be > 0, got {o.request_timeout}")
    if o.replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {o.replicas}")
    if o.max_audio_factor < 0:
        raise ValueError(f"--max-audio-factor must be >= 0, got {o.max_audio_factor}")
    users = int(o.num_users or 1)
    run_time = float(o.run_time) if o.run_time else None
    if o.shape in ("step", "sweep"):
        levels = parse_levels(o.levels) if o.levels else doubling_levels(o.step_max_users)
        plan: StepPlan | ConstantPlan = StepPlan(tuple(levels), o.step_hold)
        spawn_rate = float(o.spawn_rate) if o.spawn_rate else float(max(levels))
    else:
        plan = ConstantPlan(users, run_time)
        spawn_rate = float(o.spawn_rate or users)
    if o.shape == "poisson" and o.arrival_rate <= 0:
        raise ValueError(f"--arrival-rate must be > 0, got {o.arrival_rate}")
    report_dir = Path(o.report_dir)
    return RunConfig(
        mix=mix,
        prompts=prompts,
        settings=Settings(
            o.model,
            o.voice or None,
            num["max_tokens"],
            num["temperature"],
            num["seed"],
            api=o.server_api if o.server_api in SERVER_APIS else "boson",
        ),
        slo=SLO(num["slo_ttfa_ms"], num["slo_rtf"], num["slo_underrun_s"]),
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
        report_dir=report_dir,
        raw_out=Path(o.raw_out) if o.raw_out else report_dir / "raw.jsonl",
        plots=not o.no_plots,
        server_api=o.server_api,
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


class Collector:
    """Per-process record sink. Workers batch records to the master; the master (or a local runner)
    keeps them all and appends each to the raw JSONL as it arrives."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.outbox: list[dict] = []
        self.dropped_arrivals = 0
        self.outbox_dropped = 0
        self.raw_fh = None
        self.steps: list[tuple[int, float]] = []  # (users, unix time the level began)
        self.t_start = 0.0
        self.exit_code: int | None = None
        self.final_batches = 0  # master: workers whose last records arrived
        self.worker_ids: list[str] = []  # master: the workers of this run

    def reset(self, raw_out: Path | None) -> None:
        self.close()
        self.records, self.outbox, self.steps = [], [], []
        self.dropped_arrivals = self.outbox_dropped = self.final_batches = 0
        self.t_start = time.time()
        if raw_out is not None:
            raw_out.parent.mkdir(parents=True, exist_ok=True)
            self.raw_fh = raw_out.open("w", encoding="utf-8")

    def keep(self, rec: RequestRecord) -> None:
        self.records.append(rec)
        if self.raw_fh is not None:
            self.raw_fh.write(rec.to_json() + "\n")

    def close(self) -> None:
        if self.raw_fh is not None:
            self.raw_fh.close()
            self.raw_fh = None

    def note_level(self, users: int) -> None:
        if not self.steps or self.steps[-1][0] != users:
            self.steps.append((users, time.time()))

    def step_list(self, t_stop: float) -> list[Step]:
        out = []
        for i, (users, begin) in enumerate(self.steps):
            end = self.steps[i + 1][1] if i + 1 < len(self.steps) else t_stop
            out.append(Step(users, begin, end))
        return out


COLLECTOR = Collector()
CONFIG: RunConfig | None = None
WORKER_ID = "local"


def _config(environment, *, server: bool = True) -> RunConfig:
    """The run's config, built once from the options; with `server`, also what the server is (its API,
    hence the default mix) and its voice list."""
    global CONFIG
    if CONFIG is None:
        o = environment.parsed_options
        cfg = build_config(o)
        if server:
            host = environment.host or HiggsUser.host
            cfg = with_server(cfg, host, getattr(o, "tags", None), getattr(o, "exclude_tags", None))
        CONFIG = cfg
    return CONFIG


@events.init.add_listener
def on_init(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return  # a worker gets the master's options with its first spawn message
    if environment.parsed_options is None:
        return
    try:
        # A headless run knows its host now; the web UI's form may change it: the server at test start.
        _config(environment, server=bool(environment.parsed_options.headless))
    except ValueError as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        sys.exit(2)
    if isinstance(runner, MasterRunner):
        runner.register_message(RECORDS_MESSAGE, _on_records_message)


def _on_records_message(environment, msg, **_kw) -> None:
    for data in msg.data["records"]:
        COLLECTOR.keep(RequestRecord.from_dict(data))
    COLLECTOR.dropped_arrivals += msg.data.get("dropped", 0)
    if msg.data.get("final"):
        COLLECTOR.final_batches += 1


def _flush(environment, final: bool = False) -> None:
    if COLLECTOR.outbox or COLLECTOR.outbox_dropped or final:
        batch, COLLECTOR.outbox = COLLECTOR.outbox, []
        dropped, COLLECTOR.outbox_dropped = COLLECTOR.outbox_dropped, 0
        environment.runner.send_message(
            RECORDS_MESSAGE, {"records": batch, "dropped": dropped, "final": final}
        )


def _flush_loop(environment, stop: gevent.event.Event) -> None:
    # Ends on `stop` between sends: killing it mid-send could lose the batch it had taken.
    while not stop.wait(FLUSH_INTERVAL_S):
        _flush(environment)


def _collect_final_batches(runner: MasterRunner) -> None:
    """Master: make sure every worker's last records are in before the report is built.

    A headless master ends with runner.quit(), which fires test_stop here *before* telling the workers
    anything, so their users would still be running. Stop them ourselves (each worker's test_stop then
    sends a final batch, before Locust's client_stopped), wait for the batches (bounded), and hand out
    the quit Locust would have sent, which carries their final stats."""
    expected = COLLECTOR.worker_ids
    if COLLECTOR.final_batches < len(expected):
        for client_id in expected:
            runner.send_message("stop", None, client_id)
    deadline = time.monotonic() + FINAL_BATCH_WAIT_S
    while COLLECTOR.final_batches < len(expected) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if COLLECTOR.final_batches < len(expected):
        log.warning("only %d of %d workers sent their last records", COLLECTOR.final_batches, len(expected))
    opts = runner.environment.parsed_options
    if opts is not None and opts.headless:
        for client_id in expected:
            runner.send_message("quit", None, client_id)


_flusher = None
_flusher_stop: gevent.event.Event | None = None


@events.test_start.add_listener
def on_test_start(environment, **_kw) -> None:
    global CONFIG, WORKER_ID, _flusher, _flusher_stop
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        CONFIG = None  # rebuild from the options the master just sent
        try:
            _config(environment)
        except ValueError as exc:
            log.error("cannot start with the master's options: %s", exc)
            raise
        WORKER_ID = runner.client_id
        COLLECTOR.reset(None)
        _flusher_stop = gevent.event.Event()
        _flusher = gevent.spawn(_flush_loop, environment, _flusher_stop)
        return
    if environment.web_ui is not None:
        CONFIG = None  # the swarm form may have changed the options: rebuild from them
    try:
        cfg = _config(environment)
    except ValueError as exc:
        # Only the web UI can get here (the command line and a headless run's voices were checked at
        # start): a bad option in the swarm form, or voices the server does not list. The shape then
        # spawns nobody and the run ends at once.
        log.error("cannot start: %s; the run stops", exc)
        gevent.spawn(runner.stop)
        return
    COLLECTOR.reset(cfg.raw_out)
    if isinstance(runner, MasterRunner):
        COLLECTOR.worker_ids = [c.id for c in runner.clients.all]


@events.test_stop.add_listener
def on_test_stop(environment, **_kw) -> None:
    global _flusher
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        if _flusher is not None and _flusher_stop is not None:
            _flusher_stop.set()
            _flusher.join(timeout=5.0)
            _flusher = None
        _flush(environment, final=True)  # sent before Locust's client_stopped message
        return
    if CONFIG is None:
        return  # the run never started (bad options in the swarm form)
    cfg = CONFIG
    if isinstance(runner, MasterRunner):
        _collect_final_batches(runner)
    COLLECTOR.close()
    t_stop = time.time()
    steps = COLLECTOR.step_list(t_stop)
    extra = {
        "shape": cfg.shape,
        "arrivals_dropped": COLLECTOR.dropped_arrivals if cfg.shape == "poisson" else None,
        "host": environment.host,
        "started": COLLECTOR.t_start,
        "stopped": t_stop,
        "raw_records": str(cfg.raw_out),
        "server_api": cfg.settings.api,
    }
    summary = build_summary(
        COLLECTOR.records,
        cfg.slo,
        steps if cfg.shape in ("step", "sweep") else [s for s in steps[-1:]],
        min_good_share=cfg.min_good_share,
        replicas=cfg.replicas,
        extra=extra,
    )
    if cfg.gates:
        passed, lines = evaluate(cfg.gates, summary)
        summary["gates"], summary["gates_passed"] = lines, passed
        COLLECTOR.exit_code = 0 if passed else EXIT_THRESHOLD_MISSED
        for line in lines:
            log.info("threshold %s", line)
    paths = write_report(cfg.report_dir, summary, COLLECTOR.records, raw_out=None, plots=cfg.plots)
    log.info("report written: %s (raw records: %s)", ", ".join(str(p) for p in paths), cfg.raw_out)
    if summary.get("capacity"):
        log.info("capacity: %s", summary["capacity"]["sentence"])


@events.quitting.add_listener
def on_quitting(environment, **_kw) -> None:
    if COLLECTOR.exit_code is not None and not isinstance(environment.runner, WorkerRunner):
        environment.process_exit_code = COLLECTOR.exit_code


def _drop_connection(resp) -> None:
    """Close a connection whose body was not read to the end (never return it to the pool)."""
    pool, sock = getattr(resp, "_pool", None), getattr(resp, "_sock", None)
    resp._pool = resp._sock = None
    if sock is not None and pool is not None:
        pool.release_socket(sock)


class HiggsUser(FastHttpUser):
    """One listener: sends a request of a kind drawn from --mix, measures it, repeats (no think time).

    In the poisson shape each user waits for its share of the arrival schedule instead."""

    concurrency = 1  # one connection per user: a user has one request in flight
    host = "http://127.0.0.1:8000"

    def __init__(self, environment) -> None:
        try:
            cfg: RunConfig | None = _config(environment)
        except ValueError:
            cfg = None  # bad options from the web UI's form: logged at test_start; on_start stops us
        timeout = cfg.request_timeout if cfg else 120.0
        self.network_timeout = timeout
        self.connection_timeout = min(timeout, 30.0)
        super().__init__(environment)
        self.cfg = cfg
        self.rng = random.Random()
        self.arrivals: PoissonArrivals | None = None
        self.headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if cfg and cfg.api_key:
            self.headers["Authorization"] = f"Bearer {cfg.api_key}"

    def on_start(self) -> None:
        # A user with nothing to do stops in its first task (StopUser raised here would be logged with a
        # traceback by Locust; raised in a task it is a quiet stop).
        self.weights: dict[str, int] = {}
        if self.cfg is None:
            return
        # Tags (--tags/--exclude-tags) decide which kinds may run; --mix gives their weights.
        allowed = {t.__name__ for t in type(self).tasks}
        self.weights = {k: w for k, w in self.cfg.mix.items() if k in allowed}
        if not self.weights:
            log.error("--mix %s and the selected tags leave no request kind to run", self.cfg.mix)
            return
        if self.cfg.shape == "poisson":
            self.arrivals = PoissonArrivals(self.cfg.arrival_rate, self.cfg.pool_users, time.time(), self.rng)

    # One task per kind so `--tags stream` (or --exclude-tags) selects kinds. Each task draws the kind
    # from --mix among the kinds left, so Locust's equal task weights do not matter.
    @tag(*KIND_TAGS["stream"])
    @task
    def stream(self) -> None:
        self._go()

    @tag(*KIND_TAGS["chat"])
    @task
    def chat(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_pcm"])
    @task
    def speech_pcm(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_wav"])
    @task
    def speech_wav(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_mp3"])
    @task
    def speech_mp3(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_sse"])
    @task
    def speech_sse(self) -> None:
        self._go()

    @tag(*KIND_TAGS["clone"])
    @task
    def clone(self) -> None:
        self._go()

    def _go(self) -> None:
        if not self.weights:
            raise StopUser()
        kind = weighted_choice(self.weights, self.rng)
        if self.arrivals is not None:
            at, dropped = self.arrivals.take(time.time(), self.cfg.max_lateness)
            if dropped:
                _count_dropped(self.environment, dropped)
            delay = at - time.time()
            if delay > 0:
                gevent.sleep(delay)
        prompt = self.rng.choice(self.cfg.prompts)
        _report(self.environment, self.measure(kind, prompt))

    def measure(self, kind: str, prompt: Prompt) -> RequestRecord:
        """Send one request and measure it (a stop midway raises GreenletExit: no record)."""
        path, body = request_for(kind, prompt, self.cfg.settings, self.cfg.reference, self.rng)
        payload = json.dumps(body).encode()
        url = URL(self.host + path)
        client = self.client.client.clientpool.get_client(url)
        rec = RequestRecord(kind=kind, t_start=0.0, prompt_class=prompt.length, worker=WORKER_ID)
        rec.users = self.environment.runner.user_count if self.environment.runner else None
        rec.text_chars, rec.voice = len(prompt.text), body.get("voice")
        max_audio_s = plausible_audio_limit_s(len(prompt.text), self.cfg.max_audio_factor)
        # Our own X-Request-Id names the request on the server (its logs, `chatcmpl-<id>`; E8), so the
        # record joins the server's traces whether or not it echoes the header.
        own_id = uuid.uuid4().hex
        headers = {**self.headers, "X-Request-Id": own_id}
        resp = None
        # The request is built before the clock starts: TTFA counts sending it, not preparing it.
        wall0 = time.time()
        t0 = time.perf_counter()
        rec.t_start = wall0
        m: Measurement = measurement_for(kind, rec, t0, max_audio_s, self.cfg.settings.api)
        try:
            resp = client.request("POST", url.request_uri, body=payload, headers=headers)
            rec.status = resp.status_code
            rec.request_id = resp.get("x-request-id") or own_id
            reader = BodyReader(resp)
            if resp.status_code >= 400:
                detail = reader.read_all()[:300].decode("utf-8", "replace")
                m.fail(f"http_{resp.status_code}", detail, time.perf_counter())
            else:
                while data := reader.read():
                    m.feed(data, reader.arrived)
                    if rec.ttfa_clock is None and rec.ttfa_s is not None:
                        rec.ttfa_clock = reader.clock
                m.finish(reader.arrived)
        except AudioError as exc:
            m.fail(exc.error_class, exc.detail, time.perf_counter())
        except (TimeoutError, gevent.Timeout) as exc:
            m.fail("timeout", f"no bytes for {self.cfg.request_timeout:g} s ({exc!r})", time.perf_counter())
        except (OSError, Exception) as exc:  # connection refused/reset, HTTP parse errors
            if rec.status is None:
                m.fail("connection_error", repr(exc), time.perf_counter())
            else:
                m.fail("truncated_stream", repr(exc), time.perf_counter())
        except gevent.GreenletExit:
            # The test is stopping this user: an interrupted request is not a result. Re-raise, or
            # the user would swallow Locust's kill, keep looping, and the run would never end.
            if resp is not None:
                _drop_connection(resp)
            raise
        finally:
            if resp is not None and not rec.ok:
                _drop_connection(resp)
        if rec.t_first_audio is None and rec.ttfa_s is not None:
            rec.t_first_audio = wall0 + rec.ttfa_s
        return rec


def _count_dropped(environment, n: int) -> None:
    if isinstance(environment.runner, WorkerRunner):
        COLLECTOR.outbox_dropped += n
    else:
        COLLECTOR.dropped_arrivals += n


def _report(environment, rec: RequestRecord) -> None:
    """Fire the Locust request events for one record and hand the record to the collector.

    Rows: POST <kind> (whole request, failures by class), TTFA <kind> (ms), RTF <kind> (RTF x 1000,
    so 1000 = real time), AUDIO <kind> (audio ms), UNDERRUN <kind> (stall ms; streams that had one).
    """
    fire = environment.events.request.fire
    ms = (rec.duration_s or 0.0) * 1000
    exc = None if rec.ok else AudioRequestFailure(rec.error)
    fire(
        request_type="POST",
        name=rec.kind,
        response_time=ms,
        response_length=rec.bytes_received,
        exception=exc,
        context={},
    )
    if rec.ok:
        if rec.ttfa_s is not None:
            fire(
                request_type="TTFA",
                name=rec.kind,
                response_time=rec.ttfa_s * 1000,
                response_length=0,
                exception=None,
                context={},
            )
        if rec.rtf is not None:
            fire(
                request_type="RTF",
                name=rec.kind,
                response_time=rec.rtf * 1000,
                response_length=0,
                exception=None,
                context={},
            )
        fire(
            request_type="AUDIO",
            name=rec.kind,
            response_time=rec.audio_s * 1000,
            response_length=0,
            exception=None,
            context={},
        )
        if rec.underruns:
            fire(
                request_type="UNDERRUN",
                name=rec.kind,
                response_time=rec.stall_s * 1000,
                response_length=rec.underruns,
                exception=None,
                context={},
            )
    if isinstance(environment.runner, WorkerRunner):
        COLLECTOR.outbox.append(asdict(rec))
    else:
        COLLECTOR.keep(rec)


class HiggsShape(LoadTestShape):
    """--shape constant | step | poisson | sweep (see loadtests/README.md). Uses -u/-r/-t."""

    use_common_options = True

    def tick(self):
        cfg = CONFIG
        if cfg is None:
            return None
        idx = cfg.plan.index_at(self.get_run_time())
        if idx is None:
            return None
        users = cfg.plan.levels[idx]
        if cfg.shape == "sweep" and not cfg.sweep_continue and self._previous_level_failed(cfg, users):
            log.info("sweep: stopping, level below %d users missed the SLOs", users)
            return None
        COLLECTOR.note_level(users)
        return users, cfg.spawn_rate

    def _previous_level_failed(self, cfg: RunConfig, users: int) -> bool:
        if not COLLECTOR.steps or COLLECTOR.steps[-1][0] == users:
            return False
        _prev_users, begin = COLLECTOR.steps[-1]
        recs = [r for r in COLLECTOR.records if r.t_start >= begin]
        if not recs:
            return True
        share = summarize(recs, cfg.slo)["goodput_share"]
        return share < cfg.min_good_share
