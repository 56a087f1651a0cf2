"""The command line (OS1-OS3): ``python -m higgs_sim.omni serve MODEL --omni [--deploy-config PATH] ...``.

As ``vllm-omni`` (``vllm_omni/entrypoints/cli/main.py``): with no ``--omni`` in the arguments the
real executable hands everything to vLLM's own CLI, which has no Higgs Audio v2 pipeline; the
emulation exits 2 saying so. The ``serve`` parser (``serve.py``) takes the model positionally
(``model_tag``) or as ``--model``, the Omni flags ``--omni``, ``--deploy-config``,
``--stage-overrides``, ``--async-chunk/--no-async-chunk``, ``--log-stats``, and vLLM's serving
flags. Unknown flags (Boson's fork's ``--audio-tokenizer-type``, ``--voice-presets-dir``, its
``--limit-mm-per-prompt audio=50`` syntax), abbreviations and malformed values exit 2 with an
argparse message; under ``--omni`` the data/expert-parallel flags are refused (exit 1, OS3).

Exit status: 2 for the command line, 1 when the server cannot start (no pipeline matches the model,
OS8; a missing codec, OS11; a bad deploy config; no KV-cache room; the port in use), 0 after
SIGTERM/SIGINT. ``--sim-*`` flags are the emulation's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from higgs_sim.config import number_type
from higgs_sim.omni import EMULATED_VLLM_VERSION, EMULATES
from higgs_sim.omni.api import OmniServer
from higgs_sim.omni.deploy import DeployError, load_deploy
from higgs_sim.omni.options import OmniConfig
from higgs_sim.omni.pipeline import kv_budget_tokens
from higgs_sim.omni.startup import StartupError, load_codec, load_model
from higgs_sim.omni.voices import VoiceStore
from higgs_sim.serving import configure_logging, run, serve_until, stop_on_signals
from higgs_sim.timing import PROFILES, slowdown_for

log = logging.getLogger("higgs_sim.omni")

NEEDS_OMNI = (
    "vllm-omni: error: --omni is required. Without it vllm-omni hands the command to vLLM's own CLI "
    "(`vllm serve`), which has no Higgs Audio v2 pipeline (and no --deploy-config): run "
    "`vllm-omni serve <model> --omni --deploy-config <yaml>` (or `vllm serve <model> --omni`)."
)
# serve.py validate(): vLLM flags refused under --omni (parallelism comes from the deploy YAML).
REFUSED_UNDER_OMNI = {
    "data_parallel_size": "--data-parallel-size",
    "data_parallel_size_local": "--data-parallel-size-local",
    "data_parallel_address": "--data-parallel-address",
    "data_parallel_rpc_port": "--data-parallel-rpc-port",
    "data_parallel_start_rank": "--data-parallel-start-rank",
    "data_parallel_backend": "--data-parallel-backend",
    "api_server_count": "--api-server-count",
    "enable_expert_parallel": "--enable-expert-parallel",
}
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")


def _json_object(text: str) -> dict[str, Any]:
    """vLLM 0.2x's JSON-valued flags (``--limit-mm-per-prompt '{"audio": 50}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"Value {text} cannot be converted to <function loads>: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vllm-omni", description="vLLM OMNI CLI (simulator)", allow_abbrev=False
    )
    parser.add_argument(
        "-v", "--version", action="version", version=f"vllm-omni simulator on vLLM {EMULATED_VLLM_VERSION}"
    )
    sub = parser.add_subparsers(dest="subparser", required=True)
    serve = sub.add_parser(
        "serve",
        usage="vllm serve [model_tag] --omni [options]",
        description="Start the vLLM-Omni OpenAI-compatible API server (emulated).",
        allow_abbrev=False,
    )
    serve.add_argument("model_tag", nargs="?", help="the model (a Hub repository id or a local directory)")
    serve.add_argument("--model", help="the model, if not given positionally")
    omni = serve.add_argument_group("OmniConfig")
    omni.add_argument("--omni", action="store_true", help="vLLM-Omni mode (required)")
    omni.add_argument("--deploy-config", help="deploy config YAML (stages, sampling, async_chunk)")
    omni.add_argument("--stage-configs-path", help="[deprecated] legacy stage configs YAML")
    omni.add_argument(
        "--stage-overrides", help='per-stage JSON overrides, e.g. \'{"0": {"max_num_seqs": 8}}\''
    )
    omni.add_argument("--async-chunk", action=argparse.BooleanOptionalAction, default=None)
    omni.add_argument("--log-stats", action="store_true")
    omni.add_argument("--stage-init-timeout", type=number_type(int, 1), default=300)
    omni.add_argument("--init-timeout", type=number_type(int, 1), default=600)
    omni.add_argument("--log-file")
    vllm = serve.add_argument_group("vLLM serving flags")
    vllm.add_argument("--host", default=None, help="listen address (all interfaces by default)")
    vllm.add_argument("--port", type=number_type(int, 0, 65535), default=8000)
    vllm.add_argument("--served-model-name", nargs="+", default=None)
    vllm.add_argument(
        "--gpu-memory-utilization", type=number_type(float, 0.0, 1.0, lo_open=True), default=None
    )
    vllm.add_argument("--trust-remote-code", action="store_true")
    vllm.add_argument("--disable-log-stats", action="store_true")
    vllm.add_argument("--api-key", default=None)
    vllm.add_argument("--enable-request-id-headers", action="store_true")
    vllm.add_argument("--allowed-local-media-path", default=None)
    vllm.add_argument("--disable-uvicorn-access-log", action="store_true")
    vllm.add_argument(
        "--uvicorn-log-level", choices=("debug", "info", "warning", "error", "critical", "trace")
    )
    vllm.add_argument("--dtype", choices=DTYPES, default="auto")
    vllm.add_argument("--enforce-eager", action="store_true")
    vllm.add_argument("--seed", type=number_type(int), default=None)
    vllm.add_argument("--max-model-len", type=number_type(int, 1), default=None)
    vllm.add_argument("--max-num-seqs", type=number_type(int, 1), default=None)
    vllm.add_argument("-tp", "--tensor-parallel-size", type=number_type(int, 1), default=1)
    vllm.add_argument("--limit-mm-per-prompt", type=_json_object, default=None)
    vllm.add_argument("--revision", default=None)
    refused = serve.add_argument_group("refused under --omni (serve.py validate)")
    refused.add_argument("-dp", "--data-parallel-size", type=number_type(int, 1), default=None)
    refused.add_argument("--data-parallel-size-local", type=number_type(int, 0), default=None)
    refused.add_argument("--data-parallel-address", default=None)
    refused.add_argument("--data-parallel-rpc-port", type=number_type(int, 0, 65535), default=None)
    refused.add_argument("--data-parallel-start-rank", type=number_type(int, 0), default=None)
    refused.add_argument("--data-parallel-backend", default=None)
    refused.add_argument("--api-server-count", type=number_type(int, 1), default=None)
    refused.add_argument("--enable-expert-parallel", action="store_true", default=None)
    sim = serve.add_argument_group("simulator (--sim-*)")
    sim.add_argument("--sim-profile", choices=PROFILES, default="calibrated")
    sim.add_argument("--sim-slowdown", type=number_type(float, 0.0, lo_open=True), default=None)
    sim.add_argument("--sim-bind-host", default=None, help="listen address; overrides --host")
    sim.add_argument("--sim-gpu-memory-gib", type=number_type(float, 0.0, lo_open=True), default=80.0)
    sim.add_argument("--sim-startup-seconds", type=number_type(float, 0.0), default=0.0)
    sim.add_argument("--sim-seed", type=number_type(int), default=0)
    sim.add_argument("--sim-trace-file", default=None)
    sim.add_argument("--sim-error-rate", type=number_type(float, 0.0, 1.0), default=0.0)
    sim.add_argument(
        "--sim-schema-error-status",
        type=int,
        choices=(400, 422),
        default=400,
        help="schema errors: vLLM's handler (400, {'error': ...}) or FastAPI's default (422, {'detail': [...]})",
    )
    sim.add_argument("--sim-shutdown-timeout", type=number_type(float, 0.0), default=30.0)
    return parser


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> OmniConfig:
    """Turn the parsed flags into a configuration; StartupError/DeployError mean exit status 1."""
    offenders = sorted(flag for dest, flag in REFUSED_UNDER_OMNI.items() if getattr(args, dest) is not None)
    if offenders:
        raise StartupError(
            "ValueError: The following CLI args are not supported under --omni: "
            f"{', '.join(offenders)}. Configure parallelism through the per-stage YAML (`--deploy-config` / "
            "`--stage-configs-path`) and replica count via the per-stage `num_replicas` config field."
        )
    model = args.model_tag or args.model
    if not model:
        raise StartupError(
            "no model given: vLLM's default model has no Higgs Audio v2 pipeline ([simulator] this emulation "
            "serves Higgs Audio v2 only; pass the model as `serve <model>`)"
        )
    if args.deploy_config and args.stage_configs_path:
        raise StartupError("--deploy-config and --stage-configs-path are mutually exclusive")
    if args.stage_configs_path:
        raise StartupError(
            "[simulator] the deprecated --stage-configs-path (legacy stage_args YAML) is not emulated; "
            "use --deploy-config"
        )
    deploy = load_deploy(
        args.deploy_config, args.stage_overrides, args.async_chunk, args.gpu_memory_utilization
    )
    info = load_model(model, env)
    codec = load_codec(info, env)
    log.info("stage 1 (code2wav) codec: %s", codec)
    for flag in ("max_model_len", "max_num_seqs"):
        if getattr(args, flag) is not None:
            log.warning(
                "--%s is ignored: [simulator] the deploy config's per-stage value is used",
                flag.replace("_", "-"),
            )
    host = args.sim_bind_host or args.host or "0.0.0.0"
    return OmniConfig(
        model=model,
        served_model_names=tuple(args.served_model_name or [model]),
        host=host,
        port=args.port,
        deploy=deploy,
        api_key=args.api_key or env.get("VLLM_API_KEY") or None,
        log_stats=args.log_stats or not args.disable_log_stats,  # OM3
        enable_request_id_headers=args.enable_request_id_headers,
        allowed_local_media_path=args.allowed_local_media_path,
        profile=args.sim_profile,
        slowdown=slowdown_for(args.sim_profile, args.sim_slowdown),
        gpu_memory_gib=args.sim_gpu_memory_gib,
        startup_seconds=args.sim_startup_seconds,
        seed=args.sim_seed,
        trace_file=args.sim_trace_file,
        error_rate=args.sim_error_rate,
        schema_error_status=args.sim_schema_error_status,
        shutdown_timeout=args.sim_shutdown_timeout,
    )


