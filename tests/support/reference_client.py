"""An independent asyncio (aiohttp) streaming client: the reference the Locust figures are checked against.

N closed-loop workers send streaming chat completions for a fixed time; each request's TTFA is taken at
the first SSE event whose delta carries audio bytes. Run it directly:

    python -m tests.support.reference_client http://127.0.0.1:8000 --users 100 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

from higgs_load.payloads import Prompt, Settings, chat_body, load_prompts

MODEL = "higgs-audio-v2-generation-3B-base"
PROMPTS = Path(__file__).resolve().parents[2] / "loadtests" / "data" / "prompts.jsonl"
SAMPLE_RATE = 24_000


@dataclass
class Result:
    t_start: float
    t_end: float
    ok: bool
    ttfa_s: float | None = None
    audio_s: float = 0.0
    request_id: str | None = None


def short_prompts(path: Path = PROMPTS, length: str = "short") -> list[Prompt]:
    return load_prompts(path, {length})


def body_for(prompt: Prompt, model: str = MODEL) -> dict:
    # The very request Locust's `stream` user sends (same system prompt, so the same server load);
    # only the sending and the measuring here are independent of the load-test code.
    return chat_body(prompt, Settings(model, None, None, None, None), stream=True)


async def one_request(session: aiohttp.ClientSession, url: str, prompt: Prompt) -> Result:
    t0 = time.time()
    res = Result(t0, t0, False)
    samples = 0
    try:
        # Our own id, as the load test sends: the server echoes it only with --enable-request-id-headers,
        # but always uses it for the request (and the simulator's trace).
        res.request_id = uuid.uuid4().hex
        async with session.post(url, json=body_for(prompt), headers={"X-Request-Id": res.request_id}) as resp:
            if resp.status != 200:
                await resp.read()
                res.t_end = time.time()
                return res
            done = False
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                choices = json.loads(data).get("choices") or [{}]
                audio = ((choices[0].get("delta") or {}).get("audio") or {}).get("data")
                if audio:
                    if res.ttfa_s is None:
                        res.ttfa_s = time.time() - t0
                    samples += len(base64.b64decode(audio)) // 2
            res.ok = done and samples > 0
    except (TimeoutError, aiohttp.ClientError):
        res.ok = False
    res.t_end = time.time()
    res.audio_s = samples / SAMPLE_RATE
    return res


async def run(
    base_url: str, users: int, duration_s: float, seed: int = 0, spawn_rate: float | None = None
) -> list[Result]:
    """Closed loop: each of `users` workers sends requests back to back for `duration_s`; requests still
    in flight then are cancelled and not counted, as Locust does with the requests of stopped users.
    With `spawn_rate`, worker i starts i / spawn_rate seconds in, as Locust's -r ramps its users."""
    url = base_url.rstrip("/") + "/v1/chat/completions"
    texts = short_prompts()
    rng = random.Random(seed)
    deadline = time.monotonic() + duration_s
    results: list[Result] = []
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def worker(index: int) -> None:
            if spawn_rate:
                await asyncio.sleep(index / spawn_rate)
            while (left := deadline - time.monotonic()) > 0:
                try:
                    results.append(await asyncio.wait_for(one_request(session, url, rng.choice(texts)), left))
                except TimeoutError:
                    return  # cut at the deadline, as Locust stops its users: no result

        await asyncio.gather(*(worker(i) for i in range(users)))
    return results


def summarize(results: list[Result]) -> dict:
    """Same definitions as the load-test report: throughput = audio seconds of successful requests over
    first send .. last completion; exact TTFA percentiles over successful requests."""
    ok = [r for r in results if r.ok]
    if not ok:
        return {"requests": len(results), "successes": 0}
    wall = max(r.t_end for r in results) - min(r.t_start for r in results)
    ttfa_ms = np.array([r.ttfa_s * 1000 for r in ok if r.ttfa_s is not None])
    return {
        "requests": len(results),
        "successes": len(ok),
        "audio_throughput": sum(r.audio_s for r in ok) / wall,
        "ttfa_p50_ms": float(np.percentile(ttfa_ms, 50)),
        "ttfa_p90_ms": float(np.percentile(ttfa_ms, 90)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args()
    print(json.dumps(summarize(asyncio.run(run(args.url, args.users, args.duration))), indent=2))


if __name__ == "__main__":
    main()
