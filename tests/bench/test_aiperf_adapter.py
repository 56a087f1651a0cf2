"""The AIPerf adapter's pure parts (bench/aiperf_adapter/higgs_aiperf/wire.py), without aiperf.

The adapter runs inside AIPerf's own virtualenv; this venv has no aiperf, so `wire` is loaded by path
and `endpoints` (which imports aiperf) is only read as text.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

from bench.bench_independent import char_tokenizer, locust_figures, ratios
from higgs_load.payloads import SYSTEM_PROMPT, Prompt, Settings, chat_body, speech_body

ADAPTER = Path(__file__).resolve().parents[2] / "bench" / "aiperf_adapter"
_spec = importlib.util.spec_from_file_location("higgs_aiperf_wire", ADAPTER / "higgs_aiperf" / "wire.py")
assert _spec and _spec.loader
wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire)

MODEL = "higgs-audio-v2-generation-3B-base"
SETTINGS = Settings(model=MODEL, voice=None, max_tokens=None, temperature=None, seed=None)
TEXT = "Good morning, your table is ready."


def _event(delta: dict) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def test_bodies_are_the_load_tests_bytes() -> None:
    ours = chat_body(Prompt(TEXT, "short"), SETTINGS, stream=True)
    assert json.dumps(wire.chat_body(TEXT, MODEL)) == json.dumps(ours)
    assert wire.SYSTEM_PROMPT == SYSTEM_PROMPT
    ours_speech = speech_body(Prompt(TEXT, "short"), SETTINGS, "pcm", "belinda")
    assert json.dumps(wire.speech_body(TEXT, MODEL, "belinda")) == json.dumps(ours_speech)


def test_event_audio_reads_only_audio_deltas() -> None:
    pcm = b"\x01\x00" * 24_000  # one second
    b64 = base64.b64encode(pcm).decode()
    assert wire.event_audio(_event({"role": "assistant", "content": ""})) is None
    assert wire.event_audio(_event({"content": "", "audio": None})) is None
    assert wire.event_audio(_event({"content": "", "audio": {"id": "a", "data": ""}})) is None
    audio = {"id": "a", "data": b64, "expires_at": 0, "transcript": ""}
    assert wire.event_audio(_event({"content": "", "audio": audio})) == b64
    assert wire.event_audio({"choices": [], "usage": {"completion_tokens": 3}}) is None  # CH7 usage
    assert wire.event_audio(None) is None  # [DONE] decodes to nothing
    err = {"error": {"message": "boom", "code": 400}}
    assert wire.event_audio(err) is None
    assert wire.audio_seconds(b64) == 1.0
    assert wire.audio_seconds("not base64!") == 0.0


def test_speech_body_summary_round_trip() -> None:
    body = b"\xb2\xfa" * 1000  # PCM: not UTF-8 (stock AIPerf fails on it)
    assert wire.parse_body_summary(wire.body_summary(body)) == (2000, None)
    err = b'{"error": {"object": "error", "message": "late", "code": 400}}'
    n, message = wire.parse_body_summary(wire.body_summary(body + err))
    assert n == 2000 + len(err) and message is not None and "late" in message
    assert wire.parse_body_summary("plain text") is None
    assert wire.parse_body_summary(None) is None


def test_response_text_counts_frames() -> None:
    assert wire.response_text(1.0) == "a" * 25
    assert wire.response_text(0.0) == "a"


def test_plugin_manifest_names_existing_classes() -> None:
    manifest = (ADAPTER / "higgs_aiperf" / "plugins.yaml").read_text()
    source = (ADAPTER / "higgs_aiperf" / "endpoints.py").read_text()
    for cls in ("HiggsChatAudioEndpoint", "HiggsSpeechEndpoint", "HiggsHttpTransport"):
        assert f"higgs_aiperf.endpoints:{cls}" in manifest
        assert f"class {cls}(" in source
    assert 'higgs = "higgs_aiperf:plugins.yaml"' in (ADAPTER / "pyproject.toml").read_text()


def test_tokenizer_in_hub_cache_layout(tmp_path: Path) -> None:
    assert char_tokenizer(tmp_path) == "local/tok"
    repo = tmp_path / "hub" / "models--local--tok"
    rev = (repo / "refs" / "main").read_text()
    tok = json.loads((repo / "snapshots" / rev / "tokenizer.json").read_text())
    assert len(tok["model"]["vocab"]) == 96 and tok["model"]["vocab"]["a"] == ord("a") - 31


def test_locust_figures_use_aiperfs_definitions() -> None:
    raw: list[dict] = [
        {"ok": True, "t_start": 0.0, "duration_s": 1.0, "ttfa_s": 0.2},
        {"ok": True, "t_start": 1.0, "duration_s": 1.0, "ttfa_s": 0.4},
        {"ok": False, "t_start": 1.5, "duration_s": 0.1, "ttfa_s": None},
    ]
    f = locust_figures(raw, streamed=True)
    assert (f.requests, f.errors) == (3, 1)
    assert f.throughput == 1.0  # 2 successes / (last response 2.0 - first request 0.0)
    assert f.latency_p50 == 1000.0 and f.ttfa_p50 is not None and abs(f.ttfa_p50 - 300.0) < 1e-9
    r = ratios(f, f)
    assert r["throughput"] == 1.0 and r["ttfa_p95"] == 1.0
    assert locust_figures(raw, streamed=False).ttfa_p50 is None
