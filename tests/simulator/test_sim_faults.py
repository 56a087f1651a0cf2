"""Fault injection, start-up delay, API key, bind address, presets and the current-vLLM emulation."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.simulator import Sim, free_port, launch, make_wav

FAST = ("--sim-slowdown", "0.05")
TEXT = "The quick brown fox jumps over the lazy dog."  # 74 frames
SPEECH = {
    "model": "bosonai/higgs-audio-v2-generation-3B-base",
    "input": TEXT,
    "voice": "belinda",
    "response_format": "pcm",
}
StartSim = Callable[..., Sim]


def sse_audio_chunks(resp: httpx.Response) -> tuple[list[tuple[float, int]], bool]:
    """(arrival time, frames) of each audio chunk, and whether [DONE] arrived."""
    chunks, done = [], False
    for line in resp.iter_lines():
        if line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            choices = json.loads(line[6:])["choices"]
            audio = choices[0]["delta"].get("audio") if choices else None
            if audio:
                chunks.append((time.monotonic(), len(base64.b64decode(audio["data"])) // 1920))
    return chunks, done


def test_startup_delay_then_healthy(start_sim: StartSim) -> None:
    t0 = time.monotonic()
    sim = start_sim("--sim-startup-seconds", "1.5", *FAST, wait=False)
    time.sleep(0.6)
    with pytest.raises(httpx.TransportError):  # the port opens only after the (simulated) weights load
        httpx.get(f"{sim.url}/health", timeout=1.0)
    sim.wait_healthy()
    assert time.monotonic() - t0 >= 1.5
    assert "Loading model weights (simulated" in sim.log()


def test_error_rate(start_sim: StartSim) -> None:
    sim = start_sim("--sim-error-rate", "0.5", "--sim-seed", "3", *FAST)
    codes = [httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH).status_code for _ in range(10)]
    assert set(codes) == {200, 500}
    failed = httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH)
    while failed.status_code == 200:
        failed = httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH)
    assert failed.json() == {
        "object": "error",
        "message": "simulated internal server error (--sim-error-rate)",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
    client = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        for _ in range(16):
            client.chat.completions.create(model="bosonai/higgs-audio-v2-generation-3B-base",
                                           messages=[{"role": "user", "content": "hi"}])  # fmt: skip


def test_crash_after_requests(start_sim: StartSim) -> None:
    sim = start_sim("--sim-crash-after-requests", "2", *FAST)
    for _ in range(2):
        assert httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH).status_code == 200
    assert sim.proc.wait(timeout=10) == 1
    assert "SIMULATED CRASH" in sim.log()


def test_crash_after_seconds(start_sim: StartSim) -> None:
    sim = start_sim("--sim-crash-after-seconds", "1", *FAST)
    assert httpx.get(f"{sim.url}/health").status_code == 200
    assert sim.proc.wait(timeout=10) == 1


def test_stall_mid_stream(start_sim: StartSim) -> None:
    sim = start_sim("--sim-stall-after-frames", "30", "--sim-stall-seconds", "1.0", *FAST)
    body = {"messages": [{"role": "user", "content": TEXT}], "stream": True}
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json=body, timeout=30) as resp:
        chunks, done = sse_audio_chunks(resp)
    assert done and [f for _, f in chunks] == [17, 25, 32]
    assert chunks[2][0] - chunks[1][0] >= 0.9  # the pause once 42 >= 30 frames were sent


def test_truncated_streams(start_sim: StartSim, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    sim = start_sim("--sim-truncate-after-frames", "40", "--sim-trace-file", str(trace), *FAST)
    body = {"messages": [{"role": "user", "content": TEXT}], "stream": True}
    got: list[str] = []
    url = f"{sim.url}/v1/chat/completions"
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("POST", url, json=body, timeout=30) as resp:
        got.extend(line for line in resp.iter_lines() if '"audio":{' in line or "[DONE]" in line)
    assert len(got) == 2  # 17 + 25 frames, then the connection drops with no final chunk or [DONE]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH, timeout=30)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{sim.url}/v1/chat/completions", json={**body, "stream": False}, timeout=30)
    deadline = time.monotonic() + 5
    while len(trace.read_text().splitlines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the record is written just after the connection is cut
    records = [json.loads(x) for x in trace.read_text().splitlines()]
    assert len(records) == 3 and all("truncated" in r["error"] for r in records)
    assert sim.proc.poll() is None  # the server itself keeps running


def test_silent_audio(start_sim: StartSim) -> None:
    sim = start_sim("--sim-silent-audio", *FAST)
    pcm = httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH).content
    assert len(pcm) == 74 * 1920 and pcm == bytes(len(pcm))


def test_api_key(start_sim: StartSim) -> None:
    sim = start_sim("--api-key", "s3cret", *FAST)
    assert httpx.get(f"{sim.url}/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(f"{sim.url}/v1/models", headers=headers)
        assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{sim.url}/v1", api_key="wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="s3cret", max_retries=0)
    assert ok.models.list().data[0].id == "bosonai/higgs-audio-v2-generation-3B-base"


def test_bind_host_overrides_host(tmp_path: Path) -> None:
    port = free_port()
    sim = launch(["--sim-bind-host", "127.0.0.2", "--model", "m", *FAST], tmp_path, port=port)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.2:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.2:{port}/health").status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
    finally:
        sim.stop()


def test_voice_presets_dir_and_refresh(start_sim: StartSim, tmp_path: Path) -> None:
    presets = tmp_path / "voices"
    presets.mkdir()
    (presets / "alice.wav").write_bytes(make_wav(1.0))
    (presets / "config.json").write_text(
        json.dumps({"alice": {"transcript": "Hi.", "audio_file": "alice.wav"}})
    )
    sim = start_sim("--voice-presets-dir", str(presets), "--voice-presets-refresh-interval", "1", *FAST)
    assert httpx.get(f"{sim.url}/v1/audio/voices").json() == ["alice"]
    alice = httpx.post(f"{sim.url}/v1/audio/speech", json={**SPEECH, "voice": "alice"})
    assert alice.status_code == 200
    fallback = httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH)  # belinda: not here
    assert fallback.status_code == 200 and fallback.content == alice.content  # the first preset's voice
    assert "Unsupported voice: belinda, using default voice: alice" in sim.log()
    (presets / "bob.wav").write_bytes(make_wav(0.5))
    config = {
        "alice": {"transcript": "Hi.", "audio_file": "alice.wav"},
        "bob": {"transcript": "", "audio_file": "bob.wav"},
    }
    (presets / "config.json").write_text(json.dumps(config))
    deadline = time.monotonic() + 5
    while "bob" not in httpx.get(f"{sim.url}/v1/audio/voices").json():
        assert time.monotonic() < deadline, "presets were not re-read"
        time.sleep(0.1)


def test_bad_presets_do_not_stop_the_start(start_sim: StartSim, tmp_path: Path) -> None:
    """As the real server: presets are read in the background; errors are logged, never fatal."""
    (tmp_path / "config.json").write_text(json.dumps({"x": {"transcript": "", "audio_file": "missing.wav"}}))
    sim = start_sim("--voice-presets-dir", str(tmp_path), *FAST)
    assert "missing.wav" in sim.log() and "Traceback" not in sim.log()
    empty = tmp_path / "empty"
    empty.mkdir()
    sim = start_sim("--voice-presets-dir", str(empty), *FAST)
    assert (
        f"Error loading voice presets: [Errno 2] No such file or directory: '{empty / 'config.json'}'"
        in sim.log()
    )


def test_sigterm_lets_streams_finish_then_exits_0(start_sim: StartSim) -> None:
    sim = start_sim("--sim-profile", "raw", "--sim-slowdown", "5")  # a ~1.2 s stream
    body = {"messages": [{"role": "user", "content": TEXT}], "stream": True}
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json=body, timeout=30) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if '"audio":{' in line)
        sim.proc.terminate()
        assert "data: [DONE]" in list(lines)
    assert sim.proc.wait(timeout=15) == 0
    assert "Shutting down" in sim.log()


def test_sigterm_drains_a_stream_longer_than_aiohttps_default_and_refuses_new_connections(
    start_sim: StartSim,
) -> None:
    # ~8 s of streaming after SIGTERM: longer than aiohttp's few-second default drain, the way
    # uvicorn lets vLLM finish in-flight requests inside the pod's grace period.
    sim = start_sim("--sim-profile", "raw", "--sim-slowdown", "70")
    body = {"messages": [{"role": "user", "content": TEXT}], "stream": True}
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json=body, timeout=60) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if '"audio":{' in line)
        sim.proc.terminate()
        started = time.monotonic()
        time.sleep(0.5)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{sim.url}/health", timeout=2)  # the port is closed while draining
        assert "data: [DONE]" in list(lines)
        drained_after = time.monotonic() - started
    assert drained_after > 5, f"stream ended {drained_after:.1f} s after SIGTERM: not a real drain test"
    assert sim.proc.wait(timeout=15) == 0


def test_sigterm_cuts_streams_after_the_shutdown_timeout(start_sim: StartSim) -> None:
    sim = start_sim("--sim-profile", "raw", "--sim-slowdown", "30", "--sim-shutdown-timeout", "1")
    body = {"messages": [{"role": "user", "content": TEXT}], "stream": True}
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json=body, timeout=60) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if '"audio":{' in line)
        sim.proc.terminate()
        with pytest.raises(httpx.TransportError):
            list(lines)  # cut mid-stream: an error for the client, not a hang
    assert sim.proc.wait(timeout=15) == 0


def test_error_after_frames(start_sim: StartSim, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    sim = start_sim("--sim-error-after-frames", "10", "--sim-trace-file", str(trace), *FAST)
    body = {"messages": [{"role": "user", "content": TEXT}], "stream": True}
    r = httpx.post(f"{sim.url}/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.text.endswith("\n\ndata: [DONE]\n\n")
    error = json.loads(r.text.split("\n\n")[-3].removeprefix("data: "))["error"]
    assert error["code"] == 400 and "--sim-error-after-frames 10" in error["message"]
    speech = httpx.post(f"{sim.url}/v1/audio/speech", json=SPEECH)
    cut = speech.content.index(b'{"error": ')
    assert cut == 17 * 1920 and json.loads(speech.content[cut:])["error"]["type"] == "BadRequestError"
    deadline = time.monotonic() + 5
    while len(trace.read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    records = [json.loads(x) for x in trace.read_text().splitlines()]
    assert [r["status"] for r in records] == [200, 200] and all("error after" in r["error"] for r in records)
    assert [r["frames"] for r in records] == [17, 17]
