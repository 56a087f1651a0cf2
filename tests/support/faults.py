"""Helpers of the fault tests: streaming clients that time their end, finding a pod's process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CHAT = "/v1/chat/completions"


@dataclass
class StreamResult:
    started: float = 0.0
    first_audio: float | None = None
    ended: float | None = None
    frames: int = 0
    done: bool = False  # the server sent [DONE]
    error: str = ""
    first_event: threading.Event = field(default_factory=threading.Event)


def stream_chat(
    base_url: str,
    result: StreamResult,
    max_tokens: int = 1500,
    read_timeout: float = 30,
    client: httpx.Client | None = None,
) -> None:
    """One streamed chat completion; records when audio started and how it ended (never raises).
    A long-running load passes its own `client`, so connections (and their TLS contexts) are reused
    rather than built per request."""
    body = {
        "messages": [{"role": "user", "content": "Read a long story aloud, slowly."}],
        "stream": True,
        "max_tokens": max_tokens,
    }
    result.started = time.monotonic()
    timeout = httpx.Timeout(connect=5, read=read_timeout, write=5, pool=5)
    try:
        send = client.stream if client is not None else httpx.stream
        with send("POST", base_url + CHAT, json=body, timeout=timeout) as resp:
            if resp.status_code != 200:
                result.error = f"HTTP {resp.status_code}: {resp.read()[:200]!r}"
                return
            for line in resp.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    result.done = True
                    continue
                event = json.loads(line[6:])
                if "error" in event:  # an engine error after the 200 (contract CH8)
                    result.error = f"error event: {event['error'].get('message', event['error'])}"
                    continue
                if not event.get("choices"):  # a usage event
                    continue
                delta = event["choices"][0]["delta"]
                if (delta.get("audio") or {}).get("data"):
                    result.frames += 1
                    if result.first_audio is None:
                        result.first_audio = time.monotonic()
                        result.first_event.set()
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.ended = time.monotonic()
        result.first_event.set()
        if not result.done and not result.error:
            result.error = "stream ended without [DONE]"


def start_stream(base_url: str, **kwargs: float) -> tuple[StreamResult, threading.Thread]:
    result = StreamResult()
    thread = threading.Thread(target=stream_chat, args=(base_url, result), kwargs=kwargs, daemon=True)
    thread.start()
    return result, thread


def pids_listening_on(ip: str) -> list[int]:
    """Processes whose command line names the pod IP (the agent passes it as --sim-bind-host)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ip.encode() in argv and any(b"higgs" in a for a in argv):
            found.append(int(proc_dir.name))
    return found


def sigkill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(pid, signal.SIGKILL)
