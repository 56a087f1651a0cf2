"""Contract rows CH1-CH10: ``POST /v1/chat/completions``, and the known fault K4 (no audio: 500)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.contract import (
    FRAME_BYTES,
    SAMPLES_PER_FRAME,
    SERVED,
    STOP,
    StartSim,
    audio_frames,
    cadence,
    decode_file,
    error_body,
    sse_events,
    text_frames,
    wav_b64,
)
from tests.support.simulator import Sim

CHAT = "/v1/chat/completions"
TEXT = "The quick brown fox jumps over the lazy dog, twice over and then once more."  # 76 chars
MESSAGES = [{"role": "user", "content": TEXT}]
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")
EVENT_KEYS = {"id", "object", "created", "model", "choices"}


def chat(sim: Sim, **body: Any) -> httpx.Response:
    return httpx.post(sim.url + CHAT, json={"messages": MESSAGES, **body}, timeout=60)


def audio_of(resp: httpx.Response) -> bytes:
    assert resp.status_code == 200, resp.text
    return base64.b64decode(resp.json()["choices"][0]["message"]["audio"]["data"])


def stream(sim: Sim, **body: Any) -> list[Any]:
    r = chat(sim, stream=True, **body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return sse_events(r.text)


def token_events(events: list[Any]) -> list[dict[str, Any]]:
    """The events after the role event that carry a choice, up to and with the finish event."""
    out = []
    for event in events[1:]:
        if event == "[DONE]" or not event["choices"]:
            continue
        out.append(event)
        if event["choices"][0]["finish_reason"] is not None:
            break
    return out


@pytest.mark.contract("CH1")
def test_only_json_bodies(sim: Sim) -> None:
    raw = json.dumps({"messages": MESSAGES}).encode()
    for headers in ({}, {"Content-Type": "text/plain"}):
        r = httpx.post(sim.url + CHAT, content=raw, headers=headers)
        assert r.status_code == 415
        assert r.json() == {"detail": "Unsupported Media Type: Only 'application/json' is allowed"}


@pytest.mark.contract("CH2")
def test_audio_voice_is_an_openai_name_and_chooses_nothing(sim: Sim) -> None:
    clips = {audio_of(chat(sim, audio={"voice": voice, "format": "wav"})) for voice in OPENAI_VOICES}
    assert len(clips) == 1  # every name gives the same voice
    assert audio_of(chat(sim)) in clips and audio_of(chat(sim, audio={})) in clips  # format wav by default
    for voice in ("belinda", "en_woman", "nova"):
        message = error_body(chat(sim, audio={"voice": voice, "format": "wav"}), 400)["message"]
        assert "audio.voice" in message
    for fmt in ("aac", "pcm", "WAV"):
        assert "audio.format" in error_body(chat(sim, audio={"format": fmt}), 400)["message"]


@pytest.mark.contract("CH3")
def test_modalities_are_ignored(sim: Sim) -> None:
    wanted = audio_of(chat(sim))
    for modalities in (["text"], ["audio"], ["text", "audio"], []):
        assert audio_of(chat(sim, modalities=modalities)) == wanted
    error_body(chat(sim, modalities=["video"]), 400)


@pytest.mark.contract("CH4", "X1")
def test_the_voice_comes_from_reference_audio_in_the_messages(sim: Sim) -> None:
    ref = wav_b64(2.0, 180.0)

    def cloned(part: dict[str, Any]) -> bytes:
        messages = [
            {"role": "user", "content": "The reference transcript."},
            {"role": "assistant", "content": [part]},
            {"role": "user", "content": TEXT},
        ]
        return audio_of(chat(sim, messages=messages))

    via_input = cloned({"type": "input_audio", "input_audio": {"data": ref, "format": "wav"}})
    via_url = cloned({"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{ref}"}})
    other = cloned({"type": "input_audio", "input_audio": {"data": wav_b64(2.0, 300.0), "format": "wav"}})
    own = audio_of(chat(sim))
    assert via_input == via_url  # the same reference, either way
    assert len({via_input, other, own}) == 3  # another reference or none: another voice...
    assert len(via_input) == len(other) == len(own)  # ...speaking the same text (X1)


@pytest.mark.contract("CH5", "X2")
@pytest.mark.parametrize(("fmt", "container"), [("wav", "wav"), ("mp3", "mp3"), ("flac", "flac")])
def test_non_streamed_audio_is_a_whole_file(sim: Sim, fmt: str, container: str) -> None:
    r = chat(sim, audio={"voice": "alloy", "format": fmt})
    body = r.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage", "prompt_logprobs"}
    assert (
        body["object"] == "chat.completion" and body["model"] == SERVED and body["id"].startswith("chatcmpl-")
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] == ""  # X2: no text
    audio = message["audio"]
    assert set(audio) == {"id", "data", "expires_at", "transcript"}
    assert audio["expires_at"] == 0 and audio["transcript"] == "" and audio["id"].startswith("audio-")
    samples = decode_file(base64.b64decode(audio["data"]), container)
    frames = text_frames(TEXT)
    assert len(samples) == frames * SAMPLES_PER_FRAME
    usage = body["usage"]
    assert usage["completion_tokens"] == frames + 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.contract("CH5")
def test_pcm16_and_opus_fail_after_the_whole_generation(start_sim: StartSim) -> None:
    slow = start_sim(slowdown="2")  # ~7 ms a step
    text = TEXT * 2
    started = time.monotonic()
    assert chat(slow, messages=[{"role": "user", "content": text}]).status_code == 200
    whole = time.monotonic() - started
    for fmt in ("pcm16", "opus"):
        started = time.monotonic()
        r = chat(slow, messages=[{"role": "user", "content": text}], audio={"format": fmt})
        elapsed = time.monotonic() - started
        assert error_body(r, 400)["message"] == f"Unknown format: '{fmt}'"
        assert elapsed > 0.8 * whole > 0.5, (elapsed, whole)


@pytest.mark.contract("CH5")
def test_length_finish_and_usage(sim: Sim) -> None:
    r = chat(sim, max_completion_tokens=40)
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert len(decode_file(audio_of(r), "wav")) == (40 - 8) * SAMPLES_PER_FRAME
    assert r.json()["usage"]["completion_tokens"] == 40


@pytest.mark.contract("CH6")
def test_one_event_per_token_with_audio_in_the_cadence(sim: Sim) -> None:
    text = TEXT * 2
    events = stream(sim, messages=[{"role": "user", "content": text}], stream_options={"include_usage": True})
    steps, chunks, frames = cadence(text_frames(text))
    first = events[0]
    assert set(first) == EVENT_KEYS and first["object"] == "chat.completion.chunk"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    tokens = token_events(events)
    assert len(tokens) == steps == events[-2]["usage"]["completion_tokens"]
    audio_at = [(i + 1, audio_frames(e)) for i, e in enumerate(tokens) if audio_frames(e)]
    assert audio_at == chunks  # 17 frames at step 32, 25 at 68, 93, ... the rest at the end
    for event in tokens[:-1]:
        assert (
            set(event) == EVENT_KEYS and event["id"] == first["id"] and event["created"] == first["created"]
        )
        [choice] = event["choices"]
        assert set(choice) == {"index", "delta", "logprobs", "finish_reason"}
        delta = choice["delta"]
        if delta["audio"] is None:
            assert delta == {"content": "", "audio": None}
        else:
            assert set(delta["audio"]) == {"id", "data", "expires_at", "transcript"}
    pcm = b"".join(
        base64.b64decode(e["choices"][0]["delta"]["audio"]["data"]) for e in tokens if audio_frames(e)
    )
    assert len(pcm) == frames * FRAME_BYTES
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 1000  # int16 LE speech-like samples


@pytest.mark.contract("CH7")
def test_stopped_stream_ends_with_audio_in_the_finish_event(sim: Sim) -> None:
    events = stream(sim, stream_options={})  # include_usage defaults to true
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    usage = events[-2]
    assert usage["choices"] == [] and set(usage["usage"]) == {
        "prompt_tokens",
        "total_tokens",
        "completion_tokens",
    }
    finish = events[-3]["choices"][0]
    assert finish["finish_reason"] == "stop" and finish["stop_reason"] is None
    assert finish["delta"]["content"] == "" and finish["delta"]["audio"]["data"]
    assert stream(sim)[-2]["choices"][0]["finish_reason"] == "stop"  # no stream_options: no usage event


@pytest.mark.contract("CH7")
def test_a_length_cut_sends_the_last_audio_after_the_finish_event(sim: Sim) -> None:
    events = stream(sim, max_tokens=93, stream_options={"include_usage": True})
    _, chunks, frames = cadence(text_frames(TEXT), max_tokens=93)
    assert chunks[-2:] == [(93, 25), (93, 18)]
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 93
    finish, after = events[-4]["choices"][0], events[-3]["choices"][0]
    assert finish["finish_reason"] == "length" and audio_frames(events[-4]) == 25
    assert set(after) == {"index", "delta", "finish_reason"} and after["finish_reason"] is None
    assert set(after["delta"]) == {"audio"} and audio_frames(events[-3]) == 18
    assert sum(audio_frames(e) for e in events if isinstance(e, dict)) == frames
    short = stream(sim, max_tokens=40)  # no chunk boundary at the last step: finish carries no audio
    assert short[-3]["choices"][0]["delta"] == {"content": "", "audio": None}
    assert short[-3]["choices"][0]["finish_reason"] == "length" and audio_frames(short[-2]) == 15


@pytest.mark.contract("CH8", "X10")
def test_an_error_mid_stream_becomes_an_event(start_sim: StartSim) -> None:
    failing = start_sim("--sim-error-after-frames", "20")
    r = httpx.post(failing.url + CHAT, json={"messages": MESSAGES, "stream": True})
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert set(error) == {"object", "message", "type", "param", "code"} and error["code"] == 400
    assert sum(audio_frames(e) for e in events[:-2]) == 17 + 25  # the error after the chunk that passed 20
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-2])


@pytest.mark.contract("CH9", "ER2")
def test_unknown_model_missing_messages_and_the_examples_stop_list(sim: Sim) -> None:
    body = error_body(chat(sim, model="gpt-4o-audio-preview"), 404, "NotFoundError")
    assert body["message"] == "The model `gpt-4o-audio-preview` does not exist."
    r = httpx.post(sim.url + CHAT, json={"model": SERVED})
    assert "messages" in error_body(r, 400)["message"]
    assert audio_of(chat(sim, stop=STOP)) == audio_of(chat(sim))
    assert audio_of(chat(sim, model=SERVED)) == audio_of(chat(sim))  # the model field is optional


@pytest.mark.contract("CH10")
def test_default_max_tokens_is_the_rest_of_the_context(start_sim: StartSim) -> None:
    short = start_sim("--max-model-len", "300")
    r = chat(short, messages=[{"role": "user", "content": TEXT * 6}])
    usage = r.json()["usage"]
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert usage["total_tokens"] == 300
    assert len(decode_file(audio_of(r))) == (usage["completion_tokens"] - 8) * SAMPLES_PER_FRAME


@pytest.mark.contract("K4")
def test_a_generation_without_audio_fails_the_non_streamed_response(sim: Sim) -> None:
    r = chat(sim, max_tokens=10)  # bos and delay rows only: nothing to decode
    assert (r.status_code, r.text) == (500, "Internal Server Error")
    events = stream(sim, max_tokens=10)
    assert all(audio_frames(e) == 0 for e in events if isinstance(e, dict)) and events[-1] == "[DONE]"
    assert events[-2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.contract("X8")
def test_a_remote_audio_url_is_refused_for_want_of_network(sim: Sim) -> None:
    part = {"type": "audio_url", "audio_url": {"url": "https://example.com/voice.wav"}}
    messages = [
        {"role": "user", "content": "A reference."},
        {"role": "assistant", "content": [part]},
        {"role": "user", "content": "Say this."},
    ]
    r = httpx.post(sim.url + CHAT, json={"messages": messages}, timeout=30)
    assert r.status_code == 400 and r.json()["object"] == "error"
    assert "network" in r.json()["message"]


@pytest.mark.contract("X9")
def test_nothing_to_say_is_a_400(sim: Sim) -> None:
    r = httpx.post(sim.url + CHAT, json={"messages": [{"role": "system", "content": "Hi."}]}, timeout=30)
    assert r.status_code == 400 and r.json()["type"] == "BadRequestError"
    speech = {"model": SERVED, "input": "", "voice": "belinda"}
    r = httpx.post(sim.url + "/v1/audio/speech", json=speech, timeout=30)
    assert r.status_code == 400 and "input" in r.json()["message"]
