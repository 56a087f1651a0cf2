"""Simulator throughput: one process, up to 256 concurrent streaming chat requests, vs its timing model.

For each batch size, every request asks for the same text, so all streams decode together. A
stream's decode rate is measured between its first audio chunk (frame 32) and its final chunk,
a window in which every stream of the batch is running; the sum over streams is the produced
audio-s/s, compared with ``StepTimeModel.predicted_audio_seconds_per_second`` at that batch and
mean context. Target: within 5% at 256 streams (the simulator is never the bottleneck). The table
also shows each batch's wall time beside the model's (prefill + steps); the difference is the time
the client took to open its connections and the last chunks' delivery.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from dataclasses import dataclass

import aiohttp

from higgs_sim.config import parse_args
from higgs_sim.protocol import TOKENS_PER_MESSAGE, frames_for_text, text_tokens
from higgs_sim.timing import FRAMES_PER_SECOND, StepTimeModel
from tests.support.ports import free_port

SIM_ARGS = ["--model", "bosonai/higgs-audio-v2-generation-3B-base", "--max-num-seqs", "256"]
BATCHES = ((1, 4.0), (64, 8.0), (256, 16.0))  # (concurrent streams, seconds of audio each)
TOLERANCE = 0.05
BYTES_PER_FRAME = 960 * 2


@dataclass
class StreamResult:
    frames: int
    t_first: float
    t_final: float
    first_frames: int


def text_for(seconds: float) -> str:
    """A text whose speech lasts ``seconds`` at the simulator's speech rate."""
    words = "speech for many listeners "
    text = ""
    while frames_for_text(text) < seconds * FRAMES_PER_SECOND:
        text += words
    return text


async def one_stream(session: aiohttp.ClientSession, url: str, text: str) -> StreamResult:
    body = {"messages": [{"role": "user", "content": text}], "stream": True}
    frames, first_frames, t_first, t_final = 0, 0, 0.0, 0.0
    buffer = b""
    async with session.post(url, json=body) as resp:
        resp.raise_for_status()
        async for data in resp.content.iter_any():
            buffer += data
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                payload = event.removeprefix(b"data: ")
                if payload == b"[DONE]":
                    continue
                choices = json.loads(payload)["choices"]
                audio = choices[0]["delta"].get("audio") if choices else None
                if audio:
                    n = len(base64.b64decode(audio["data"])) // BYTES_PER_FRAME
                    now = time.monotonic()
                    if not frames:
                        t_first, first_frames = now, n
                    frames += n
                    t_final = now
    return StreamResult(frames, t_first, t_final, first_frames)


async def run_batch(port: int, batch: int, text: str) -> tuple[list[StreamResult], float]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=110)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()
        results = await asyncio.gather(*(one_stream(session, url, text) for _ in range(batch)))
        return list(results), time.monotonic() - start


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("simulator did not become healthy in 30 s")


def main() -> int:
    port = free_port()
    config = parse_args([*SIM_ARGS, "--port", str(port)])
    model = StepTimeModel(config.slowdown)
    cmd = [sys.executable, "-m", "higgs_sim.cli", *SIM_ARGS, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_healthy(proc, port)
        for batch, seconds in BATCHES:
            text = text_for(seconds)
            frames = frames_for_text(text)
            prompt = TOKENS_PER_MESSAGE + text_tokens(text)
            results, wall = asyncio.run(run_batch(port, batch, text))
            assert all(r.frames == frames for r in results), "a stream came back short"
            # Produced rate: each stream's frames after its first chunk over the time they took.
            measured = (
                sum((r.frames - r.first_frames) / (r.t_final - r.t_first) for r in results)
                / FRAMES_PER_SECOND
            )
            mean_kv = prompt + (results[0].first_frames + frames) / 2
            predicted = model.predicted_audio_seconds_per_second(batch, mean_kv)
            # Whole run as the model sees it: one prefill of every prompt, then `frames` steps.
            model_wall = model.prefill_seconds(batch * prompt) + sum(
                model.step_seconds(batch, prompt + i) for i in range(frames)
            )
            rows.append((batch, frames, wall, model_wall, measured, predicted))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    print(f"simulator timing profile {config.profile}, slowdown {config.slowdown:g}, one process, 127.0.0.1")
    row = "{:>7} {:>8} {:>7} {:>8} {:>15} {:>16} {:>6}"
    print(row.format("streams", "audio s", "wall s", "model s", "measured a-s/s", "predicted a-s/s", "ratio"))
    for batch, frames, wall, model_wall, measured, predicted in rows:
        cells = (
            f"{frames / 25:.1f}",
            f"{wall:.1f}",
            f"{model_wall:.1f}",
            f"{measured:.1f}",
            f"{predicted:.1f}",
            f"{measured / predicted:.3f}",
        )
        print(row.format(batch, *cells))
    batch, _, _, _, measured, predicted = rows[-1]
    ok = abs(measured / predicted - 1) <= TOLERANCE
    print(f"{batch} streams: measured/predicted = {measured / predicted:.3f} "
          f"({'within' if ok else 'OUTSIDE'} the {TOLERANCE:.0%} target)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
