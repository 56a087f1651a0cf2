"""`helm test` check of a Higgs Audio release: it must really return speech.

Standard library only (runs with `python3` in the server image or any Python 3.8+ image).
Calls POST /v1/audio/speech (WAV) and a streaming POST /v1/chat/completions (base64 PCM16 chunks)
and fails unless each returns valid, non-silent 24 kHz mono 16-bit audio of plausible length.

Settings come from the environment: HIGGS_URL (else the Service link variables named by
HIGGS_SERVICE_ENV_PREFIX, else HIGGS_SERVICE_DNS_URL), HIGGS_MODEL, HIGGS_TEXT, HIGGS_VOICE,
HIGGS_MIN_AUDIO_SECONDS, HIGGS_MAX_AUDIO_SECONDS, HIGGS_TIMEOUT_SECONDS, HIGGS_API_KEY (optional).
"""

from __future__ import annotations

import array
import base64
import io
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
import wave

SAMPLE_RATE = 24000
# RMS of int16 samples below this counts as silence (about -60 dBFS).
SILENCE_RMS = 32.0


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
        raise CheckFailed(f"{what}: audio is silent (RMS {level:.1f})")
    return seconds


def check_wav(data: bytes, what: str, min_seconds: float, max_seconds: float) -> float:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise CheckFailed(f"{what}: not a valid WAV file ({error}); first bytes {data[:16]!r}") from error
    if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
        raise CheckFailed(
            f"{what}: WAV is {rate} Hz, {channels} channel(s), {8 * width}-bit; expected 24000/1/16"
        )
    return check_pcm(pcm, what, min_seconds, max_seconds)


def _request(url: str, body: dict, api_key: str | None, timeout: float) -> urllib.request.Request:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")


def speech(base: str, model: str, text: str, voice: str, api_key: str | None, timeout: float) -> bytes:
    body = {"model": model, "input": text, "response_format": "wav"}
    if voice:
        body["voice"] = voice
    with urllib.request.urlopen(
        _request(f"{base}/v1/audio/speech", body, api_key, timeout), timeout=timeout
    ) as r:
        return r.read()


def parse_sse_audio(lines: list[bytes]) -> tuple[bytes, int]:
    """Concatenate choices[0].delta.audio.data of an SSE stream; returns (pcm, audio chunk count)."""
    pcm, chunks = bytearray(), 0
    for raw in lines:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            break
        event = json.loads(payload)
        if "error" in event:
            raise CheckFailed(f"stream: server error {event['error']}")
        for choice in event.get("choices", []):
            audio = (choice.get("delta") or {}).get("audio") or {}
            if audio.get("data"):
                pcm += base64.b64decode(audio["data"])
                chunks += 1
    return bytes(pcm), chunks


def stream_chat(
    base: str, model: str, text: str, voice: str, api_key: str | None, timeout: float
) -> list[bytes]:
    audio = {"format": "pcm16"}
    if voice:
        audio["voice"] = voice
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "modalities": ["text", "audio"],
        "audio": audio,
        "stream": True,
        "max_tokens": 1024,
    }
    url = f"{base}/v1/chat/completions"
    with urllib.request.urlopen(_request(url, body, api_key, timeout), timeout=timeout) as r:
        return list(r)


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


def run(env: dict[str, str]) -> int:
    base = base_url(env)
    if not base:
        print("FAIL: no target: set HIGGS_URL (tests.url) or HIGGS_SERVICE_DNS_URL", flush=True)
        return 2
    print(f"testing {base}", flush=True)
    model = env.get("HIGGS_MODEL", "higgs-audio-v2-generation-3B-base")
    text = env.get("HIGGS_TEXT", "Hello from the Higgs Audio helm test.")
    voice = env.get("HIGGS_VOICE", "")
    api_key = env.get("HIGGS_API_KEY") or None
    lo = float(env.get("HIGGS_MIN_AUDIO_SECONDS", "0.5"))
    hi = float(env.get("HIGGS_MAX_AUDIO_SECONDS", "60"))
    timeout = float(env.get("HIGGS_TIMEOUT_SECONDS", "300"))
    try:
        started = time.monotonic()
        seconds = check_wav(speech(base, model, text, voice, api_key, timeout), "/v1/audio/speech", lo, hi)
        print(
            f"ok /v1/audio/speech: {seconds:.2f} s of audio in {time.monotonic() - started:.2f} s", flush=True
        )
        started = time.monotonic()
        pcm, chunks = parse_sse_audio(stream_chat(base, model, text, voice, api_key, timeout))
        if chunks == 0:
            raise CheckFailed("stream /v1/chat/completions: no audio chunks in the stream")
        seconds = check_pcm(pcm, "stream /v1/chat/completions", lo, hi)
        elapsed = time.monotonic() - started
        print(f"ok stream /v1/chat/completions: {seconds:.2f} s of audio in {chunks} chunks, {elapsed:.2f} s")
    except CheckFailed as error:
        print(f"FAIL: {error}", flush=True)
        return 1
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode(errors="replace")
        print(f"FAIL: {error.url} answered HTTP {error.code}: {detail}", flush=True)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"FAIL: cannot talk to {base}: {type(error).__name__}: {error}", flush=True)
        return 1
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(dict(os.environ)))
