"""The Higgs Audio wire format, as pure functions (no aiperf import; tests/bench reads this module).

Request bodies are the ones the project's load test sends (loadtests/higgs_load/payloads.py
`chat_body(stream=True)` and `speech_body`), so both clients put the same bytes on the wire; the test
tests/bench/test_aiperf_adapter.py compares them. Response parsing follows docs/server-contract.md:
a streamed chat event carries audio in `choices[0].delta.audio.data` (base64 int16 PCM, CH6); a
speech body is raw PCM, possibly with a JSON error appended after the audio (SP10).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

SYSTEM_PROMPT = "Generate audio following instruction."  # = higgs_load.payloads.SYSTEM_PROMPT
STOP = ["<|eot_id|>", "<|end_of_text|>", "<|audio_eos|>"]
SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2


def chat_body(text: str, model: str, system_prompt: str = SYSTEM_PROMPT) -> dict[str, Any]:
    """A streamed chat completion asking for audio: our load test's `stream` kind (no voice: CH2)."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": text},
        ],
        "modalities": ["text", "audio"],
        "audio": {"format": "pcm16"},
        "stream": True,
        "stop": list(STOP),
    }


def speech_body(text: str, model: str, voice: str, response_format: str = "pcm") -> dict[str, Any]:
    """`POST /v1/audio/speech`: our load test's `speech_pcm` kind (voice required: SP2)."""
    return {"model": model, "input": text, "voice": voice, "response_format": response_format}


def event_audio(event: Any) -> str | None:
    """The base64 audio of one decoded chat SSE event, or None when it carries none (role or text
    deltas, `audio: null`, the usage event, `[DONE]`, an error event)."""
    if not isinstance(event, dict):
        return None
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta") or choices[0].get("message")
    if not isinstance(delta, dict):
        return None
    audio = delta.get("audio")
    if not isinstance(audio, dict):
        return None
    data = audio.get("data")
    return data if isinstance(data, str) and data else None


def audio_seconds(b64: str) -> float:
    """Seconds of 24 kHz mono int16 PCM in one base64 chunk (0 for undecodable data)."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return 0.0
    return len(raw) / (SAMPLE_RATE * BYTES_PER_SAMPLE)


def speech_error(body: bytes) -> str | None:
    """A JSON error the server appended to a speech body after the audio started (SP10), else None.
    PCM is binary: the check is for the error's own text at the end of the body."""
    tail = body[-4096:]
    at = tail.rfind(b'{"error"')
    if at < 0:
        return None
    return tail[at:].decode("utf-8", "replace")


def body_summary(body: bytes) -> str:
    """What the adapter's transport keeps of a speech body in place of its bytes (AIPerf 0.13.0 sends
    records between its processes as JSON and fails on non-UTF-8 bytes): JSON with the byte count and
    the appended error, if any. `parse_body_summary` reads it back."""
    return json.dumps({"higgs_audio_bytes": len(body), "error": speech_error(body)})


def parse_body_summary(text: str | None) -> tuple[int, str | None] | None:
    """(audio bytes, error or None) from `body_summary`'s text; None for any other text."""
    try:
        obj = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("higgs_audio_bytes"), int):
        return None
    return obj["higgs_audio_bytes"], obj.get("error")


def response_text(seconds: float) -> str:
    """What the adapter hands AIPerf as a response's "text": one character per started 40 ms audio
    frame (25 frames/s, the codec's rate). AIPerf's token counts then count audio frames; only the
    timing metrics are compared."""
    return "a" * max(1, round(seconds * 25))
