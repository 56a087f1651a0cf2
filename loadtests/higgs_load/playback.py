"""The client's playback model: a listener with a pre-buffer, and the pre-buffer each stream needed.

A listener buffers `prebuffer_s` seconds of audio, then plays in real time. Precisely: playback starts
at the arrival that brings the buffered audio above `prebuffer_s` (0, the default, is the first audio,
DESIGN.md "Underrun"; a stream that ends with less buffered starts at its last arrival). An underrun
is a moment the buffer runs dry before the stream's last chunk has arrived; the listener resumes at
the next arrival (it does not re-buffer). Running dry after the last chunk is the normal end.

`min_prebuffer_s` is the smallest such pre-buffer with which a stream would have played without a
single stall: over a run, its p50/p95/p99 (`min_prebuffer_ms` in `summary.json`) is the jitter
buffer a player needs for half, 95 % or 99 % of the streams. `--prebuffer-ms` sets the pre-buffer
the run's underrun figures (and the `--slo-underrun-s` SLO) are judged at.

Pure functions of `chunks`, [(arrival seconds, samples), ...] in arrival order (a RequestRecord's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from higgs_load.audio import SAMPLE_RATE

_EPS = 1e-9


@dataclass(frozen=True)
class Underrun:
    count: int
    stall_s: float


def _audio(chunks: Sequence[Sequence[float]], sample_rate: int) -> list[tuple[float, float]]:
    """(arrival, seconds) of the chunks that carry audio."""
    return [(float(t), n / sample_rate) for t, n in chunks if n > 0]


def simulate_underruns(
    chunks: Sequence[Sequence[float]], *, prebuffer_s: float = 0.0, sample_rate: int = SAMPLE_RATE
) -> Underrun:
    """Underruns of a listener that buffers `prebuffer_s` seconds before it starts playing.

    Playback starts at the arrival that brings the buffered audio above `prebuffer_s` (0: the first
    audio); after that the listener plays in real time, and each time the buffer runs dry before the
    next chunk arrives is one underrun, stalling until that arrival. Running dry after the last chunk
    is the normal end, not an underrun.
    """
    audio = _audio(chunks, sample_rate)
    if not audio:
        return Underrun(0, 0.0)
    buffered = 0.0
    start = len(audio) - 1
    for i, (_t, dur) in enumerate(audio):
        buffered += dur
        if buffered > prebuffer_s + _EPS:
            start = i
            break
    play_end = audio[start][0] + buffered  # the buffered audio runs out then
    count = 0
    stall = 0.0
    for arrival, dur in audio[start + 1 :]:
        if arrival > play_end + _EPS:
            count += 1
            stall += arrival - play_end
            play_end = arrival + dur
        else:
            play_end += dur
    return Underrun(count, stall)


def min_prebuffer_s(chunks: Sequence[Sequence[float]], *, sample_rate: int = SAMPLE_RATE) -> float | None:
    """The smallest pre-buffer (seconds of audio) with which this stream plays without a stall.

    Chunk i (arrivals a_i, C_i seconds of audio before it) is in time when playback started at S
    satisfies a_i <= S + C_i, so playback must start no earlier than S* = max_i(a_i - C_i). Playback
    starts at the arrival that brings the buffer above the pre-buffer, so the answer is the audio that
    arrived before the first chunk arriving at or after S*. 0 when playing from the first audio
    never stalls; None when the stream carried no audio.
    """
    audio = _audio(chunks, sample_rate)
    if not audio:
        return None
    before = 0.0
    latest = -float("inf")  # S*
    for arrival, dur in audio:
        latest = max(latest, arrival - before)
        before += dur
    before = 0.0
    for arrival, dur in audio:
        if arrival >= latest - _EPS:
            return before
        before += dur
    return before  # not reached: the chunk attaining S* arrives at or after it
