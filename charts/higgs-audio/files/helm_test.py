"""`helm test` check of a Higgs Audio release: it must really return speech.

Standard library only (runs with `python3` in the server image or any Python 3.8+ image).
HIGGS_SERVER_GENERATION (the chart's `serverGeneration`) names the server: `fork` (the default) is
Boson's vLLM fork, `omni` is vLLM-Omni. For `fork` it follows docs/server-contract.md:

1. GET /v1/audio/voices (a JSON array of preset names, E5): the voice is HIGGS_VOICE (`tests.voice`)
   when set, which must be one of them, else the first; an empty list fails (speech needs a preset).
2. POST /v1/audio/speech with that voice and `response_format` pcm (raw int16, 24 kHz mono; the
   default, SP2/SP7). HIGGS_SPEECH_FORMAT=wav asks for WAV instead: the body is one complete WAV file
   per chunk, joined, and every file is read (SP7). An `{"error": ...}` text in the body fails (SP10).
3. A streamed POST /v1/chat/completions with no `audio.voice` (it takes only OpenAI's names, CH2):
   one SSE event per token, most with `"audio": null`, audio deltas possibly after `finish_reason`,
   read to `data: [DONE]` (CH6, CH7); a `data: {"error": ...}` event fails (CH8).

For `omni`, docs/server-contract-omni.md (no chat: D9; HIGGS_SPEECH_FORMAT does not apply):

1. POST /v1/audio/speech without a voice (the model's own voice, OR5; HIGGS_VOICE, when set, names an
   uploaded voice) and `response_format` wav, not streamed: 200, `Content-Type: audio/wav`, exactly one
   RIFF file (OP1).
2. The same streamed: `stream: true`, `response_format` pcm, Server-Sent Events `speech.audio.delta`
   (base64 int16 PCM) read to `speech.audio.done` (OP2; there is no `data: [DONE]`); a
   `speech.audio.error` event fails (OX4).

Each audio must last HIGGS_MIN_AUDIO_SECONDS..HIGGS_MAX_AUDIO_SECONDS and be louder than a silence floor.
A failure is one line `FAIL: ...` and exit code 1 (2: no target); no traceback.

Settings come from the environment: HIGGS_URL (else the Service link variables named by
HIGGS_SERVICE_ENV_PREFIX, else HIGGS_SERVICE_DNS_URL), HIGGS_SERVER_GENERATION, HIGGS_MODEL,
HIGGS_TEXT, HIGGS_VOICE, HIGGS_SPEECH_FORMAT, HIGGS_MIN_AUDIO_SECONDS, HIGGS_MAX_AUDIO_SECONDS,
HIGGS_TIMEOUT_SECONDS, HIGGS_API_KEY (optional).
"""

from __future__ import annotations

import array
import base64
import binascii
import http.client
import json
import math
import os
import struct
import sys
import time
import urllib.error
import urllib.request

SAMPLE_RATE = 24000
# RMS of int16 samples below this counts as silence (about -60 dBFS).
SILENCE_RMS = 32.0
ERROR_MARKER = b'{"error"'
STOP = ["<|eot_id|>", "<|end_of_text|>", "<|audio_eos|>"]  # Boson's examples send these (CH9)
SYSTEM_PROMPT = "Generate audio following instruction."
GENERATIONS = ("fork", "omni")


class CheckFailed(Exception):
    pass


def rms_int16(pcm: bytes) -> float:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()  # PCM on the wire is little-endian
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def check_pcm(pcm: bytes, what: str, min_seconds: float, max_seconds: float) -> float:
    """Validate little-endian int16 mono PCM at 24 kHz; returns its duration in seconds."""
    if len(pcm) % 2:
        raise CheckFailed(f"{what}: odd number of PCM bytes ({len(pcm)}), not int16 samples")
    seconds = len(pcm) / 2 / SAMPLE_RATE
    if not min_seconds <= seconds <= max_seconds:
        raise CheckFailed(f"{what}: {seconds:.2f} s of audio, expected {min_seconds}-{max_seconds} s")
    level = rms_int16(pcm)
    if level < SILENCE_RMS:
        raise CheckFailed(f"{what}: audio is silent (RMS {level:.1f}, floor {SILENCE_RMS:g})")
    return seconds


def error_text(data: bytes) -> str:
    """The message of an `{"error": {...}}` JSON text (more bytes may follow it), else the raw text."""
    text = data.decode("utf-8", "replace")
    try:
        error = json.JSONDecoder().raw_decode(text)[0]["error"]
        return str(error.get("message", error)) if isinstance(error, dict) else str(error)
    except (ValueError, KeyError, TypeError, AttributeError):
        return text[:200]


