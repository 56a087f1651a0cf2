"""The `helm test` script (files/helm_test.py): its audio checks, and a full run against the simulator."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import struct
import subprocess
import sys
import wave
from pathlib import Path
from types import ModuleType

import chartkit as ck
import pytest
from conftest import free_port

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
    assert mod.check_wav(wav_bytes(tone(1.0)), "x", 0.5, 60) == pytest.approx(1.0)
    with pytest.raises(mod.CheckFailed, match="silent"):
        mod.check_wav(wav_bytes(bytes(48000)), "x", 0.5, 60)
    with pytest.raises(mod.CheckFailed, match="16000 Hz"):
        mod.check_wav(wav_bytes(tone(1.0, rate=16000), rate=16000), "x", 0.5, 60)
    with pytest.raises(mod.CheckFailed, match="not a valid WAV"):
        mod.check_wav(b"RIFFnope", "x", 0.5, 60)
    with pytest.raises(mod.CheckFailed, match=r"0\.10 s of audio"):
        mod.check_pcm(tone(0.1), "x", 0.5, 60)
    with pytest.raises(mod.CheckFailed, match="odd number"):
        mod.check_pcm(tone(1.0) + b"\x00", "x", 0.5, 60)


def test_sse_parsing() -> None:
    mod = load_script()
    chunks = [tone(0.2), tone(0.3)]
    lines = [b": keep-alive\n", b"\n"]
    for c in chunks:
        event = {"choices": [{"delta": {"audio": {"data": base64.b64encode(c).decode()}}}]}
        lines += [b"data: " + json.dumps(event).encode() + b"\n", b"\n"]
    lines += [b"data: [DONE]\n"]
    pcm, count = mod.parse_sse_audio(lines)
    assert count == 2 and pcm == b"".join(chunks)
    with pytest.raises(mod.CheckFailed, match="server error"):
        mod.parse_sse_audio([b'data: {"error": {"message": "boom"}}'])


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
    assert "ok /v1/audio/speech" in proc.stdout and "ok stream /v1/chat/completions" in proc.stdout
    assert proc.stdout.strip().endswith("PASS")


def test_fails_on_wrong_key_and_on_implausible_length(simulator: str) -> None:
    proc = run_script({"HIGGS_URL": simulator, "HIGGS_API_KEY": "wrong"})
    assert proc.returncode == 1 and "HTTP 401" in proc.stdout
    proc = run_script({"HIGGS_URL": simulator, "HIGGS_API_KEY": "k-123", "HIGGS_MAX_AUDIO_SECONDS": "0.1"})
    assert proc.returncode == 1 and "expected 0.5-0.1 s" in proc.stdout


def test_fails_when_nothing_listens() -> None:
    proc = run_script({"HIGGS_URL": f"http://127.0.0.1:{free_port()}", "HIGGS_TIMEOUT_SECONDS": "5"})
    assert proc.returncode == 1 and "cannot talk to" in proc.stdout
