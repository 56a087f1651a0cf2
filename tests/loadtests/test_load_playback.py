"""The playback model (higgs_load.playback): underruns at a pre-buffer, and the smallest pre-buffer that
plays a stream without a stall, on synthetic chunk timelines (hand-computed, then random ones)."""

from __future__ import annotations

import numpy as np
import pytest

from higgs_load.playback import min_prebuffer_s, simulate_underruns

SR = 24_000
# arrivals 0, 1.5, 2.0, 3.25 s, one second of audio each: at first audio it stalls 0.5 s at 1.5 s
LATE_SECOND = [(0.0, SR), (1.5, SR), (2.0, SR), (3.25, SR)]


def test_default_prebuffer_starts_at_first_audio():
    u = simulate_underruns(LATE_SECOND)
    assert (u.count, u.stall_s) == (1, pytest.approx(0.5))


def test_min_prebuffer_is_the_audio_before_the_latest_needed_start():
    # playback must start at 1.5 s or later (S* = max(a_i - C_i) = 1.5 - 1.0); the chunk at 1.5 s
    # arrives after one second of audio: that second is the pre-buffer needed
    assert min_prebuffer_s(LATE_SECOND) == pytest.approx(1.0)
    assert simulate_underruns(LATE_SECOND, prebuffer_s=1.0).count == 0
    assert simulate_underruns(LATE_SECOND, prebuffer_s=0.999).count == 1


def test_on_time_stream_needs_none_and_empty_stream_has_none():
    assert min_prebuffer_s([(0.1, SR), (0.5, SR), (1.0, SR)]) == 0.0
    assert min_prebuffer_s([]) is None
    assert min_prebuffer_s([(0.2, 0)]) is None
    assert simulate_underruns([]).count == 0


def test_a_stream_shorter_than_the_prebuffer_starts_at_its_end():
    # 2 s buffered by 3.0 s, less than the 5 s asked: playback starts at the last arrival, no stall
    u = simulate_underruns([(0.0, SR), (3.0, SR)], prebuffer_s=5.0)
    assert (u.count, u.stall_s) == (0, 0.0)


def test_stall_after_a_prebuffered_start():
    # 0.5 s pre-buffer: starts at 1.0 s with 1 s buffered (plays to 2.0), next chunk at 2.6: 0.6 s stall
    u = simulate_underruns([(0.0, SR // 2), (1.0, SR // 2), (2.6, SR)], prebuffer_s=0.5)
    assert (u.count, u.stall_s) == (1, pytest.approx(0.6))


def test_random_timelines_min_prebuffer_is_exactly_the_threshold():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        arrivals = np.cumsum(rng.exponential(0.3, n))
        samples = rng.integers(SR // 10, SR, n)
        chunks = list(zip(arrivals.tolist(), samples.tolist(), strict=True))
        need = min_prebuffer_s(chunks)
        assert need is not None and need >= 0
        assert simulate_underruns(chunks, prebuffer_s=need).count == 0
        if need > 0:
            assert simulate_underruns(chunks, prebuffer_s=need - 1e-3).count > 0
        # more pre-buffer never adds a stall
        assert simulate_underruns(chunks, prebuffer_s=need + 1.0).count == 0
