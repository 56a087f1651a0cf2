"""Headless Locust runs (real subprocesses) against the vLLM-Omni emulation (`python -m higgs_sim.omni`):
the server is detected, every speech kind yields valid audio of the contract's length, the counts of
Locust, the raw records, the report and the server agree; chat kinds and per-request sampling are
refused at start; an uploaded voice is used; generation failures get their classes."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import httpx
import pytest

from higgs_load.payloads import REFERENCE_TEXT, REFERENCE_WAV
from tests.support.locust import locust_cmd, run_bounded
from tests.support.simulator import start_omni

pytestmark = pytest.mark.timeout(120)
RUN_TIMEOUT_S = 45
KEY = "k-omni"
OMNI_KINDS = ("speech_sse", "speech_pcm", "speech_wav", "speech_mp3")
STREAMED = {"speech_sse": True, "speech_pcm": True, "speech_wav": False, "speech_mp3": False}


def text_frames(chars: int) -> int:
    """The emulation's length rule (docs/server-contract-omni.md XO2): 15 characters per second of
    speech at 25 frames per second, at least 10 frames."""
    return max(10, math.ceil(chars / 15 * 25))


def raw_records(report_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (report_dir / "raw.jsonl").read_text().splitlines() if x.strip()]


def summary_of(report_dir: Path) -> dict:
    return json.loads((report_dir / "summary.json").read_text())


def run_locust(url: str, out: Path, *extra: str, seconds: int = 3) -> tuple[int, str]:
    cmd = locust_cmd(url, out, "--headless", "-u", "4", "-r", "4", "-t", f"{seconds}s", "--no-plots")
    cmd += ["--api-key", KEY, "--prompt-lengths", "short", *extra]
    rc = run_bounded(cmd, RUN_TIMEOUT_S, out / "locust.log")
    return rc, (out / "locust.log").read_text()


@pytest.fixture(scope="module")
def omni(tmp_path_factory):
    s = start_omni(tmp_path_factory.mktemp("omni"), "--api-key", KEY)
    yield s
    s.stop()


def test_every_speech_kind_returns_valid_audio_and_the_counts_match(omni, tmp_path):
    mix = ",".join(f"{k}=1" for k in OMNI_KINDS)
    extra = ["--mix", mix, "--prompt-lengths", "short,medium", "--json-file", str(tmp_path / "locust")]
    traced_before = len(omni.trace_path.read_text().splitlines()) if omni.trace_path.exists() else 0
    rc, log = run_locust(omni.url, tmp_path, *extra, seconds=6)
    assert rc == 0, log[-3000:]
    raw, summary = raw_records(tmp_path), summary_of(tmp_path)
    assert summary["server_api"] == "omni"  # detected: GET /v1/audio/voices is an object
    assert {r["kind"] for r in raw} == set(OMNI_KINDS)
    bad = [r for r in raw if not r["ok"]]
    assert not bad, bad[:3]
    for r in raw:
        # Valid 24 kHz mono int16 audio (checked by the load test), exactly as long as the contract's
        # arithmetic for its text: the client got the whole utterance, in the model's own voice.
        assert r["audio_s"] == pytest.approx(text_frames(r["text_chars"]) / 25), r
        assert r["streamed"] is STREAMED[r["kind"]] and r["voice"] is None and r["status"] == 200
        assert r["ttfa_s"] > 0 and r["duration_s"] > 0
        assert sum(n for _, n in r["chunks"]) == round(r["audio_s"] * 24000)
    # Locust's request counter, the raw records and the report saw the same requests.
    rows = [row for row in json.loads((tmp_path / "locust.json").read_text()) if row["method"] == "POST"]
    assert sum(row["num_requests"] for row in rows) == len(raw) == summary["requests"]
    assert sum(row["num_failures"] for row in rows) == 0 == summary["failures"]
    assert {k: v["requests"] for k, v in summary["by_kind"].items()} == Counter(r["kind"] for r in raw)
    # The server generated what the clients received: each record's audio is a request the
    # emulation finished (requests cut by the end of the run are at most one per user).
    traced = omni.trace_path.read_text().splitlines()[traced_before:]
    served = [t for t in map(json.loads, traced) if t["error"] is None]
    served_audio = Counter(round(t["audio_seconds"], 3) for t in served if t["status"] == 200)
    client_audio = Counter(round(r["audio_s"], 3) for r in raw)
    assert not client_audio - served_audio
    assert len(raw) <= len(served) <= len(raw) + 4


def test_default_mix_and_max_tokens_as_max_new_tokens(omni, tmp_path):
    """Without --mix, vLLM-Omni's default mix; --max-tokens goes as max_new_tokens (OR2): a 40-step
    cap cuts every short text to 40 - 8 frames (XO2)."""
    rc, log = run_locust(omni.url, tmp_path, "--max-tokens", "40", "--seed", "3")
    assert rc == 0, log[-3000:]
    raw = raw_records(tmp_path)
    assert {r["kind"] for r in raw} == {"speech_sse", "speech_pcm", "speech_wav"}
    assert raw and all(r["ok"] and r["audio_s"] == pytest.approx(32 / 25) for r in raw), raw[:2]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--mix", "stream=1,speech_sse=1,clone=1"],
            "--mix kinds stream, clone cannot run against vLLM-Omni (detected: GET /v1/audio/voices returned "
            "an object with `voices`): vLLM-Omni's Higgs server serves speech only, no chat completions "
            "(docs/server-contract-omni.md D9); the kinds that work are speech_sse, speech_pcm, speech_wav, "
            "speech_mp3",
        ),
        (
            ["--mix", "chat=1", "--server-api", "omni"],
            "--mix kind chat cannot run against vLLM-Omni (--server-api",
        ),
        (["--temperature", "0.7"], "--temperature cannot be sent to vLLM-Omni"),
        (["--voice", "belinda"], "--voice 'belinda' is not an uploaded voice of the server"),
    ],
)
def test_what_vllm_omni_cannot_do_stops_the_run_at_start(omni, tmp_path, extra, message):
    rc, log = run_locust(omni.url, tmp_path, *extra)
    assert rc == 2, log[-2000:]
    assert message in log and "Traceback" not in log
    assert not (tmp_path / "raw.jsonl").exists()


def test_an_uploaded_voice_is_sent(omni, tmp_path):
    """OE3: upload the bundled reference (with its transcript: a clone needs ref_text, OR3), then
    --voice names it in every request."""
    files = {"audio_sample": ("reference_voice.wav", REFERENCE_WAV.read_bytes(), "audio/wav")}
    form = {"name": "loadtest_ref", "consent": "yes", "ref_text": REFERENCE_TEXT.read_text().strip()}
    headers = {"Authorization": f"Bearer {KEY}"}
    resp = httpx.post(f"{omni.url}/v1/audio/voices", files=files, data=form, headers=headers, timeout=30)
    assert resp.status_code == 200 and resp.json()["success"], resp.text
    rc, log = run_locust(omni.url, tmp_path, "--voice", "loadtest_ref", "--mix", "speech_sse=1,speech_wav=1")
    assert rc == 0, log[-3000:]
    raw = raw_records(tmp_path)
    assert raw and all(r["ok"] and r["voice"] == "loadtest_ref" for r in raw), raw[:2]


def test_generation_failures_get_their_classes(tmp_path):
    """OX3 (not streamed: 400), OX4 (SSE: an error event after the 200; raw stream: cut short)."""
    failing = start_omni(tmp_path, "--sim-error-rate", "1.0", "--api-key", KEY)
    try:
        rc, log = run_locust(failing.url, tmp_path, "--mix", ",".join(f"{k}=1" for k in OMNI_KINDS))
    finally:
        failing.stop()
    assert rc == 1, log[-3000:]  # Locust's own: requests failed, no --fail-on gate
    raw = raw_records(tmp_path)
    expected = {
        "speech_sse": "stream_error",
        "speech_pcm": "truncated_stream",
        "speech_wav": "http_400",
        "speech_mp3": "http_400",
    }
    assert raw and all(not r["ok"] and r["error"] == expected[r["kind"]] for r in raw), raw[:3]
    # The server's message reaches the record, except from a raw stream, which is only cut (OX4).
    assert all("simulated engine error" in r["error_detail"] for r in raw if r["kind"] != "speech_pcm")
