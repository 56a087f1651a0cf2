"""Underrun simulation (hand-computed), percentiles, goodput, steps and capacity."""

import pytest

from higgs_load.metrics import (
    SLO,
    Step,
    capacity,
    percentiles,
    simulate_underruns,
    summarize,
    summarize_steps,
    timeline,
)
from higgs_load.records import RequestRecord

SR = 24_000


def test_no_underrun_when_chunks_arrive_in_time():
    # 1 s of audio at t=0, next 1 s chunk at t=0.9 (before the buffer empties at 1.0)
    u = simulate_underruns([[0.0, SR], [0.9, SR], [1.95, SR]])
    assert (u.count, u.stall_s) == (0, 0.0)


def test_underruns_hand_computed():
    # play 0..1; chunk at 1.5 -> stall 0.5, play 1.5..2.0 (0.5 s); chunk at 2.0 exactly: no stall,
    # play to 3.0; chunk at 3.25 -> stall 0.25
    u = simulate_underruns([[0.0, SR], [1.5, SR // 2], [2.0, SR], [3.25, SR]])
    assert u.count == 2
    assert u.stall_s == pytest.approx(0.75)


def test_buffer_accumulates_when_ahead():
    # three chunks at once give 3 s of buffer; a chunk at 2.9 s is still in time
    u = simulate_underruns([[0.0, SR], [0.0, SR], [0.0, SR], [2.9, SR]])
    assert u.count == 0


def test_percentiles_exact():
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5)
    assert p["p90"] == pytest.approx(90.1)
    assert p["p99"] == pytest.approx(99.01)
    assert percentiles([])["p50"] is None


def rec(t, ok=True, ttfa=0.1, dur=2.0, audio=4.0, stall=0.0, error=None, streamed=True):
    r = RequestRecord(
        kind="stream",
        t_start=t,
        ok=ok,
        error=error,
        ttfa_s=ttfa if ok else None,
        duration_s=dur,
        audio_s=audio if ok else 0.0,
        streamed=streamed,
    )
    r.chunks = [[ttfa, int(audio * SR)]] if ok else []
    r.stall_s, r.underruns = stall, int(stall > 0)
    return r


def test_goodput_counts_only_requests_meeting_every_slo():
    records = [
        rec(0.0),  # good
        rec(1.0, ttfa=0.6),  # misses TTFA 500 ms
        rec(2.0, dur=5.0),  # RTF 1.25 misses 1.0
        rec(3.0, stall=0.3),  # underrun above 0.2 s allowed
        rec(4.0, ok=False, error="timeout"),
        rec(5.0, stall=0.1),  # underrun within allowance: good
    ]
    s = summarize(records, SLO(ttfa_ms=500, rtf=1.0, underrun_s=0.2))
    assert s["good_requests"] == 2
    assert s["goodput_share"] == pytest.approx(2 / 6)
    assert s["wall_s"] == pytest.approx(7.0)  # 0 .. 5 + 2
    assert s["goodput"] == pytest.approx(2 / 7)
    assert s["error_rate"] == pytest.approx(1 / 6)
    assert s["errors"] == {"timeout": 1}
    assert s["streams_with_underrun"] == 2
    assert s["audio_throughput"] == pytest.approx(20.0 / 7)


def test_steps_and_capacity():
    slo = SLO(ttfa_ms=500)
    records = [rec(t) for t in (0.0, 1.0)] + [rec(10.0 + t) for t in range(4)]
    records += [rec(20.0 + t, ttfa=0.9) for t in range(8)]  # third level misses TTFA
    steps = [Step(1, 0.0, 10.0), Step(2, 10.0, 20.0), Step(4, 20.0, 30.0)]
    rows = summarize_steps(records, steps, slo)
    assert [r["requests"] for r in rows] == [2, 4, 8]
    assert [r["goodput_share"] for r in rows] == [1.0, 1.0, 0.0]
    # step 2: 4 requests x 4 s audio, all chunks inside [10, 20)
    assert rows[1]["audio_throughput"] == pytest.approx(16 / 10)
    cap = capacity(rows, 0.95, replicas=2)
    assert cap["users"] == 2
    assert cap["users_per_replica"] == 1
    assert cap["audio_throughput_per_replica"] == pytest.approx(0.8)
    assert "1 concurrent streams, 0.80 audio-seconds per second per replica" in cap["sentence"]


def test_capacity_none_when_first_level_fails():
    assert capacity([{"users": 1, "requests": 3, "goodput_share": 0.5, "audio_throughput": 1}], 0.9) is None


def test_timeline_bins_audio_by_arrival():
    r = rec(0.0, ttfa=0.5, audio=2.0)
    r.chunks = [[0.5, SR], [1.5, SR]]
    tl = timeline([r, rec(1.2, ok=False, error="timeout", dur=0.5)], bin_s=1.0)
    assert tl["audio_throughput"] == [1.0, 1.0]
    assert tl["errors"] == [0, 1]
