"""Response bodies shaped exactly as docs/server-contract.md says Boson's server sends them.

Speech (SP7, SP10): `pcm` chunks raw int16 joined into one stream; `wav`/`mp3` one complete file per
chunk (pydub's `wave` export for WAV: a 44-byte header with true sizes), the first chunk 0.7 s, later
ones 1 s, the rest at the end; an error after the start appended as `json.dumps({"error": {...}})`.
Chat (CH6-CH8): one SSE event per token, compact JSON (pydantic's `model_dump_json`), most with
`"audio":null`, the last audio possibly after `finish_reason`, `data: [DONE]` at the end, an error as
`data: {"error": {...}}` (json.dumps spacing) followed by `data: [DONE]`.
"""

from __future__ import annotations

import base64
import io
import json
import wave

import numpy as np

SR = 24_000
CADENCE_S = (0.68, 1.0, 1.0, 0.42)  # first chunk after 32 tokens (SP8), then one per second, then the rest


def tone(seconds: float, amp: int = 6000, freq: float = 200.0) -> bytes:
    t = np.arange(round(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def chunks(cadence: tuple[float, ...] = CADENCE_S) -> list[bytes]:
    return [tone(s, freq=200 + 50 * i) for i, s in enumerate(cadence)]


def wav_file(pcm: bytes) -> bytes:
    """One chunk as pydub exports it (the `wave` module: canonical header, true sizes)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm)
    return buf.getvalue()


def mp3_file(pcm: bytes) -> bytes:
    """One chunk as an MP3 file (libsndfile, as the simulator writes it; X5)."""
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.frombuffer(pcm, "<i2"), SR, format="MP3")
    return buf.getvalue()


def error_json(message: str = "boom") -> bytes:
    """`create_streaming_error_response`: json.dumps of {"error": ErrorResponse}."""
    error = {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}
    return json.dumps({"error": error}).encode()


def speech_body(fmt: str, pieces: list[bytes] | None = None) -> bytes:
    pieces = chunks() if pieces is None else pieces
    if fmt == "pcm":
        return b"".join(pieces)
    if fmt == "wav":
        return b"".join(wav_file(p) for p in pieces)
    if fmt == "mp3":
        return b"".join(mp3_file(p) for p in pieces)
    raise ValueError(fmt)


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    choice: dict = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    if finish is not None:
        choice["stop_reason"] = None
    return _event(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "higgs-audio-v2-generation-3B-base",
            "choices": [choice],
        }
    )


def _audio(pcm: bytes) -> dict:
    return {"id": "audio-1", "data": base64.b64encode(pcm).decode(), "expires_at": 0, "transcript": ""}


def sse_events(pieces: list[bytes] | None = None, tokens_between: int = 3, last_after_finish: bool = True):
    """The events of a streamed chat, one list item per event (bytes), ending with [DONE]."""
    pieces = chunks() if pieces is None else pieces
    out = [_chunk({"role": "assistant", "content": ""})]
    tail = pieces[-1] if last_after_finish else None
    for pcm in pieces[:-1] if last_after_finish else pieces:
        out += [_chunk({"content": "", "audio": None})] * tokens_between
        out.append(_chunk({"content": "", "audio": _audio(pcm)}))
    out.append(_chunk({"content": "", "audio": None}, finish="stop"))
    if tail is not None:
        out.append(_chunk({"audio": _audio(tail)}))  # CH7: audio after finish_reason, finish_reason null
    out.append(b"data: [DONE]\n\n")
    return out


def sse_error_events(before: list[bytes] | None = None) -> list[bytes]:
    """CH8: some audio, then the error event and [DONE]."""
    events = sse_events(before or chunks()[:1], last_after_finish=False)[:-2]
    return [*events, b"data: " + error_json() + b"\n\n", b"data: [DONE]\n\n"]


# --- vLLM-Omni (docs/server-contract-omni.md) ---
# OP2: `event: speech.audio.delta` + `data: {"type":"speech.audio.delta","audio":"<base64>","response_format":"pcm"}`
# per chunk (compact JSON), then `speech.audio.done` with the usage; no `[DONE]` line. OX4: an error
# after the 200 is `speech.audio.error`. With async_chunk false all audio comes in one chunk (OP4).


def _omni_event(name: str, payload: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def omni_delta(pcm: bytes, fmt: str = "pcm") -> bytes:
    audio = base64.b64encode(pcm).decode("ascii")
    return _omni_event(
        "speech.audio.delta", {"type": "speech.audio.delta", "audio": audio, "response_format": fmt}
    )


def omni_done(text_tokens: int = 12, output_tokens: int = 90) -> bytes:
    usage = {
        "input_tokens": text_tokens,
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + output_tokens,
        "input_token_details": {"text_tokens": text_tokens, "audio_tokens": 0},
    }
    return _omni_event("speech.audio.done", {"type": "speech.audio.done", "usage": usage})


def omni_error(message: str = "Speech generation failed: boom") -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": 500}
    return _omni_event("speech.audio.error", {"type": "speech.audio.error", "error": error})


def omni_sse_events(pieces: list[bytes] | None = None) -> list[bytes]:
    """A streamed `pcm` speech response (OP2), one list item per event: deltas, then done."""
    pieces = [tone(2.4)] if pieces is None else pieces
    return [*(omni_delta(p) for p in pieces), omni_done()]


def omni_wav_file(pcm: bytes) -> bytes:
    """OP1: one WAV file written by soundfile (PCM_16), as the whole non-streamed body."""
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.frombuffer(pcm, "<i2"), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()
