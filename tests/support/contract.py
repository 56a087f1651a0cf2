"""Helpers of the contract suite: the simulator's command line and body parsers.

The expected chunk cadence is computed here from the contract's own arithmetic (SP8), not imported
from the simulator, so a test compares two independent readings of the source.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import wave
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from tests.support.simulator import Sim

MODEL_ID = "bosonai/higgs-audio-v2-generation-3B-base"
SERVED = "higgs-audio-v2-generation-3B-base"
BASE_ARGS = [
    "--model", MODEL_ID, "--audio-tokenizer-type", "bosonai/higgs-audio-v2-tokenizer",
    "--served-model-name", SERVED, "--sim-profile", "raw",
]  # fmt: skip
RATE = 24000
SAMPLES_PER_FRAME = 960
FRAME_BYTES = SAMPLES_PER_FRAME * 2
ERROR_KEYS = {"object", "message", "type", "param", "code"}
PRESETS = ["belinda", "broom_salesman", "chadwick", "en_man", "en_woman", "mabel", "vex", "zh_man_sichuan"]
STOP = ["<|eot_id|>", "<|end_of_text|>", "<|audio_eos|>"]

StartSim = Callable[..., Sim]  # the conftest's module-scoped factory


def text_frames(text: str) -> int:
    """X2: about 15 characters per second of speech, at least 10 frames."""
    return max(10, math.ceil(len(text) / 15 * 25))


def cadence(frames: int, max_tokens: int | None = None) -> tuple[int, list[tuple[int, int]], int]:
    """(steps, [(step, frames) of each chunk], frames decoded) of one request, from SP8/SP9.

    A request that stops by itself runs frames + 10 steps (bos row, 7 delay rows, the eos row and
    the closing <|audio_eos|>); cut after T steps it decodes T - 8 frames (none for T <= 10). Chunks:
    17 frames at step 32, 25 at step 68 and every 25 steps after, the rest at the end.
    """
    steps = frames + 10
    stopped = max_tokens is None or steps <= max_tokens
    if not stopped:
        steps = max_tokens  # type: ignore[assignment]
        frames = min(frames, steps - 8) if steps > 10 else 0
    chunks: list[tuple[int, int]] = []
    step, done = 32, 0
    size = 17
    last_audio_step = steps - 1 if stopped else steps
    while step <= last_audio_step and done + size < frames:
        chunks.append((step, size))
        done += size
        step, size = (68 if len(chunks) == 1 else step + 25), 25
    if frames > done:
        chunks.append((steps, frames - done))
    return steps, chunks, frames


def error_body(resp: httpx.Response, status: int, err_type: str | None = None) -> dict[str, Any]:
    """ER1/ER2: a top-level ErrorResponse with exactly its five keys."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == ERROR_KEYS, body
    assert body["object"] == "error" and body["param"] is None and body["code"] == status
    expected_type = err_type or {400: "BadRequestError", 404: "NotFoundError"}.get(status)
    if expected_type:
        assert body["type"] == expected_type
    assert isinstance(body["message"], str) and body["message"]
    return body


def split_wavs(body: bytes) -> list[bytes]:
    """Every RIFF file of a joined WAV body, each read to its own data length; returns their PCM."""
    out: list[bytes] = []
    while body:
        assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt ", body[:16]
        (riff_size,) = struct.unpack("<I", body[4:8])
        fmt = struct.unpack("<IHHIIHH", body[16:36])
        assert fmt == (16, 1, 1, RATE, RATE * 2, 2, 16)
        assert body[36:40] == b"data"
        (size,) = struct.unpack("<I", body[40:44])
        assert riff_size == 36 + size
        out.append(body[44 : 44 + size])
        assert len(out[-1]) == size, "a WAV chunk is shorter than its header says"
        body = body[44 + size :]
    return out


def split_mp3s(body: bytes) -> list[bytes]:
    """The complete MP3 files of a joined body: each begins with a frame carrying a Xing/Info tag
    (4-byte header + 9 bytes of MPEG-2 mono side info before the tag)."""
    starts = sorted(i - 13 for tag in (b"Xing", b"Info") for i in _find_all(body, tag))
    assert starts and starts[0] == 0, "the body does not start with an MP3 file"
    for start in starts:
        assert body[start] == 0xFF and body[start + 1] & 0xE0 == 0xE0, "no frame sync at a file start"
    return [body[a:b] for a, b in zip(starts, [*starts[1:], len(body)], strict=True)]


def _find_all(data: bytes, needle: bytes) -> Iterator[int]:
    i = data.find(needle)
    while i >= 0:
        yield i
        i = data.find(needle, i + 1)


def decode_file(data: bytes, expect_format: str | None = None) -> np.ndarray:
    """A whole audio file read with soundfile (int16 samples), checking 24 kHz mono."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        if expect_format:
            assert f.format == expect_format.upper(), f.format
        assert (f.samplerate, f.channels) == (RATE, 1)
        return f.read(dtype="int16")


def sse_events(text: str) -> list[Any]:
    """The payloads of an SSE body, in order: parsed JSON, or the string ``[DONE]``."""
    assert text.endswith("\n\n"), "the stream does not end with a complete event"
    out: list[Any] = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block[:80]
        payload = block[6:]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def audio_frames(event: dict[str, Any]) -> int:
    """Frames of PCM in a streamed chunk's delta.audio.data (0 when it carries none)."""
    audio = event["choices"][0]["delta"].get("audio") if event.get("choices") else None
    if not audio:
        return 0
    pcm = base64.b64decode(audio["data"])
    assert len(pcm) % FRAME_BYTES == 0
    return len(pcm) // FRAME_BYTES


def make_wav(seconds: float = 1.0, freq: float = 220.0, rate: int = RATE) -> bytes:
    """A reference clip: a 24 kHz mono int16 tone (the examples read belinda.wav)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue()


def wav_b64(seconds: float = 1.0, freq: float = 220.0) -> str:
    return base64.b64encode(make_wav(seconds, freq)).decode()
