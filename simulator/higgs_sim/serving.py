"""The process plumbing both command lines share (``higgs-sim`` and ``python -m higgs_sim.omni``):
the log format, SIGTERM/SIGINT, the aiohttp runner's end, and the event loop that stamps arrivals."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from higgs_sim.arrival import new_event_loop

LOG_FORMAT = "%(levelname)s %(asctime)s %(name)s: %(message)s"


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets (handlers on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_until(stop: asyncio.Event, runner: web.AppRunner, log: logging.Logger) -> None:
    """Serve until ``stop`` is set, then close the port and let in-flight responses drain (as uvicorn
    does; the runner's shutdown_timeout bounds it)."""
    try:
        await stop.wait()
    finally:
        log.info("Shutting down")
        await runner.cleanup()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on the loop that stamps each request's arrival with the kernel's receive time
    (higgs_sim.arrival)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main)
