"""The `helm test` script (files/helm_test.py): its audio checks, and full runs against the simulator of
Boson's fork and against the vLLM-Omni emulation (HIGGS_SERVER_GENERATION=omni)."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.support import chart as ck
from tests.support.ports import free_port
from tests.support.simulator import start_as_chart, start_omni

SCRIPT = ck.CHART / "files" / "helm_test.py"
VENV_BIN = Path(sys.executable).parent


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("helm_test_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["helm_test_script"] = module
    spec.loader.exec_module(module)
    return module


def tone(seconds: float, amplitude: float = 8000.0, rate: int = 24000) -> bytes:
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n)))


def wav_bytes(pcm: bytes, rate: int = 24000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def test_audio_checks() -> None:
    mod = load_script()
    assert mod.check_pcm(tone(1.0), "x", 0.5, 60) == pytest.approx(1.0)
    with pytest.raises(mod.CheckFailed, match="silent"):
        mod.check_pcm(bytes(48000), "x", 0.5, 60)
    with pytest.raises(mod.CheckFailed, match=r"0\.10 s of audio"):
        mod.check_pcm(tone(0.1), "x", 0.5, 60)
    with pytest.raises(mod.CheckFailed, match="odd number"):
        mod.check_pcm(tone(1.0) + b"\x00", "x", 0.5, 60)


# Bodies as docs/server-contract.md says the server sends them.
CADENCE_S = (0.68, 1.0, 1.0, 0.3)  # first chunk after 32 tokens, then one per second, then the rest (SP8)


def error_json(message: str = "boom") -> bytes:
    error = {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}
    return json.dumps({"error": error}).encode()


def test_joined_wav_chunks_are_all_read() -> None:
    mod = load_script()
    pieces = [tone(s) for s in CADENCE_S]
    body = b"".join(wav_bytes(p) for p in pieces)  # one complete file per chunk (SP7)
    pcm, files = mod.joined_wav_pcm(body, "x")
    assert (pcm, files) == (b"".join(pieces), 4)
    assert mod.check_pcm(pcm, "x", 0.5, 60) == pytest.approx(sum(CADENCE_S))
    with pytest.raises(mod.CheckFailed, match="WAV file 2 is cut short"):
        mod.joined_wav_pcm(body[: len(wav_bytes(pieces[0])) + 100], "x")
    with pytest.raises(mod.CheckFailed, match=r"format \(1, 1, 16000, 16\)"):
        mod.joined_wav_pcm(wav_bytes(tone(1.0, rate=16000), rate=16000), "x")
    with pytest.raises(mod.CheckFailed, match="not a WAV file at byte 0"):
        mod.joined_wav_pcm(b"RIFFnope", "x")


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
def test_an_error_appended_to_the_speech_body_fails(fmt: str) -> None:
    mod = load_script()
    audio = tone(0.7) if fmt == "pcm" else wav_bytes(tone(0.7))
    assert mod.speech_pcm(audio, fmt, "x")[0] == tone(0.7)
    with pytest.raises(mod.CheckFailed, match="error inside the audio: CUDA out of memory"):
        mod.speech_pcm(audio + error_json("CUDA out of memory") + audio, fmt, "x")  # SP10


def chunk_event(delta: dict, finish: str | None = None) -> bytes:
    """One chat.completion.chunk as pydantic's model_dump_json writes it (compact)."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n"


def audio_delta(pcm: bytes) -> dict:
    return {"id": "audio-1", "data": base64.b64encode(pcm).decode(), "expires_at": 0, "transcript": ""}


def test_sse_per_token_events_with_audio_after_finish_reason() -> None:
    mod = load_script()
    a, b, c = tone(0.68), tone(1.0), tone(0.3)
    lines = [chunk_event({"role": "assistant", "content": ""}), b"\n"]
    for pcm in (a, b):
        lines += [chunk_event({"content": "", "audio": None}), b"\n"] * 3  # per-token, no audio (CH6)
        lines += [chunk_event({"content": "", "audio": audio_delta(pcm)}), b"\n"]
    lines += [chunk_event({"content": "", "audio": None}, finish="stop"), b"\n"]
    lines += [chunk_event({"audio": audio_delta(c)}), b"\n"]  # the last audio after finish_reason (CH7)
    pcm, count = mod.parse_sse_audio([*lines, b"data: [DONE]\n", b"\n"])
    assert (pcm, count) == (a + b + c, 3)
    with pytest.raises(mod.CheckFailed, match=r"without `data: \[DONE\]`"):
        mod.parse_sse_audio(lines)
    with pytest.raises(mod.CheckFailed, match="server reported an error: boom"):
        mod.parse_sse_audio([*lines[:4], b"data: " + error_json() + b"\n", b"data: [DONE]\n"])  # CH8
    with pytest.raises(mod.CheckFailed, match="not JSON"):
        mod.parse_sse_audio([b"data: {half\n", b"data: [DONE]\n"])