def check_kv_room(config: OmniConfig) -> int:
    talker = config.deploy.talker
    budget = kv_budget_tokens(talker.gpu_memory_utilization, config.gpu_memory_gib)
    if budget < talker.max_model_len:
        raise StartupError(
            f"stage 0: to serve at least one request with the model's max seq len ({talker.max_model_len}), "
            f"{talker.max_model_len} tokens of KV cache are needed, more than the available {budget} tokens "
            f"(gpu_memory_utilization {talker.gpu_memory_utilization:g} of {config.gpu_memory_gib:g} GiB). "
            "Try increasing `gpu_memory_utilization` or decreasing `max_model_len`."
        )
    return budget


def _banner(config: OmniConfig, budget: int) -> None:
    deploy = config.deploy
    log.info("higgs-sim omni: this is a SIMULATOR (test double) of %s; no GPU, synthetic audio", EMULATES)
    log.info(
        "model=%s served as %s; deploy config %s: async_chunk=%s; stage 0 (talker) max_num_seqs=%d "
        "max_model_len=%d max_tokens=%s seed=%s KV cache %d tokens; stage 1 (code2wav) max_num_seqs=%d",
        config.model,
        ", ".join(config.served_model_names),
        deploy.source,
        deploy.async_chunk,
        deploy.talker.max_num_seqs,
        deploy.talker.max_model_len,
        deploy.talker.sampling.max_tokens,
        deploy.talker.sampling.seed,
        budget,
        deploy.code2wav.max_num_seqs,
    )
    log.info(
        "timing profile %s, slowdown %g; stats %s",
        config.profile,
        config.slowdown,
        "on" if config.log_stats else "off (--disable-log-stats)",
    )
    if config.error_rate:
        log.warning("fault injection active: --sim-error-rate %g", config.error_rate)


