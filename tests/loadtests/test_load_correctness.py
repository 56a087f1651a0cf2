"""Correctness checks (higgs_load.correctness, higgs_load.quality_report) on synthetic PCM and records:
silence gaps, clipping, the low-load length band, and their summary fields, gates and rows."""

from __future__ import annotations

import numpy as np
import pytest

from higgs_load.correctness import (
    BASELINE_MIN,
    CORRECTNESS_KINDS,
    check_content,
    judge_lengths,
)
from higgs_load.metrics import SLO
from higgs_load.quality_report import by_concurrency, judge_quality, markdown_rows
from higgs_load.records import ERROR_CLASSES, RequestRecord
from higgs_load.report import build_summary, markdown
from higgs_load.thresholds import GATE_METRICS, evaluate, parse_gates

SR = 24_000


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """A speech-like signal: 200 ms syllables of a 150 Hz tone, some quiet, a faint noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = np.sin(np.pi * (t % 0.2) / 0.2) ** 0.6
    quiet = rng.random(int(seconds / 0.2) + 1) < 0.2
    env = np.where(quiet[(t / 0.2).astype(int)], 0.04, env)
    x = 0.6 * env * np.sin(2 * np.pi * 150 * t) + rng.normal(0, 0.004, t.size)
    return np.clip(x * 32767, -32768, 32767).astype("<i2")


def pcm(*parts: np.ndarray) -> bytes:
    return np.concatenate(parts).astype("<i2").tobytes()


def zeros(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype="<i2")


def test_clean_speech_passes():
    assert check_content(pcm(speech(6.0))) is None


def test_silence_inside_speech_is_a_gap_but_not_at_the_ends():
    assert check_content(pcm(speech(1.0), zeros(2.0), speech(1.0, 1)))[0] == "silence_gap"
    assert check_content(pcm(speech(1.0), zeros(1.0), speech(1.0, 1))) is None  # a pause
    assert check_content(pcm(zeros(3.0), speech(2.0), zeros(3.0))) is None  # lead-in and tail


def test_clipping_runs_are_clipped_audio_but_a_stray_peak_is_not():
    loud = speech(2.0)
    loud[SR // 2 : SR // 2 + 2400] = np.where(np.arange(2400) % 200 < 100, 32767, -32768)
    kind, detail = check_content(pcm(loud))
    assert kind == "clipped_audio" and "runs" in detail
    stray = speech(2.0)
    stray[1000:1002] = 32767  # two samples: no run of three
    stray[5000:5003] = 32767  # one run of three: under 1 ms in all
    assert check_content(pcm(stray)) is None


def rec(
    audio_s: float, chars: int = 50, users: int = 1, t: float = 0.0, voice: str | None = "a"
) -> RequestRecord:
    return RequestRecord(
        kind="stream", t_start=t, ok=True, audio_s=audio_s, text_chars=chars, users=users, voice=voice
    )


def baseline(n: int = 10, voice: str | None = "a") -> list[RequestRecord]:
    return [rec(50 / 15 * (1 + 0.02 * (i % 5)), users=1, t=i, voice=voice) for i in range(n)]


def test_length_band_is_learnt_at_low_load_and_judges_every_level():
    records = [
        *baseline(),
        rec(50 / 15 * 3, users=8, t=20),  # three times the rate: too long
        rec(50 / 15 * 0.3, users=8, t=21),  # too short
        rec(50 / 15 * 1.3, users=8, t=22),  # a slower reading: inside the band
    ]
    out = judge_lengths(records)
    assert [r.error for r in records[-3:]] == ["audio_too_long", "audio_too_short", None]
    assert out["judged"] and out["audio_too_long"] == 1 and out["audio_too_short"] == 1
    assert out["bands"]["a"]["baseline_requests"] == 10  # only the low-load ones
    assert "low-load band" in records[-3].error_detail
    assert judge_lengths(records) == out  # idempotent: failed ones are judged again, the same way


def test_too_few_low_load_requests_use_the_first_ones_then_none():
    # no request at the lowest level but one: the first BASELINE_MIN by send time make the band
    records = [rec(50 / 15, users=2 + (i > 0), t=i) for i in range(BASELINE_MIN + 2)]
    records.append(rec(50 / 15 * 4, users=3, t=99))
    assert judge_lengths(records)["audio_too_long"] == 1
    few = [rec(50 / 15, t=i) for i in range(BASELINE_MIN - 2)] + [rec(50, t=50)]  # 7 in all
    out = judge_lengths(few)
    assert out["judged"] is False and all(r.ok for r in few)


def test_a_voice_with_too_few_requests_uses_the_pooled_band():
    records = [*baseline(10, "a"), rec(50 / 15 * 5, users=1, t=30, voice="rare")]
    out = judge_lengths(records)
    assert records[-1].error == "audio_too_long"
    assert out["bands"]["rare"] == out["all"]


def test_summary_fields_rows_and_gates():
    chunks = [(0.0, SR), (1.5, SR), (2.0, SR)]  # needs 1 s of pre-buffer
    records = [*baseline()]
    for r in records:
        r.streamed, r.chunks = True, list(chunks)
    bad = rec(1.0, users=4, t=40)
    bad.ok, bad.error = False, "silence_gap"
    records.append(bad)
    s = build_summary(records, SLO(underrun_s=0.0), prebuffer_s=0.0)
    assert s["min_prebuffer_ms"] == {
        "p50": pytest.approx(1000),
        "p95": pytest.approx(1000),
        "p99": pytest.approx(1000),
    }
    assert s["streams_with_underrun"] == 10 and s["good_requests"] == 0
    s1 = build_summary(records, SLO(underrun_s=0.0), prebuffer_s=1.0)
    assert s1["streams_with_underrun"] == 0 and s1["good_requests"] == 10 and s1["prebuffer_ms"] == 1000
    assert s1["silence_gap"] == 1 and s1["correctness"] == {
        k: int(k == "silence_gap") for k in CORRECTNESS_KINDS
    }
    ok, lines = evaluate(parse_gates("silence_gap<=0,min_prebuffer_p99_ms<=1500"), s1)
    assert not ok and "MISSED" in lines[0] and lines[1].endswith("ok")
    md = markdown(s1)
    assert "pre-buffer for no stall p50 / p95 / p99 (ms) | 1000 / 1000 / 1000" in md
    assert "silence_gap 1" in md
    assert by_concurrency(s1, records)[4]["silence_gap"] == 1
    assert set(CORRECTNESS_KINDS) <= set(GATE_METRICS) and set(CORRECTNESS_KINDS) <= set(ERROR_CLASSES)


def test_without_a_prebuffer_the_records_own_underruns_stand():
    r = rec(2.0)
    r.streamed, r.underruns, r.stall_s = True, 2, 0.7  # no chunks kept: nothing to re-simulate
    out = judge_quality([r])
    assert (r.underruns, r.stall_s) == (2, 0.7) and out["prebuffer_ms"] is None
    assert markdown_rows(out)[0].startswith("| pre-buffer for no stall")