def test_voice_choice() -> None:
    mod = load_script()
    assert mod.choose_voice("", ["belinda", "en_man"]) == "belinda"
    assert mod.choose_voice("en_man", ["belinda", "en_man"]) == "en_man"
    with pytest.raises(mod.CheckFailed, match="'alloy' is not one of the server's voices: belinda, en_man"):
        mod.choose_voice("alloy", ["belinda", "en_man"])
    with pytest.raises(mod.CheckFailed, match=r"returned \[\]: the server has no voice presets"):
        mod.choose_voice("", [])


def test_target_from_service_links() -> None:
    mod = load_script()
    env = {"HIGGS_SERVICE_ENV_PREFIX": "TTS", "TTS_SERVICE_HOST": "10.0.0.5", "TTS_SERVICE_PORT_HTTP": "8000"}
    assert mod.base_url({**env, "HIGGS_SERVICE_DNS_URL": "http://dns:8000"}) == "http://10.0.0.5:8000"
    assert mod.base_url({"HIGGS_SERVICE_DNS_URL": "http://dns:8000/"}) == "http://dns:8000"
    assert mod.base_url({**env, "HIGGS_URL": "http://given:1/"}) == "http://given:1"


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HIGGS_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_passes_against_the_simulator(simulator: str) -> None:
    proc = run_script({"HIGGS_URL": simulator, "HIGGS_API_KEY": "k-123", "HIGGS_TIMEOUT_SECONDS": "60"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = httpx.get(f"{simulator}/v1/audio/voices", headers={"Authorization": "Bearer k-123"}).json()[0]
    assert f"ok /v1/audio/speech (pcm, voice {first})" in proc.stdout
    assert "ok stream /v1/chat/completions" in proc.stdout
    assert proc.stdout.strip().endswith("PASS")
    env = {
        "HIGGS_URL": simulator,
        "HIGGS_API_KEY": "k-123",
        "HIGGS_SPEECH_FORMAT": "wav",
        "HIGGS_VOICE": "en_man",
    }
    proc = run_script(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(
        r"ok /v1/audio/speech \(wav, voice en_man\): [0-9.]+ s of audio in [2-9] WAV files", proc.stdout
    )


def test_fails_on_wrong_key_unknown_voice_and_implausible_length(simulator: str) -> None:
    proc = run_script({"HIGGS_URL": simulator, "HIGGS_API_KEY": "wrong"})
    assert proc.returncode == 1 and "HTTP 401" in proc.stdout
    proc = run_script({"HIGGS_URL": simulator, "HIGGS_API_KEY": "k-123", "HIGGS_VOICE": "alloy"})
    assert (
        proc.returncode == 1 and "FAIL: tests.voice 'alloy' is not one of the server's voices" in proc.stdout
    )
    proc = run_script({"HIGGS_URL": simulator, "HIGGS_API_KEY": "k-123", "HIGGS_MAX_AUDIO_SECONDS": "0.1"})
    assert proc.returncode == 1 and "expected 0.5-0.1 s" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_fails_clearly_when_the_server_has_no_voices(tmp_path: Path) -> None:
    empty = tmp_path / "voices"
    empty.mkdir()
    sim = start_as_chart(tmp_path, "--voice-presets-dir", str(empty))  # no config.json: no voices (S8)
    try:
        proc = run_script({"HIGGS_URL": sim.url, "HIGGS_TIMEOUT_SECONDS": "30"})
    finally:
        sim.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("FAIL: GET /v1/audio/voices returned []")


def test_fails_when_nothing_listens() -> None:
    proc = run_script({"HIGGS_URL": f"http://127.0.0.1:{free_port()}", "HIGGS_TIMEOUT_SECONDS": "5"})
    assert proc.returncode == 1 and "cannot talk to" in proc.stdout


# --- vLLM-Omni (HIGGS_SERVER_GENERATION=omni): bodies as docs/server-contract-omni.md says ---


def omni_event(name: str, payload: dict) -> list[bytes]:
    """One SSE event as serving_speech.py writes it (compact JSON, OP2), as lines read from the socket."""
    return [
        f"event: {name}\n".encode(),
        f"data: {json.dumps(payload, separators=(',', ':'))}\n".encode(),
        b"\n",
    ]


def omni_delta(pcm: bytes) -> list[bytes]:
    audio = base64.b64encode(pcm).decode()
    return omni_event(
        "speech.audio.delta", {"type": "speech.audio.delta", "audio": audio, "response_format": "pcm"}
    )


def omni_done() -> list[bytes]:
    usage = {"input_tokens": 9, "output_tokens": 60, "total_tokens": 69}
    usage["input_token_details"] = {"text_tokens": 9, "audio_tokens": 0}
    return omni_event("speech.audio.done", {"type": "speech.audio.done", "usage": usage})


def omni_error(message: str = "boom") -> list[bytes]:
    error = {"message": message, "type": "server_error", "param": None, "code": 500}
    return omni_event("speech.audio.error", {"type": "speech.audio.error", "error": error})


def test_omni_sse_deltas_are_read_to_the_done_event() -> None:
    mod = load_script()
    a, b = tone(0.68), tone(1.0)
    lines = [*omni_delta(a), *omni_delta(b), *omni_done()]
    assert mod.parse_omni_sse(lines) == (a + b, 2)
    assert mod.parse_omni_sse([*lines, b"data: trailing junk\n"])[1] == 2  # nothing read after done
    with pytest.raises(mod.CheckFailed, match=r"without a `speech.audio.done` event \(cut short\)"):
        mod.parse_omni_sse(lines[:-3])
    with pytest.raises(mod.CheckFailed, match="server reported an error: CUDA out of memory"):
        mod.parse_omni_sse([*omni_delta(a), *omni_error("CUDA out of memory")])  # OX4
    with pytest.raises(mod.CheckFailed, match="not base64"):
        mod.parse_omni_sse([b'data: {"type":"speech.audio.delta","audio":"!!"}\n', *omni_done()])
    with pytest.raises(mod.CheckFailed, match="not a JSON object"):
        mod.parse_omni_sse([b"data: [DONE]\n"])  # Boson's chat terminator is no vLLM-Omni event


def test_omni_wav_is_exactly_one_file_of_audio_wav() -> None:
    mod = load_script()
    one = wav_bytes(tone(1.0))
    assert mod.omni_wav_pcm("audio/wav", one, "x") == tone(1.0)
    with pytest.raises(mod.CheckFailed, match="2 WAV files in the body, expected exactly one"):
        mod.omni_wav_pcm("audio/wav", one + one, "x")
    with pytest.raises(mod.CheckFailed, match="Content-Type 'audio/mpeg', expected audio/wav"):
        mod.omni_wav_pcm("audio/mpeg", one, "x")


@pytest.fixture(scope="module")
def omni(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The vLLM-Omni emulation requiring API key `k-123`."""
    sim = start_omni(tmp_path_factory.mktemp("omni"), "--api-key", "k-123")
    try:
        yield sim.url
    finally:
        sim.stop()


OMNI_ENV = {"HIGGS_SERVER_GENERATION": "omni", "HIGGS_API_KEY": "k-123", "HIGGS_TIMEOUT_SECONDS": "60"}


def test_omni_passes_against_the_emulation(omni: str) -> None:
    proc = run_script({"HIGGS_URL": omni, **OMNI_ENV})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(
        r"ok /v1/audio/speech \(wav, the model's own voice\): [0-9.]+ s of audio in one WAV file", proc.stdout
    ), proc.stdout
    assert re.search(r"ok stream /v1/audio/speech \(pcm\): [0-9.]+ s of audio in [0-9]+ deltas?", proc.stdout)
    assert "chat" not in proc.stdout  # vLLM-Omni serves no chat (D9)
    assert proc.stdout.strip().endswith("PASS")


def test_omni_fails_clearly(omni: str) -> None:
    proc = run_script({"HIGGS_URL": omni, **OMNI_ENV, "HIGGS_API_KEY": "wrong"})
    assert proc.returncode == 1 and "HTTP 401" in proc.stdout
    proc = run_script({"HIGGS_URL": omni, **OMNI_ENV, "HIGGS_VOICE": "belinda"})  # no such upload (OR3)
    assert proc.returncode == 1 and "HTTP 400" in proc.stdout and "Unknown voice 'belinda'" in proc.stdout
    proc = run_script({"HIGGS_URL": omni, **OMNI_ENV, "HIGGS_MAX_AUDIO_SECONDS": "0.1"})
    assert proc.returncode == 1 and "FAIL: /v1/audio/speech (wav, the model's own voice)" in proc.stdout
    assert "expected 0.5-0.1 s" in proc.stdout
    proc = run_script({"HIGGS_URL": omni, **OMNI_ENV, "HIGGS_SERVER_GENERATION": "current"})
    assert proc.returncode == 1 and "HIGGS_SERVER_GENERATION must be fork or omni" in proc.stdout
    # The fork's checks against vLLM-Omni: the voice list is an object, not Boson's bare array.
    proc = run_script({"HIGGS_URL": omni, **OMNI_ENV, "HIGGS_SERVER_GENERATION": "fork"})
    assert proc.returncode == 1 and "not a JSON array of voice names" in proc.stdout
    assert "set serverGeneration: omni" in proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 2  # "testing URL", then one FAIL line
    assert "Traceback" not in proc.stdout + proc.stderr


def test_omni_generation_failure_fails(tmp_path: Path) -> None:
    sim = start_omni(tmp_path, "--sim-error-rate", "1.0")  # every generation fails (OX3, XO9)
    try:
        proc = run_script({"HIGGS_URL": sim.url, **OMNI_ENV, "HIGGS_API_KEY": ""})
    finally:
        sim.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("FAIL: ") and "HTTP 400" in last and "Speech generation failed" in last
    assert "Traceback" not in proc.stdout + proc.stderr
