"""The HTTP API through the official openai client and raw HTTP: shapes, audio validity, errors."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sim_helpers import Sim, launch, wait_for_trace, wav_b64

MODEL = "higgs-audio-v2-generation-3B-base"
TEXT = "The quick brown fox jumps over the lazy dog."  # 44 chars -> ceil(44 / 15 * 25) = 74 frames
TEXT_FRAMES = 74
RATE = 24000
SAMPLES_PER_FRAME = 960


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    tmp = tmp_path_factory.mktemp("api")
    trace = tmp / "trace.jsonl"
    s = launch(
        ["bosonai/higgs-audio-v2-generation-3B-base", "--served-model-name", MODEL, "--limit-mm-per-prompt",
         "audio=2", "--max-model-len", "2048", "--sim-slowdown", "0.05", "--sim-trace-file", str(trace)],
        tmp,
    )  # fmt: skip
    s.trace_path = trace  # type: ignore[attr-defined]
    try:
        s.wait_healthy()
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.base_url}/v1", api_key="unused", max_retries=0, timeout=30)


def assert_speech_like(pcm: bytes, frames: int) -> None:
    """Right length, not silent, and no 40 ms frame is digitally silent."""
    assert len(pcm) == frames * SAMPLES_PER_FRAME * 2
    samples = memoryview(pcm).cast("h")
    assert max(abs(x) for x in samples[::7]) > 1000
    for f in range(0, frames, 5):
        window = samples[f * SAMPLES_PER_FRAME : (f + 1) * SAMPLES_PER_FRAME]
        assert any(x != 0 for x in window), f"frame {f} is silent"


def decode_wav(data: bytes) -> tuple[bytes, int]:
    with wave.open(io.BytesIO(data), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        n = w.getnframes()
        return w.readframes(n), n


def test_chat_non_streaming_returns_wav(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Speak clearly."}, {"role": "user", "content": TEXT}],
        modalities=["text", "audio"],
        audio={"voice": "en_woman", "format": "wav"},
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.audio is not None and choice.message.audio.transcript == TEXT
    pcm, n = decode_wav(base64.b64decode(choice.message.audio.data))
    assert n == TEXT_FRAMES * SAMPLES_PER_FRAME
    assert_speech_like(pcm, TEXT_FRAMES)
    assert resp.usage is not None and resp.usage.completion_tokens == TEXT_FRAMES


def test_chat_streaming_chunk_cadence(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": TEXT * 2}], stream=True,
        stream_options={"include_usage": True}, audio={"voice": "belinda", "format": "pcm16"},
    )  # fmt: skip
    sizes, pcm, finish, usage = [], b"", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.audio is not None:
            data = base64.b64decode(delta.audio.data)
            sizes.append(len(data) // (SAMPLES_PER_FRAME * 2))
            pcm += data
        finish = chunk.choices[0].finish_reason or finish
    frames = 147  # ceil(88 / 15 * 25)
    assert sizes[0] == 32 and all(s == 25 for s in sizes[1:-1]) and 0 < sizes[-1] <= 25
    assert sum(sizes) == frames and finish == "stop"
    assert usage is not None and usage.completion_tokens == frames
    assert_speech_like(pcm, frames)


def test_streaming_is_deterministic_per_seed(client: openai.OpenAI) -> None:
    def run(seed: int) -> bytes:
        out = b""
        for chunk in client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": TEXT}], stream=True, seed=seed
        ):
            if chunk.choices and chunk.choices[0].delta.audio is not None:
                out += base64.b64decode(chunk.choices[0].delta.audio.data)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_max_tokens_caps_audio(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": TEXT}], max_tokens=30
    )
    assert resp.choices[0].finish_reason == "length"
    _, n = decode_wav(base64.b64decode(resp.choices[0].message.audio.data))
    assert n == 30 * SAMPLES_PER_FRAME


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_speech_streamed_body(client: openai.OpenAI, fmt: str) -> None:
    with client.audio.speech.with_streaming_response.create(
        model=MODEL, voice="chadwick", input=TEXT, response_format=fmt
    ) as resp:
        assert resp.headers["content-type"] == ("audio/wav" if fmt == "wav" else "audio/pcm")
        assert resp.headers["x-request-id"]
        parts = list(resp.iter_bytes())
    body = b"".join(parts)
    pcm = decode_wav(body)[0] if fmt == "wav" else body
    assert_speech_like(pcm, TEXT_FRAMES)


def test_voice_cloning_input_audio_and_data_url(client: openai.OpenAI) -> None:
    ref = wav_b64(2.0)
    messages = [
        {"role": "user", "content": "This is the reference transcript."},
        {"role": "assistant", "content": [
            {"type": "input_audio", "input_audio": {"data": ref, "format": "wav"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": TEXT},
            {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{ref}"}},
        ]},
    ]  # fmt: skip
    resp = client.chat.completions.create(model=MODEL, messages=messages)
    pcm, _ = decode_wav(base64.b64decode(resp.choices[0].message.audio.data))
    assert_speech_like(pcm, TEXT_FRAMES)
    # 2 clips x (2 s x 25 + 2) tokens of audio in the prompt
    assert resp.usage.prompt_tokens > 2 * 52


def test_listing_endpoints(sim: Sim) -> None:
    models = httpx.get(f"{sim.base_url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    version = httpx.get(f"{sim.base_url}/version").json()
    assert version["simulator"] is True and "higgs-audio-vllm" in version["emulates"]
    voices = httpx.get(f"{sim.base_url}/v1/audio/voices").json()
    assert {"belinda", "en_man", "broom_salesman"} <= set(voices["voices"])
    assert "SIMULATOR" in sim.log()


def test_metrics_count_requests(client: openai.OpenAI, sim: Sim) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TEXT}])
    text = httpx.get(f"{sim.base_url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc"):
        assert families[name].type == "gauge"
        assert families[name].samples[0].labels == {"model_name": MODEL}
    assert families["vllm:time_to_first_token_seconds"].type == "histogram"
    assert families["vllm:e2e_request_latency_seconds"].type == "histogram"
    gen = {s.name: s.value for s in families["vllm:generation_tokens"].samples}
    assert gen["vllm:generation_tokens_total"] >= TEXT_FRAMES
    assert families["vllm:prompt_tokens"].type == "counter"
    success = [s for s in families["vllm:request_success"].samples if s.name == "vllm:request_success_total"]
    assert sum(s.value for s in success) >= 1
    assert all(s.labels["model_name"] == MODEL for s in success)


def test_trace_file_and_request_id(sim: Sim) -> None:
    r = httpx.post(
        f"{sim.base_url}/v1/audio/speech", headers={"X-Request-Id": "trace-me-1"},
        json={"model": MODEL, "input": TEXT, "voice": "mabel", "response_format": "pcm"},
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-me-1"
    rec = wait_for_trace(Path(sim.trace_path), "trace-me-1")  # type: ignore[attr-defined]
    assert rec["endpoint"] == "/v1/audio/speech" and rec["status"] == 200 and rec["error"] is None
    assert rec["frames"] == TEXT_FRAMES and rec["audio_seconds"] == pytest.approx(TEXT_FRAMES / 25)
    assert rec["t_received"] <= rec["t_handler"] <= rec["t_first_audio"] <= rec["t_done"]


def error_of(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) >= {"message", "type", "code"} and body["error"]["code"] == status
    return body["error"]["message"]


CHAT_URL = "/v1/chat/completions"
BAD_REQUESTS = [
    (CHAT_URL, {"model": MODEL}, 400, "messages"),
    (CHAT_URL, {"model": MODEL, "messages": []}, 400, "non-empty"),
    (CHAT_URL, {"model": "other-model", "messages": [{"role": "user", "content": "hi"}]}, 400, "other-model"),
    (CHAT_URL, {"messages": [{"role": "user", "content": "x" * 9000}]}, 400, "maximum context length"),
    (CHAT_URL, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}, 400, "maximum context"),
    (CHAT_URL, {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": wav_b64(0.2)}} for _ in range(3)] + [
        {"type": "text", "text": "hi"}]}]}, 400, "At most 2 audio"),
    (CHAT_URL, {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "not base64!!"}}, {"type": "text", "text": "hi"}]}]},
     400, "base64"),
    (CHAT_URL, {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFFjunk").decode()}},
        {"type": "text", "text": "hi"}]}]}, 400, "not a valid WAV"),
    (CHAT_URL, {"messages": [{"role": "user", "content": [
        {"type": "audio_url", "audio_url": {"url": "https://example.com/ref.wav"}},
        {"type": "text", "text": "hi"}]}]}, 400, "no network access"),
    (CHAT_URL, {"messages": [{"role": "user", "content": "hi"}], "audio": {"voice": "nobody"}},
     404, "nobody"),
    ("/v1/audio/speech", {"model": MODEL, "voice": "belinda"}, 400, "input"),
    ("/v1/audio/speech", {"model": MODEL, "input": "", "voice": "belinda"}, 400, "input"),
    ("/v1/audio/speech", {"model": MODEL, "input": "hi", "voice": "nobody"}, 404, "nobody"),
    ("/v1/audio/speech", {"model": MODEL, "input": "hi", "response_format": "mp3"}, 400, "mp3"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "needle"), BAD_REQUESTS)
def test_bad_requests(sim: Sim, path: str, body: dict, status: int, needle: str) -> None:
    message = error_of(httpx.post(sim.base_url + path, json=body), status)
    assert needle in message


def test_invalid_json_and_unknown_route(sim: Sim) -> None:
    json_type = {"Content-Type": "application/json"}
    assert "JSON" in error_of(
        httpx.post(sim.base_url + CHAT_URL, content=b"{not json", headers=json_type), 400
    )
    assert "application/json" in error_of(httpx.post(sim.base_url + CHAT_URL, content=b"{}"), 400)
    error_of(httpx.get(sim.base_url + "/v1/nothing-here"), 404)
    assert "POST" in error_of(httpx.get(sim.base_url + CHAT_URL), 405)


def test_openai_client_sees_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="nobody"):
        client.audio.speech.create(model=MODEL, voice="nobody", input="hi", response_format="wav")
    with pytest.raises(openai.BadRequestError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
