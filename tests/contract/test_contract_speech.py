"""Contract rows SP1-SP11: ``POST /v1/audio/speech``, and the known fault K2 (voices replaced)."""

from __future__ import annotations

import io
import json
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.contract import (
    FRAME_BYTES,
    SAMPLES_PER_FRAME,
    SERVED,
    StartSim,
    cadence,
    decode_file,
    error_body,
    make_wav,
    split_mp3s,
    split_wavs,
    text_frames,
)
from tests.support.simulator import Sim

SPEECH = "/v1/audio/speech"
TEXT = "The quick brown fox jumps over the lazy dog, twice over and then once more."  # 76 chars
BODY = {"model": SERVED, "input": TEXT, "voice": "en_woman"}


def speak(sim: Sim, **changes: object) -> httpx.Response:
    r = httpx.post(sim.url + SPEECH, json={**BODY, **changes}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def counter(sim: Sim, name: str) -> float:
    families = text_string_to_metric_families(httpx.get(f"{sim.url}/metrics").text)
    return sum(s.value for f in families if f.name == name for s in f.samples if s.name == f"{name}_total")


@pytest.mark.contract("SP1")
def test_only_json_bodies(sim: Sim) -> None:
    raw = json.dumps(BODY).encode()
    for headers in (
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ):
        r = httpx.post(sim.url + SPEECH, content=raw, headers=headers)
        assert r.status_code == 415, headers
        assert r.json() == {"detail": "Unsupported Media Type: Only 'application/json' is allowed"}
    ok = httpx.post(
        sim.url + SPEECH, content=raw, headers={"Content-Type": "Application/JSON; charset=utf-8"}
    )
    assert ok.status_code == 200


@pytest.mark.contract("SP2", "X4")
def test_required_fields_formats_and_optional_fields(sim: Sim) -> None:
    for field in ("model", "input", "voice"):
        body = {k: v for k, v in BODY.items() if k != field}
        message = error_body(httpx.post(sim.url + SPEECH, json=body), 400)["message"]
        assert field in message  # X4: the simulator's words, naming the field
    for fmt in ("flac", "opus", "aac", "pcm16", "WAV"):
        error_body(httpx.post(sim.url + SPEECH, json={**BODY, "response_format": fmt}), 400)
    default = speak(sim).content  # response_format defaults to pcm: raw samples, no header
    assert default[:4] != b"RIFF" and len(default) == text_frames(TEXT) * FRAME_BYTES
    optional = {
        "speed": 1.5, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "stop": ["."], "audio_chunk_size": 25,
        "audio_chunk_overlap_size": 25, "response_format": "pcm", "not_a_field": {"any": "thing"},
    }  # fmt: skip
    assert speak(sim, **optional).content == default  # accepted; sampling does not change the simulator
    assert "were present in the request but ignored" in sim.log()


@pytest.mark.contract("SP3", "ER2")
def test_unknown_model_is_404(sim: Sim) -> None:
    r = httpx.post(sim.url + SPEECH, json={**BODY, "model": "tts-1"})
    assert error_body(r, 404, "NotFoundError") == {
        "object": "error",
        "message": "The model `tts-1` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }


@pytest.mark.contract("SP4", "K2")
def test_unknown_voice_falls_back_to_the_first_preset(sim: Sim, start_sim: StartSim, tmp_path: Path) -> None:
    fallback = speak(sim, voice="en_woman_1")  # the fork's own example voice, not a preset here
    assert fallback.content == speak(sim, voice="belinda").content != speak(sim, voice="vex").content
    assert "Unsupported voice: en_woman_1, using default voice: belinda" in sim.log()
    empty = tmp_path / "none"
    empty.mkdir()
    bare = start_sim("--voice-presets-dir", str(empty))
    r = httpx.post(bare.url + SPEECH, json=BODY)
    assert (r.status_code, r.text) == (500, "Internal Server Error")
    assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.contract("SP5")
@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("top_p", 2, "top_p must be in (0, 1], got 2.0."), ("top_p", 0, "top_p"),
     ("temperature", -0.5, "temperature must be non-negative, got -0.5."),
     ("top_k", 0, "top_k must be -1 (disable), or at least 1, got 0."), ("top_k", -2, "top_k"),
     ("max_tokens", 0, "max_tokens must be at least 1, got 0.")],
)  # fmt: skip
def test_sampling_values_the_engine_refuses(sim: Sim, field: str, value: float, needle: str) -> None:
    body = error_body(httpx.post(sim.url + SPEECH, json={**BODY, field: value}), 400)
    assert needle in body["message"]


@pytest.mark.contract("SP6")
@pytest.mark.parametrize("fmt", ["wav", "mp3", "pcm"])
def test_content_type_is_audio_mpeg_whatever_the_format(sim: Sim, fmt: str) -> None:
    r = speak(sim, response_format=fmt)
    assert r.headers["content-type"] == "audio/mpeg"
    assert r.headers.get("transfer-encoding") == "chunked"  # a stream, no Content-Length


