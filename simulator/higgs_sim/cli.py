"""``higgs-sim``: start the simulator with the real server's command line.

Exit status: 2 for a bad flag or value (argparse, as vLLM), 1 when it cannot start (a file the real
server loads at start is missing: model, audio tokenizer, semantic teacher, see higgs_sim.startup;
no KV-cache room; port in use) or on a simulated crash, 0 after SIGTERM/SIGINT. Broken voice presets
do not stop it (as the real server, it logs the error and retries).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from higgs_sim import __version__
from higgs_sim.audio import ensure_voice_loop, timbre_of
from higgs_sim.config import SimConfig, StartupError, parse_args
from higgs_sim.server import EMULATED_SERVER, SimServer
from higgs_sim.serving import configure_logging, run, serve_until, stop_on_signals
from higgs_sim.startup import run_startup
from higgs_sim.voices import VoiceRegistry

log = logging.getLogger("higgs_sim")


def _banner(config: SimConfig) -> None:
    log.info(
        "higgs-sim %s: this is a SIMULATOR (test double) of %s; no GPU, synthetic audio",
        __version__,
        EMULATED_SERVER,
    )
    log.info(
        "model=%s served as %s, max_model_len=%d, max_num_seqs=%d, KV cache %d tokens "
        "(gpu_memory_utilization %.2f of %g GiB), audio limit %d per prompt",
        config.model,
        ", ".join(config.served_model_names),
        config.max_model_len,
        config.max_num_seqs,
        config.kv_budget_tokens,
        config.gpu_memory_utilization,
        config.gpu_memory_gib,
        config.audio_limit,
    )
    log.info("timing profile %s, slowdown %g", config.profile, config.slowdown)
    active = {
        k: v
        for k, v in vars(config.faults).items()
        if v not in (None, 0.0, False, ()) and k not in ("stall_seconds", "content_fault_every")
    }
    if active:
        log.warning("fault injection active: %s", active)


async def _serve(config: SimConfig, voices: VoiceRegistry) -> None:
    stop = stop_on_signals()
    if config.startup_seconds > 0:
        log.info("Loading model weights (simulated, %.1f s)...", config.startup_seconds)
        warm = asyncio.gather(*(ensure_voice_loop(timbre_of(name, config.seed)) for name in voices.voices))
        try:
            await asyncio.wait_for(asyncio.shield(stop.wait()), config.startup_seconds)
            return  # stopped while loading
        except TimeoutError:
            pass
        await warm
        log.info("Model weights loaded (simulated)")

    server = SimServer(config, voices)
    # On SIGTERM the port closes and in-flight streams drain, as uvicorn does for vLLM; the pod's
    # terminationGracePeriodSeconds is the outer bound.
    runner = web.AppRunner(
        server.make_app(), access_log=None, handle_signals=False, shutdown_timeout=config.shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    log.info("Started server process; listening on http://%s:%d (simulator)", config.host, config.port)
    await serve_until(stop, runner, log)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    config = parse_args(sys.argv[1:] if argv is None else argv)  # exits 2 on a bad flag
    try:
        _banner(config)
        run_startup(config, os.environ)
        voices = VoiceRegistry(config.voice_presets_dir)
        run(_serve(config, voices))
    except StartupError as exc:
        log.error("higgs-sim cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
