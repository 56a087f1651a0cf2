"""Response bodies of ``/v1/audio/speech``: whole files (OP1), SSE events (OP2, OX4), raw streams (OP3).

Not streamed, the body is one file written by soundfile at 24 kHz mono, as ``AudioMixin.create_audio``
does (``audio_utils_mixin.py:47-63``): WAV, RAW PCM_16, FLAC, MP3, OGG/Opus, with the Content-Type
of that table. Streamed, each decoded chunk is int16 little-endian PCM; a WAV stream first sends a
44-byte RIFF header whose two size fields are ``0xFFFFFFFF`` (``_create_wav_header``). SSE events
are compact JSON: ``speech.audio.delta`` (base64 audio), then ``speech.audio.done`` with the usage,
or ``speech.audio.error``; there is no ``[DONE]`` line.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from typing import Any

import numpy as np
import soundfile as sf

from higgs_sim.audio import SAMPLE_RATE

CONTENT_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
_SOUNDFILE = {
    "wav": ("WAV", None),  # soundfile's default WAV subtype: PCM_16 (OP1: UNCONFIRMED upstream)
    "pcm": ("RAW", "PCM_16"),
    "flac": ("FLAC", None),
    "mp3": ("MP3", None),
    "opus": ("OGG", "OPUS"),
}
# Starlette adds the charset to text/* media types (StreamingResponse(media_type="text/event-stream")).
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
PLACEHOLDER_SIZE = 0xFFFFFFFF


def encode_file(pcm: bytes, fmt: str) -> bytes:
    """One complete file of int16 LE mono ``pcm`` in ``fmt`` (soundfile's errors propagate)."""
    fmt_name, subtype = _SOUNDFILE[fmt]
    samples = np.frombuffer(pcm, dtype="<i2")
    with io.BytesIO() as buffer:
        sf.write(buffer, samples, SAMPLE_RATE, format=fmt_name, subtype=subtype)
        return buffer.getvalue()


def streaming_wav_header(sample_rate: int = SAMPLE_RATE, channels: int = 1, bits: int = 16) -> bytes:
    """serving_speech.py _create_wav_header: the sizes are unknown when streaming."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        PLACEHOLDER_SIZE,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * channels * bits // 8,
        channels * bits // 8,
        bits,
        b"data",
        PLACEHOLDER_SIZE,
    )


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def sse_delta(audio: bytes, fmt: str) -> bytes:
    return _event(
        "speech.audio.delta",
        {
            "type": "speech.audio.delta",
            "audio": base64.b64encode(audio).decode("ascii"),
            "response_format": fmt,
        },
    )


def usage(text_tokens: int, output_tokens: int) -> dict[str, Any]:
    """SpeechTokenUsage: Higgs counts the input text only (no reference-audio tokens, speech_usage.py)."""
    return {
        "input_tokens": text_tokens,
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + output_tokens,
        "input_token_details": {"text_tokens": text_tokens, "audio_tokens": 0},
    }


def sse_done(text_tokens: int, output_tokens: int) -> bytes:
    return _event(
        "speech.audio.done", {"type": "speech.audio.done", "usage": usage(text_tokens, output_tokens)}
    )


def sse_error(message: str) -> bytes:
    """OX4: an error after the 200 (``_generate_audio_sse_events``)."""
    return _event(
        "speech.audio.error",
        {
            "type": "speech.audio.error",
            "error": {"message": message, "type": "server_error", "param": None, "code": 500},
        },
    )