@pytest.mark.contract("SP7", "SP8")
@pytest.mark.parametrize("text", ["Hi.", "A sentence of middling length.", TEXT, TEXT * 4])
def test_wav_body_is_one_complete_file_per_chunk(sim: Sim, text: str) -> None:
    frames = text_frames(text)
    _, chunks, _ = cadence(frames)
    wav = speak(sim, input=text, response_format="wav").content
    parts = split_wavs(wav)
    assert [len(p) // FRAME_BYTES for p in parts] == [size for _, size in chunks]
    pcm = speak(sim, input=text, response_format="pcm").content
    assert b"".join(parts) == pcm and len(pcm) == frames * FRAME_BYTES  # pcm chunks join into one stream
    with wave.open(io.BytesIO(wav), "rb") as w:  # a reader that stops at the first header...
        assert w.getnframes() == chunks[0][1] * SAMPLES_PER_FRAME  # ...sees only the first chunk


@pytest.mark.contract("SP7", "X5")
def test_mp3_body_is_one_complete_file_per_chunk(sim: Sim) -> None:
    frames = text_frames(TEXT * 2)
    _, chunks, _ = cadence(frames)
    files = split_mp3s(speak(sim, input=TEXT * 2, response_format="mp3").content)
    assert len(files) == len(chunks) > 2
    pcm = speak(sim, input=TEXT * 2, response_format="pcm").content
    decoded = [decode_file(f, "mp3") for f in files]
    assert [len(d) for d in decoded] == [size * SAMPLES_PER_FRAME for _, size in chunks]
    reference = np.frombuffer(pcm, dtype="<i2")[: len(decoded[0])].astype(float)
    assert np.corrcoef(reference, decoded[0].astype(float))[0, 1] > 0.9  # the same audio, lossy


@pytest.mark.contract("SP8")
def test_chunks_are_sent_as_they_are_decoded(start_sim: StartSim) -> None:
    slow = start_sim(slowdown="3")  # ~11 ms a step: 200 steps take ~2 s
    text = TEXT * 2
    _, chunks, _ = cadence(text_frames(text))
    arrivals: list[float] = []
    body = b""
    started = time.monotonic()
    with httpx.stream("POST", slow.url + SPEECH, json={**BODY, "input": text, "response_format": "wav"}) as r:
        for data in r.iter_raw():
            body += data
            arrivals.append(time.monotonic() - started)
    total = time.monotonic() - started
    assert [len(p) // FRAME_BYTES for p in split_wavs(body)] == [size for _, size in chunks]
    assert arrivals[0] < total * 0.35  # the first chunk at step 32 of ~260, not at the end
    assert len(arrivals) >= len(chunks) // 2  # several writes, not one body


@pytest.mark.contract("SP9")
def test_max_tokens_caps_the_audio_and_stop_is_ignored(sim: Sim, start_sim: StartSim) -> None:
    _, chunks, frames = cadence(text_frames(TEXT), max_tokens=40)
    parts = split_wavs(speak(sim, response_format="wav", max_tokens=40).content)
    assert [len(p) // FRAME_BYTES for p in parts] == [size for _, size in chunks] and frames == 32
    assert speak(sim, stop=["fox"]).content == speak(sim).content
    short = start_sim("--max-model-len", "300")  # no max_tokens: the rest of --max-model-len
    before = counter(short, "vllm:prompt_tokens"), counter(short, "vllm:generation_tokens")
    pcm = speak(short, input=TEXT * 6).content
    prompt = counter(short, "vllm:prompt_tokens") - before[0]
    generated = counter(short, "vllm:generation_tokens") - before[1]
    assert prompt + generated == 300 and len(pcm) == (generated - 8) * FRAME_BYTES


@pytest.mark.contract("SP10", "X10")
def test_an_error_mid_stream_is_appended_to_the_body(start_sim: StartSim) -> None:
    failing = start_sim("--sim-error-after-frames", "20")
    r = httpx.post(failing.url + SPEECH, json={**BODY, "input": TEXT * 2, "response_format": "wav"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    cut = r.content.index(b'{"error"')
    assert [len(p) // FRAME_BYTES for p in split_wavs(r.content[:cut])] == [17, 25]
    error = json.loads(r.content[cut:])
    assert error == {
        "error": {"object": "error", "message": error["error"]["message"], "type": "BadRequestError",
                  "param": None, "code": 400}
    }  # fmt: skip


@pytest.mark.contract("SP11")
def test_the_prompt_carries_the_presets_reference_audio(start_sim: StartSim, tmp_path: Path) -> None:
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "short.wav").write_bytes(make_wav(1.0))
    (presets / "long.wav").write_bytes(make_wav(5.0))
    config = {name: {"transcript": "Same words.", "audio_file": f"{name}.wav"} for name in ("short", "long")}
    (presets / "config.json").write_text(json.dumps(config))
    sim = start_sim("--voice-presets-dir", str(presets))
    sizes = []
    for voice in ("short", "long"):
        before = counter(sim, "vllm:prompt_tokens")
        speak(sim, voice=voice)
        sizes.append(counter(sim, "vllm:prompt_tokens") - before)
    assert sizes[1] - sizes[0] == 4 * 25  # 25 tokens per second of the preset's WAV
    assert sizes[0] > 25 + len(TEXT) / 4  # system prompt, transcript, 1 s of audio and the text
