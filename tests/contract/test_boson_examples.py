"""Boson's published clients, request for request, and what the server's source says they get back.

Requests written from reading (not copying) the examples:
- boson-ai/higgs-audio@f04f5df ``examples/vllm/run_chat_completion.py``: voice_clone (streamed and
  not), smart_voice, multispeaker (streamed with include_usage, and not);
- boson-ai/higgs-audio-vllm ``examples/online_serving/boson_audio_speech.py`` and
  ``boson_chat_completion_client_for_multimodal.py`` with their default arguments;
- the fork's speech benchmark ``benchmarks/boson_benchmarks/audio_speech_api.py`` at f20eb294.
The model comes from ``GET /v1/models`` as in the examples. The reference clip is our own 24 kHz tone
(the examples read belinda.wav / en_woman_1.wav). The examples read a streamed delta as
``delta.audio["data"]``, which openai>=1.x's typed ``ChoiceDeltaAudio`` no longer allows; these tests
read ``delta.audio.data``, the same field.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from tests.support.contract import (
    FRAME_BYTES,
    SAMPLES_PER_FRAME,
    SERVED,
    cadence,
    decode_file,
    text_frames,
    wav_b64,
)
from tests.support.simulator import Sim

pytestmark = pytest.mark.contract("CH4", "CH5", "CH6", "CH7", "CH9", "SP4", "SP6", "E2", "K2")

STOP = ["<|eot_id|>", "<|end_of_text|>", "<|audio_eos|>"]
SMART_SYSTEM = (
    "Generate audio following instruction.\n\n<|scene_desc_start|>\nAudio is recorded from a quiet room.\n"
    "<|scene_desc_end|>"
)
SMART_TEXT = (
    "The sun rises in the east and sets in the west. This simple fact has been observed by humans for "
    "thousands of years."
)
CLONE_REFERENCE_TEXT = "A short sentence read aloud for the voice reference."
CLONE_TEXT = (
    "Hey there! I'm your friendly voice twin in the making. Pick a voice preset below or upload your own "
    "audio - let's clone some vocals and bring your voice to life!"
)
MULTI_SYSTEM = (
    "You are an AI assistant designed to convert text into speech.\nIf the user's message includes a "
    "[SPEAKER*] tag, do not read out the tag and generate speech for the following text, using the "
    "specified voice.\nIf no speaker tag is present, select a suitable voice on your own.\n\n"
    "<|scene_desc_start|>\nSPEAKER0: feminine\nSPEAKER1: masculine\n<|scene_desc_end|>"
)
MULTI_TEXT = (
    "[SPEAKER0] You took the last slice without asking.\n[SPEAKER1] It was sitting there for an hour!\n"
    "[SPEAKER0] That is not the point and you know it.\n[SPEAKER1] Fine, I will buy another pizza."
)
SAMPLING = {"temperature": 1.0, "top_p": 0.95, "extra_body": {"top_k": 50}}


@pytest.fixture(scope="module")
def client(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="EMPTY", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    model = client.models.list().data[0].id  # as every example does
    assert model == SERVED
    return model


def clone_messages() -> list[dict]:
    return [
        {"role": "user", "content": CLONE_REFERENCE_TEXT},
        {"role": "assistant", "content": [{"type": "input_audio", "input_audio": {"data": wav_b64(3.0), "format": "wav"}}]},
        {"role": "user", "content": CLONE_TEXT},
    ]  # fmt: skip


def streamed_pcm(chunks: Iterator) -> tuple[bytes, list]:
    """The example's loop: every chunk whose delta has audio adds its decoded data."""
    pcm, others = b"", []
    for chunk in chunks:
        if chunk.choices and getattr(chunk.choices[0].delta, "audio", None):
            pcm += base64.b64decode(chunk.choices[0].delta.audio.data)
        else:
            others.append(chunk)
    return pcm, others


def wav_frames(data: str) -> int:
    samples = decode_file(base64.b64decode(data), "wav")  # the examples save the bytes as .wav
    assert len(samples) % SAMPLES_PER_FRAME == 0
    return len(samples) // SAMPLES_PER_FRAME


def test_voice_clone(client: openai.OpenAI, model: str) -> None:
    resp = client.chat.completions.create(
        messages=clone_messages(), model=model, max_completion_tokens=500, stream=False,  # type: ignore[arg-type]
        modalities=["text", "audio"], stop=STOP, **SAMPLING,  # type: ignore[arg-type]
    )  # fmt: skip
    message = resp.choices[0].message
    assert message.content == "" and resp.choices[0].finish_reason == "stop"
    assert wav_frames(message.audio.data) == text_frames(CLONE_TEXT)  # type: ignore[union-attr]


def test_voice_clone_streamed(client: openai.OpenAI, model: str) -> None:
    started = time.monotonic()
    chunks = client.chat.completions.create(
        messages=clone_messages(), model=model, max_completion_tokens=500, stream=True,  # type: ignore[arg-type]
        modalities=["text", "audio"], stop=STOP, **SAMPLING,  # type: ignore[arg-type]
    )  # fmt: skip
    first_audio = None
    pcm = b""
    for chunk in chunks:
        if chunk.choices and getattr(chunk.choices[0].delta, "audio", None):
            first_audio = first_audio or time.monotonic() - started
            pcm += base64.b64decode(chunk.choices[0].delta.audio.data)  # type: ignore[union-attr]
    total = time.monotonic() - started
    frames = text_frames(CLONE_TEXT)
    assert len(pcm) == frames * FRAME_BYTES  # int16 PCM the example writes at 24 kHz
    assert first_audio is not None and first_audio < total


