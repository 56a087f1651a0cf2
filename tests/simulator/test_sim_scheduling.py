"""Queueing under load, seen the way a scraper sees it: /metrics while concurrent streams run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.simulator import Sim

StartSim = Callable[..., Sim]
MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
TEXT = "Streaming speech from a simulated server, one frame per engine step, to many clients at once. " * 2


def gauges(text: str) -> dict[str, float]:
    return {
        s.name: s.value for f in text_string_to_metric_families(text) if f.type == "gauge" for s in f.samples
    }


async def load_and_watch(sim: Sim, requests: int) -> tuple[list[dict[str, float]], list[int]]:
    """Start ``requests`` concurrent speech streams; scrape /metrics every 50 ms until all are done."""
    async with httpx.AsyncClient(base_url=sim.url, timeout=60) as client:

        async def one() -> int:
            body = {"model": MODEL, "input": TEXT, "voice": "belinda", "response_format": "pcm"}
            r = await client.post("/v1/audio/speech", json=body)
            assert r.status_code == 200
            return len(r.content)

        tasks = [asyncio.create_task(one()) for _ in range(requests)]
        samples = []
        while not all(t.done() for t in tasks):
            samples.append(gauges((await client.get("/metrics")).text))
            await asyncio.sleep(0.05)
        return samples, [t.result() for t in tasks]


def test_max_num_seqs_queues_requests(start_sim: StartSim) -> None:
    sim = start_sim("--max-num-seqs", "2", "--sim-slowdown", "0.5")
    samples, sizes = asyncio.run(load_and_watch(sim, 6))
    frames = -(-len(TEXT) * 25 // 15)
    assert sizes == [frames * 1920] * 6
    assert max(s["vllm:num_requests_running"] for s in samples) == 2
    assert max(s["vllm:num_requests_waiting"] for s in samples) >= 3
    assert max(s["vllm:gpu_cache_usage_perc"] for s in samples) > 0
    final = gauges(httpx.get(f"{sim.url}/metrics").text)
    assert final["vllm:num_requests_running"] == 0 and final["vllm:num_requests_waiting"] == 0


def test_kv_cache_budget_queues_requests(start_sim: StartSim) -> None:
    # 0.9 x 13 GiB - 12.3 GB of weights = ~2290 tokens of KV cache: about 5 of these requests fit.
    memory = ("--sim-gpu-memory-gib", "13", "--gpu-memory-utilization", "0.9", "--max-model-len", "1024")
    sim = start_sim(*memory, "--sim-slowdown", "0.5")
    samples, _ = asyncio.run(load_and_watch(sim, 9))
    running = max(s["vllm:num_requests_running"] for s in samples)
    assert 3 <= running <= 6
    assert max(s["vllm:num_requests_waiting"] for s in samples) >= 3
    assert max(s["vllm:gpu_cache_usage_perc"] for s in samples) > 0.5


def test_client_disconnect_frees_the_slot(start_sim: StartSim, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    sim = start_sim("--sim-profile", "raw", "--sim-slowdown", "5", "--sim-trace-file", str(trace))
    body = {"messages": [{"role": "user", "content": TEXT}], "stream": True}  # ~5 s of decoding
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json=body, timeout=30) as resp:
        next(line for line in resp.iter_lines() if '"audio":{' in line)
    deadline = time.monotonic() + 5
    while gauges(httpx.get(f"{sim.url}/metrics").text)["vllm:num_requests_running"] != 0:
        assert time.monotonic() < deadline, "the aborted stream kept its slot"
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while not trace.exists() or not trace.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    record = json.loads(trace.read_text().splitlines()[0])
    assert record["error"] == "client disconnected" and record["frames"] < len(TEXT) * 25 // 15