def check_no_error(body: bytes, what: str) -> bytes:
    """SP10: an error after the stream started is appended to the 200 body as JSON text."""
    at = body.find(ERROR_MARKER)
    if at >= 0:
        raise CheckFailed(f"{what}: the server reported an error inside the audio: {error_text(body[at:])}")
    return body


def joined_wav_pcm(data: bytes, what: str) -> tuple[bytes, int]:
    """PCM of a body made of complete WAV files joined together (SP7); returns (pcm, file count)."""
    pcm, pos, files = bytearray(), 0, 0
    while pos < len(data):
        if data[pos : pos + 4] != b"RIFF" or data[pos + 8 : pos + 12] != b"WAVE":
            raise CheckFailed(f"{what}: not a WAV file at byte {pos} (starts with {data[pos : pos + 12]!r})")
        files += 1
        pos, size = _wav_data_chunk(data, pos + 12, f"{what}: WAV file {files}")
        body = data[pos : pos + size]
        if len(body) < size:
            raise CheckFailed(f"{what}: WAV file {files} is cut short ({len(body)} of {size} data bytes)")
        pcm += body
        pos += size + (size & 1)
    if not files:
        raise CheckFailed(f"{what}: empty body")
    return bytes(pcm), files


def _wav_data_chunk(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Walk a WAV file's chunks from `pos`: check fmt, return (offset, size) of the data chunk."""
    fmt = None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        pos += 8
        if chunk == b"data":
            if fmt != (1, 1, SAMPLE_RATE, 16):
                raise CheckFailed(
                    f"{what}: format {fmt} (tag, channels, rate, bits), expected (1, 1, 24000, 16)"
                )
            return pos, size
        if chunk == b"fmt " and size >= 16 and pos + 16 <= len(data):
            tag, channels, rate, _rate, _align, bits = struct.unpack_from("<HHIIHH", data, pos)
            fmt = (tag, channels, rate, bits)
        pos += size + (size & 1)
    raise CheckFailed(f"{what}: no data chunk (body cut short?)")


def _request(url: str, body: dict | None, api_key: str | None) -> urllib.request.Request:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")


def list_voices(base: str, api_key: str | None, timeout: float) -> list[str]:
    with urllib.request.urlopen(_request(f"{base}/v1/audio/voices", None, api_key), timeout=timeout) as r:
        raw = r.read()
    try:
        names = json.loads(raw)
    except ValueError:
        names = None
    if isinstance(names, dict) and "voices" in names:  # vLLM-Omni's listing (its OE2)
        raise CheckFailed(
            f"GET /v1/audio/voices: not a JSON array of voice names but vLLM-Omni's object {raw[:100]!r}: "
            "is the server vLLM-Omni? then set serverGeneration: omni"
        )
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckFailed(f"GET /v1/audio/voices: not a JSON array of voice names: {raw[:100]!r}")
    return names


def choose_voice(configured: str, voices: list[str]) -> str:
    """tests.voice when set (it must be listed: the server replaces an unknown one silently, SP4),
    else the first preset."""
    if not voices:
        raise CheckFailed(
            "GET /v1/audio/voices returned []: the server has no voice presets, so /v1/audio/speech cannot "
            "work; check voicePresets and the server log ('Error loading voice presets')"
        )
    if configured and configured not in voices:
        raise CheckFailed(
            f"tests.voice {configured!r} is not one of the server's voices: {', '.join(voices)}"
        )
    return configured or voices[0]


def speech(
    base: str, model: str, text: str, voice: str, fmt: str, api_key: str | None, timeout: float
) -> bytes:
    body = {"model": model, "input": text, "voice": voice, "response_format": fmt}
    with urllib.request.urlopen(_request(f"{base}/v1/audio/speech", body, api_key), timeout=timeout) as r:
        return r.read()


def speech_pcm(body: bytes, fmt: str, what: str) -> tuple[bytes, int]:
    """(pcm, files) of a speech body in `fmt`: pcm is one stream, wav one file per chunk."""
    check_no_error(body, what)
    return joined_wav_pcm(body, what) if fmt == "wav" else (body, 1)


def parse_sse_audio(lines: list[bytes]) -> tuple[bytes, int]:
    """Concatenate choices[0].delta.audio.data of an SSE stream read to `data: [DONE]`; returns
    (pcm, audio event count). Per-token events carry `"audio": null`; audio may follow finish_reason."""
    pcm, chunks, done = bytearray(), 0, False
    for raw in lines:
        line = raw.strip()
        if done or not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            continue
        data = _event_audio(payload)
        if data:
            try:
                pcm += base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise CheckFailed("stream: delta.audio.data is not base64") from None
            chunks += 1
    if not done:
        raise CheckFailed("stream: ended without `data: [DONE]` (cut short)")
    return bytes(pcm), chunks


def _event_audio(payload: bytes) -> object:
    """The base64 audio of one chat.completion.chunk event, or None (most per-token events)."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise CheckFailed(f"stream: an event is not JSON: {payload[:80]!r}") from None
    if isinstance(event, dict) and "error" in event:
        raise CheckFailed(f"stream: the server reported an error: {error_text(payload)}")
    try:
        choices = event.get("choices") or []
        audio = (choices[0].get("delta") or {}).get("audio") if choices else None
        return audio.get("data") if audio else None
    except (AttributeError, IndexError, TypeError):
        raise CheckFailed(f"stream: an event is not a chat.completion.chunk: {payload[:80]!r}") from None


def stream_chat(base: str, model: str, text: str, api_key: str | None, timeout: float) -> list[bytes]:
    body = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
        "modalities": ["text", "audio"],
        "audio": {"format": "pcm16"},  # no voice: a preset name here is a 400 (CH2)
        "stream": True,
        "max_tokens": 1024,
        "stop": STOP,
    }
    url = f"{base}/v1/chat/completions"
    with urllib.request.urlopen(_request(url, body, api_key), timeout=timeout) as r:
        return list(r)


def omni_speech(
    base: str, body: dict, api_key: str | None, timeout: float
) -> tuple[str, http.client.HTTPResponse]:
    """POST a vLLM-Omni speech request; (Content-Type, the open response)."""
    r = urllib.request.urlopen(_request(f"{base}/v1/audio/speech", body, api_key), timeout=timeout)
    return r.headers.get("Content-Type", ""), r


def omni_wav_pcm(content_type: str, body: bytes, what: str) -> bytes:
    """OP1: a non-streamed `wav` is exactly one complete RIFF file, `Content-Type: audio/wav`."""
    if content_type.split(";")[0].strip().lower() != "audio/wav":
        raise CheckFailed(f"{what}: Content-Type {content_type!r}, expected audio/wav")
    pcm, files = joined_wav_pcm(body, what)
    if files != 1:
        raise CheckFailed(f"{what}: {files} WAV files in the body, expected exactly one")
    return pcm


def parse_omni_sse(lines) -> tuple[bytes, int]:
    """(pcm, delta count) of vLLM-Omni's speech SSE (OP2): `speech.audio.delta` events carry base64
    int16 PCM in `audio`, `speech.audio.done` ends the stream (no `data: [DONE]`); a
    `speech.audio.error` event (OX4) fails. Stops reading at the done event."""
    pcm, deltas = bytearray(), 0
    for raw in lines:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue  # `event:` names repeat the data's `type`; blank lines end events
        payload = line[5:].strip()
        try:
            event = json.loads(payload)
            kind = event.get("type")
        except (ValueError, AttributeError):
            raise CheckFailed(f"speech stream: an event is not a JSON object: {payload[:80]!r}") from None
        if kind == "speech.audio.error" or "error" in event:
            raise CheckFailed(f"speech stream: the server reported an error: {error_text(payload)}")
        if kind == "speech.audio.done":
            return bytes(pcm), deltas
        if kind != "speech.audio.delta":
            raise CheckFailed(f"speech stream: unexpected event type {kind!r}")
        if event.get("response_format", "pcm") != "pcm":
            raise CheckFailed(f"speech stream: a delta in {event.get('response_format')!r}, asked pcm")
        try:
            pcm += base64.b64decode(event.get("audio") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise CheckFailed("speech stream: a delta's audio is not base64") from None
        deltas += 1
    raise CheckFailed("speech stream: ended without a `speech.audio.done` event (cut short)")


def omni_checks(base: str, env: dict[str, str], model: str, text: str, api_key: str | None) -> None:
    """vLLM-Omni: one WAV file, then the SSE stream; no chat (D9)."""
    lo = _number(env, "HIGGS_MIN_AUDIO_SECONDS", 0.5)
    hi = _number(env, "HIGGS_MAX_AUDIO_SECONDS", 60.0)
    timeout = _number(env, "HIGGS_TIMEOUT_SECONDS", 300.0)
    voice = env.get("HIGGS_VOICE", "")
    body: dict = {"model": model, "input": text}
    if voice:  # an uploaded voice; an unknown one is refused with a 400 naming it (OR3)
        body["voice"] = voice
    who = f"voice {voice}" if voice else "the model's own voice"

    started = time.monotonic()
    what = f"/v1/audio/speech (wav, {who})"
    content_type, r = omni_speech(base, {**body, "response_format": "wav"}, api_key, timeout)
    with r:
        data = r.read()
    seconds = check_pcm(omni_wav_pcm(content_type, data, what), what, lo, hi)
    print(f"ok {what}: {seconds:.2f} s of audio in one WAV file in {time.monotonic() - started:.2f} s")

    started = time.monotonic()
    what = "stream /v1/audio/speech (pcm)"
    stream = {**body, "response_format": "pcm", "stream": True}
    content_type, r = omni_speech(base, stream, api_key, timeout)
    with r:
        if not content_type.startswith("text/event-stream"):
            raise CheckFailed(f"{what}: Content-Type {content_type!r}, expected text/event-stream")
        pcm, deltas = parse_omni_sse(r)
    if deltas == 0:
        raise CheckFailed(f"{what}: no speech.audio.delta events in the stream")
    seconds = check_pcm(pcm, what, lo, hi)
    elapsed = time.monotonic() - started
    parts = f"{deltas} delta{'s' if deltas != 1 else ''}"
    print(f"ok {what}: {seconds:.2f} s of audio in {parts}, {elapsed:.2f} s", flush=True)


def base_url(env: dict[str, str]) -> str:
    """HIGGS_URL, else the Service's link variables, else its DNS name."""
    if env.get("HIGGS_URL"):
        return env["HIGGS_URL"].rstrip("/")
    prefix = env.get("HIGGS_SERVICE_ENV_PREFIX", "")
    host = env.get(f"{prefix}_SERVICE_HOST")
    port = env.get(f"{prefix}_SERVICE_PORT_HTTP") or env.get(f"{prefix}_SERVICE_PORT")
    if prefix and host and port:
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"
    return env.get("HIGGS_SERVICE_DNS_URL", "").rstrip("/")


def _number(env: dict[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name) or default)
    except ValueError:
        raise CheckFailed(f"{name} must be a number, got {env[name]!r}") from None


def checks(base: str, env: dict[str, str]) -> None:
    model = env.get("HIGGS_MODEL", "higgs-audio-v2-generation-3B-base")
    text = env.get("HIGGS_TEXT", "Hello from the Higgs Audio helm test.")
    api_key = env.get("HIGGS_API_KEY") or None
    generation = env.get("HIGGS_SERVER_GENERATION", "") or "fork"
    if generation not in GENERATIONS:
        raise CheckFailed(f"HIGGS_SERVER_GENERATION must be fork or omni, got {generation!r}")
    if generation == "omni":
        omni_checks(base, env, model, text, api_key)
        return
    fmt = env.get("HIGGS_SPEECH_FORMAT", "pcm") or "pcm"
    if fmt not in ("pcm", "wav"):
        raise CheckFailed(f"HIGGS_SPEECH_FORMAT must be pcm or wav, got {fmt!r}")
    lo = _number(env, "HIGGS_MIN_AUDIO_SECONDS", 0.5)
    hi = _number(env, "HIGGS_MAX_AUDIO_SECONDS", 60.0)
    timeout = _number(env, "HIGGS_TIMEOUT_SECONDS", 300.0)

    voices = list_voices(base, api_key, timeout)
    voice = choose_voice(env.get("HIGGS_VOICE", ""), voices)
    started = time.monotonic()
    what = f"/v1/audio/speech ({fmt}, voice {voice})"
    pcm, files = speech_pcm(speech(base, model, text, voice, fmt, api_key, timeout), fmt, what)
    seconds = check_pcm(pcm, what, lo, hi)
    parts = f" in {files} WAV files" if fmt == "wav" else ""
    print(f"ok {what}: {seconds:.2f} s of audio{parts} in {time.monotonic() - started:.2f} s", flush=True)

    started = time.monotonic()
    pcm, chunks = parse_sse_audio(stream_chat(base, model, text, api_key, timeout))
    if chunks == 0:
        raise CheckFailed("stream /v1/chat/completions: no audio chunks in the stream")
    seconds = check_pcm(pcm, "stream /v1/chat/completions", lo, hi)
    elapsed = time.monotonic() - started
    print(f"ok stream /v1/chat/completions: {seconds:.2f} s of audio in {chunks} chunks, {elapsed:.2f} s")


def run(env: dict[str, str]) -> int:
    base = base_url(env)
    if not base:
        print("FAIL: no target: set HIGGS_URL (tests.url) or HIGGS_SERVICE_DNS_URL", flush=True)
        return 2
    print(f"testing {base}", flush=True)
    try:
        checks(base, env)
    except CheckFailed as error:
        print(f"FAIL: {error}", flush=True)
        return 1
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode(errors="replace")
        print(f"FAIL: {error.url} answered HTTP {error.code}: {detail}", flush=True)
        return 1
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        print(f"FAIL: cannot talk to {base}: {type(error).__name__}: {error}", flush=True)
        return 1
    except Exception as error:  # one line, never a traceback
        print(f"FAIL: unexpected {type(error).__name__}: {error}", flush=True)
        return 1
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(dict(os.environ)))