def test_smart_voice(client: openai.OpenAI, model: str) -> None:
    resp = client.chat.completions.create(
        messages=[{"role": "system", "content": SMART_SYSTEM}, {"role": "user", "content": SMART_TEXT}],
        model=model, modalities=["text", "audio"], stop=STOP, **SAMPLING,  # type: ignore[arg-type]
    )  # fmt: skip
    assert resp.choices[0].message.content == ""
    assert wav_frames(resp.choices[0].message.audio.data) == text_frames(SMART_TEXT)  # type: ignore[union-attr]


def test_multispeaker_streamed_with_usage(client: openai.OpenAI, model: str) -> None:
    chunks = client.chat.completions.create(
        messages=[{"role": "system", "content": MULTI_SYSTEM}, {"role": "user", "content": MULTI_TEXT}],
        model=model, stream=True, stream_options={"include_usage": True}, stop=STOP,
        modalities=["text", "audio"], **SAMPLING,  # type: ignore[arg-type]
    )  # fmt: skip
    pcm, others = streamed_pcm(chunks)
    steps, _, frames = cadence(text_frames(MULTI_TEXT))
    assert len(pcm) == frames * FRAME_BYTES
    # What the example prints: the role event, the token events without audio, the usage event.
    assert others[0].choices[0].delta.role == "assistant"
    assert others[-1].choices == [] and others[-1].usage.completion_tokens == steps  # type: ignore[union-attr]
    assert len(others) == 1 + steps - len(cadence(text_frames(MULTI_TEXT))[1]) + 1


def test_multispeaker_not_streamed_is_refused_for_its_stream_options(
    client: openai.OpenAI, model: str
) -> None:
    """The example sends stream_options with stream=False: the request model refuses that (400)."""
    with pytest.raises(openai.BadRequestError, match="Stream options can only be defined when `stream=True`"):
        client.chat.completions.create(
            messages=[{"role": "system", "content": MULTI_SYSTEM}, {"role": "user", "content": MULTI_TEXT}],
            model=model, stream=False, stream_options={"include_usage": True}, stop=STOP,
            modalities=["text", "audio"], **SAMPLING,  # type: ignore[arg-type]
        )  # fmt: skip


def test_fork_speech_example_defaults(client: openai.OpenAI, model: str, sim: Sim) -> None:
    """boson_audio_speech.py: voice en_woman_1 (not a preset: the first preset's voice), pcm."""
    text = (
        "Mr. Bounce was very small and like a rubber ball. He loved bouncing around the neighborhood, "
        "bringing joy to all the children who saw him."
    )
    with client.audio.speech.with_streaming_response.create(
        model=model, voice="en_woman_1", response_format="pcm", input=text
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = b"".join(response.iter_bytes(chunk_size=1024))
    assert len(audio) == text_frames(text) * FRAME_BYTES
    assert np.abs(np.frombuffer(audio, dtype=np.int16)).max() > 1000
    assert "Unsupported voice: en_woman_1, using default voice: belinda" in sim.log()


def test_fork_multimodal_example_default_task(client: openai.OpenAI, model: str) -> None:
    """boson_chat_completion_client_for_multimodal.py, task tts, not streamed."""
    story = (
        "In a small town nestled between rolling green hills, there lived an old man named Elias. He was "
        "once a celebrated violinist, but time had taken his music from him. His hands, once steady, "
        "trembled with age, and his violin sat untouched in its case for many years."
    )
    messages = [
        {"role": "system", "content": "Convert the following text from the user into speech."},
        {"role": "user", "content": "The device would work during the day as well, if you took steps to "
                                    "either block direct sunlight or point it away from the sun."},
        {"role": "assistant", "content": [{"type": "input_audio", "input_audio": {"data": wav_b64(4.0), "format": "wav"}}]},
        {"role": "user", "content": story},
    ]  # fmt: skip
    resp = client.chat.completions.create(
        messages=messages, model=model, max_completion_tokens=500, stream=False,  # type: ignore[arg-type]
        modalities=["text", "audio"], temperature=1.0, top_p=0.95, stop=STOP, extra_body={"top_k": 50},
    )  # fmt: skip
    assert resp.choices[0].finish_reason == "stop"
    assert wav_frames(resp.choices[0].message.audio.data) == text_frames(story)  # type: ignore[union-attr]


def test_fork_speech_benchmark_request(sim: Sim) -> None:
    """audio_speech_api.py at f20eb294: voice "default", pcm, speed 1.0, temperature and max_tokens in
    the body; its default --model "higgs-audio" is not the served name (404) unless one passes --model."""
    text = "The benchmark reads one line of text per request and streams the answer."
    body = {"input": text, "voice": "default", "response_format": "pcm", "speed": 1.0, "temperature": 1.0,
            "max_tokens": 2048}  # fmt: skip
    r = httpx.post(f"{sim.url}/v1/audio/speech", json={**body, "model": "higgs-audio"})
    assert r.status_code == 404 and r.json()["message"] == "The model `higgs-audio` does not exist."
    with httpx.stream("POST", f"{sim.url}/v1/audio/speech", json={**body, "model": SERVED}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
        audio = b"".join(r.iter_bytes(chunk_size=1024))
    assert len(audio) == text_frames(text) * FRAME_BYTES
