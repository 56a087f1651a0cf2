"""The HTTP API through the official openai client and raw HTTP: shapes, audio validity, errors.

tests/contract/ checks every row of docs/server-contract.md; this module keeps the simulator's own
checks: audio that is speech-like, deterministic per seed, traced, and the error paths.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.simulator import Sim, launch, wait_for_trace, wav_b64

MODEL = "higgs-audio-v2-generation-3B-base"
TEXT = "The quick brown fox jumps over the lazy dog."  # 44 chars -> ceil(44 / 15 * 25) = 74 frames
TEXT_FRAMES = 74
TEXT_TOKENS = TEXT_FRAMES + 10  # bos, 7 delay rows, the eos row and <|audio_eos|>
RATE = 24000
SAMPLES_PER_FRAME = 960


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    tmp = tmp_path_factory.mktemp("api")
    trace = tmp / "trace.jsonl"
    s = launch(
        ["--model", "bosonai/higgs-audio-v2-generation-3B-base", "--served-model-name", MODEL, "--limit-mm-per-prompt",
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
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="unused", max_retries=0, timeout=30)


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


def split_wavs(body: bytes) -> list[bytes]:
    """The PCM of each complete WAV file in a joined body (each header carries its own length)."""
    out = []
    while body:
        assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt " and body[36:40] == b"data"
        size = struct.unpack("<I", body[40:44])[0]
        out.append(body[44 : 44 + size])
        body = body[44 + size :]
    return out


def sse_payloads(resp: httpx.Response) -> list[str]:
    return [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]


def test_chat_non_streaming_returns_wav(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Speak clearly."}, {"role": "user", "content": TEXT}],
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.audio is not None and choice.message.audio.transcript == ""
    assert choice.message.audio.expires_at == 0 and choice.message.content == ""
    pcm, n = decode_wav(base64.b64decode(choice.message.audio.data))
    assert n == TEXT_FRAMES * SAMPLES_PER_FRAME
    assert_speech_like(pcm, TEXT_FRAMES)
    assert resp.usage is not None and resp.usage.completion_tokens == TEXT_TOKENS


def test_chat_streaming_one_event_per_token_and_chunk_cadence(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": TEXT * 2}], stream=True,
        stream_options={"include_usage": True}, audio={"voice": "alloy", "format": "pcm16"},
    )  # fmt: skip
    sizes, pcm, finish, usage, token_events = [], b"", None, None, 0
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        token_events += delta.role is None
        if delta.audio is not None:
            data = base64.b64decode(delta.audio.data)
            sizes.append(len(data) // (SAMPLES_PER_FRAME * 2))
            pcm += data
        finish = chunk.choices[0].finish_reason or finish
    frames = 147  # ceil(88 / 15 * 25)
    assert sizes == [17, 25, 25, 25, 25, 30]  # at steps 32, 68, 93, 118, 143 and the last (157)
    assert sum(sizes) == frames and finish == "stop"
    assert usage is not None and usage.completion_tokens == frames + 10 == token_events
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
    _, n = decode_wav(base64.b64decode(resp.choices[0].message.audio.data))  # type: ignore[union-attr]
    assert n == (30 - 8) * SAMPLES_PER_FRAME  # the bos row and 7 delay rows decode to no frame
    assert resp.usage is not None and resp.usage.completion_tokens == 30


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_speech_streamed_body(client: openai.OpenAI, fmt: str) -> None:
    with client.audio.speech.with_streaming_response.create(
        model=MODEL, voice="chadwick", input=TEXT, response_format=fmt
    ) as resp:
        assert resp.headers["content-type"] == "audio/mpeg"
        assert "x-request-id" not in resp.headers  # only with --enable-request-id-headers
        body = b"".join(resp.iter_bytes())
    if fmt == "wav":
        parts = split_wavs(body)
        assert [len(p) // (SAMPLES_PER_FRAME * 2) for p in parts] == [17, 25, 32]
        body = b"".join(parts)
    assert_speech_like(body, TEXT_FRAMES)


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
    resp = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    pcm, _ = decode_wav(base64.b64decode(resp.choices[0].message.audio.data))  # type: ignore[union-attr]
    assert_speech_like(pcm, TEXT_FRAMES)
    # 2 clips x (2 s x 25 + 2) tokens of audio in the prompt
    assert resp.usage is not None and resp.usage.prompt_tokens > 2 * 52
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TEXT}])
    assert plain.choices[0].message.audio.data != resp.choices[0].message.audio.data  # type: ignore[union-attr]


def test_listing_endpoints(sim: Sim) -> None:
    models = httpx.get(f"{sim.url}/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert models["data"][0]["root"] == "bosonai/higgs-audio-v2-generation-3B-base"
    assert models["data"][0]["max_model_len"] == 2048
    assert httpx.get(f"{sim.url}/version").json() == {"version": "0.8.5.dev0+higgs", "simulator": True}
    voices = httpx.get(f"{sim.url}/v1/audio/voices").json()
    assert voices[:3] == ["belinda", "broom_salesman", "chadwick"] and len(voices) == 8
    assert "SIMULATOR" in sim.log()


def test_metrics_count_requests(client: openai.OpenAI, sim: Sim) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TEXT}])
    text = httpx.get(f"{sim.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    labels = {"model_name": MODEL, "engine": "0"}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc"):
        assert families[name].type == "gauge"
        assert families[name].samples[0].labels == labels
    for name in ("time_to_first_token", "time_per_output_token", "e2e_request_latency", "request_queue_time"):
        assert families[f"vllm:{name}_seconds"].type == "histogram"
    gen = {s.name: s.value for s in families["vllm:generation_tokens"].samples}
    assert gen["vllm:generation_tokens_total"] >= TEXT_TOKENS
    assert families["vllm:prompt_tokens"].type == "counter"
    success = [s for s in families["vllm:request_success"].samples if s.name == "vllm:request_success_total"]
    assert sum(s.value for s in success) >= 1
    assert all(s.labels.items() >= labels.items() for s in success)
    assert {s.labels["finished_reason"] for s in success} == {"stop", "length", "abort"}


def test_trace_file_and_request_id(sim: Sim) -> None:
    r = httpx.post(
        f"{sim.url}/v1/audio/speech", headers={"X-Request-Id": "trace-me-1"},
        json={"model": MODEL, "input": TEXT, "voice": "mabel", "response_format": "pcm"},
    )  # fmt: skip
    assert r.status_code == 200 and "x-request-id" not in r.headers
    rec = wait_for_trace(Path(sim.trace_path), "trace-me-1")  # type: ignore[attr-defined]
    assert rec["endpoint"] == "/v1/audio/speech" and rec["status"] == 200 and rec["error"] is None
    assert rec["frames"] == TEXT_FRAMES and rec["audio_seconds"] == pytest.approx(TEXT_FRAMES / 25)
    assert rec["t_received"] <= rec["t_handler"] <= rec["t_first_audio"] <= rec["t_done"]
    chat = httpx.post(
        f"{sim.url}/v1/chat/completions", headers={"X-Request-Id": "trace-me-2"},
        json={"messages": [{"role": "user", "content": "Hi."}], "stream": True},
    )  # fmt: skip
    assert json.loads(chat.text.split("\n\n")[0][6:])["id"] == "chatcmpl-trace-me-2"
    rec = wait_for_trace(Path(sim.trace_path), "trace-me-2")  # type: ignore[attr-defined]
    assert rec["stream"] is True and rec["frames"] == 10


def error_of(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"object", "message", "type", "param", "code"}, body
    assert body["object"] == "error" and body["code"] == status and body["param"] is None
    return body["message"]


CHAT_URL = "/v1/chat/completions"
SPEECH_URL = "/v1/audio/speech"
HI = [{"role": "user", "content": "hi"}]
BAD_REQUESTS = [
    (CHAT_URL, {"model": MODEL}, 400, "messages"),
    (CHAT_URL, {"model": MODEL, "messages": []}, 400, "non-empty"),
    (CHAT_URL, {"model": "other-model", "messages": HI}, 404, "The model `other-model` does not exist."),
    (CHAT_URL, {"messages": [{"role": "user", "content": "x" * 9000}]}, 400, "maximum context length"),
    (CHAT_URL, {"messages": HI, "max_tokens": 5000}, 400, "maximum context"),
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
    (CHAT_URL, {"messages": HI, "audio": {"voice": "belinda"}}, 400, "audio.voice"),
    (CHAT_URL, {"messages": HI, "audio": {"format": "aac"}}, 400, "audio.format"),
    (CHAT_URL, {"messages": HI, "modalities": ["video"]}, 400, "modalities"),
    (CHAT_URL, {"messages": HI, "temperature": "hot"}, 400, "temperature"),
    (CHAT_URL, {"messages": HI, "top_p": 0}, 400, "top_p must be in (0, 1], got 0.0."),
    (CHAT_URL, {"messages": HI, "top_k": 0}, 400, "top_k must be -1 (disable), or at least 1, got 0."),
    (CHAT_URL, {"messages": HI, "max_tokens": -3}, 400, "max_tokens must be at least 1, got -3."),
    (SPEECH_URL, {"model": MODEL, "voice": "belinda"}, 400, "input"),
    (SPEECH_URL, {"model": MODEL, "input": "hi"}, 400, "voice"),
    (SPEECH_URL, {"input": "hi", "voice": "belinda"}, 400, "model"),
    (SPEECH_URL, {"model": MODEL, "input": "", "voice": "belinda"}, 400, "input"),
    (SPEECH_URL, {"model": MODEL, "input": "hi", "voice": "belinda", "response_format": "flac"}, 400,
     "response_format"),
    (SPEECH_URL, {"model": MODEL, "input": "hi", "voice": "belinda", "temperature": -1}, 400,
     "temperature must be non-negative, got -1.0."),
    (SPEECH_URL, {"model": "tts-1", "input": "hi", "voice": "belinda"}, 404, "The model `tts-1` does not exist."),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "needle"), BAD_REQUESTS)
def test_bad_requests(sim: Sim, path: str, body: dict, status: int, needle: str) -> None:
    message = error_of(httpx.post(sim.url + path, json=body), status)
    assert needle in message


def test_unknown_fields_are_accepted(sim: Sim) -> None:
    body = {"model": MODEL, "input": "hi", "voice": "belinda", "speed": 2.0, "stop": ["x"], "colour": "red"}
    assert httpx.post(sim.url + SPEECH_URL, json=body).status_code == 200
    assert "were present in the request but ignored" in sim.log()


def test_invalid_json_content_type_and_routing(sim: Sim) -> None:
    json_type = {"Content-Type": "application/json"}
    assert "JSON" in error_of(httpx.post(sim.url + CHAT_URL, content=b"{not json", headers=json_type), 400)
    for headers in ({}, {"Content-Type": "text/plain"}):
        r = httpx.post(sim.url + CHAT_URL, content=b"{}", headers=headers)
        assert r.status_code == 415
        assert r.json() == {"detail": "Unsupported Media Type: Only 'application/json' is allowed"}
    r = httpx.get(sim.url + "/v1/nothing-here")
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
    r = httpx.get(sim.url + CHAT_URL)
    assert (r.status_code, r.json()) == (405, {"detail": "Method Not Allowed"})


def test_openai_client_sees_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.audio.speech.create(model="tts-1", voice="belinda", input="hi", response_format="wav")
    with pytest.raises(openai.BadRequestError, match=r"audio\.voice"):
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            audio={"voice": "belinda", "format": "wav"},
        )