def _listen(host: str, port: int) -> socket.socket:
    """OS7: the socket is bound before the engine is built; connections wait in the backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def _serve(config: OmniConfig, voices: VoiceStore, sock: socket.socket) -> None:
    stop = stop_on_signals()
    if config.startup_seconds > 0:
        log.info(
            "Loading stage 0 (talker) and stage 1 (code2wav) (simulated, %.1f s)...", config.startup_seconds
        )
        try:
            await asyncio.wait_for(stop.wait(), config.startup_seconds)
            sock.close()
            return  # stopped while loading
        except TimeoutError:
            pass
    server = OmniServer(config, voices)
    runner = web.AppRunner(
        server.make_app(),
        access_log=None,
        handle_signals=False,
        handler_cancellation=True,  # with_cancellation: a client that goes away aborts its request
        shutdown_timeout=config.shutdown_timeout,
    )
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    log.info("Started server process; serving on http://%s:%d (simulator)", config.host, config.port)
    await serve_until(stop, runner, log)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "--omni" not in arguments:  # main.py: the literal flag decides, before any parsing
        print(NEEDS_OMNI, file=sys.stderr)
        return 2
    args = build_parser().parse_args(arguments)  # exits 2 on a bad flag
    try:
        config = resolve(args, os.environ)
        budget = check_kv_room(config)
        _banner(config, budget)
        try:
            voices = VoiceStore.from_env(os.environ)
        except OSError as exc:
            raise StartupError(
                f"cannot use the uploaded-voice directory (SPEAKER_SAMPLES_DIR): {exc}"
            ) from None
        sock = _listen(config.host, config.port)
        run(_serve(config, voices, sock))
    except (StartupError, DeployError) as exc:
        log.error("vllm-omni (simulator) cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
