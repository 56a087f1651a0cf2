"""Waiting for a process the tests started (a simulator, the operator, the fake hub, Prometheus) to
answer over HTTP: one bounded loop that fails at once, with the process's log, when it exits first."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def _ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def wait_answering(
    proc: subprocess.Popen,
    url: str,
    what: str,
    log: Callable[[], str],
    timeout: float,
    interval: float = 0.2,
    accept: Callable[[httpx.Response], bool] = _ok,
) -> None:
    """Return once `url` answers as `accept` wants (200 by default). AssertionError naming `what` with
    `log()` when the process exits first or `timeout` passes; the caller stops the process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log()}")
        try:
            if accept(httpx.get(url, timeout=1.0)):
                return
        except httpx.TransportError:
            pass
        time.sleep(interval)
    raise AssertionError(f"{what} not answering {url} within {timeout:.0f} s:\n{log()}")
