"""Correctness under load: checks of a payload's content and of its length against its text.

Every request's payload is validated as before (higgs_load.measure, higgs_load.audio); these checks
come on top, each failing the request with its own error kind (counted in `errors`, reported on its
own in `correctness` of `summary.json` and in `summary.md`, a `--fail-on` metric, and plotted against
concurrency in `correctness_vs_concurrency.png`):

| kind | the request ... |
| --- | --- |
| `silence_gap` | carried a run of at least 1.5 s (`SILENCE_RUN_S`) of silence inside its speech: 50 ms windows whose RMS is 40 dB (`SILENCE_BELOW_DB`) or more below the request's speech level (the 90th percentile of its windows' RMS), between its first and last speech window; leading and trailing silence do not count |
| `clipped_audio` | carried clipping: runs of 3 or more consecutive samples at full scale (`abs >= 32767`) that add up to at least 1 ms (24 samples, `CLIP_MIN_SAMPLES`) |
| `audio_too_long` | carried more seconds of audio per character of its text than the run's low-load band allows (a generation that ran on: known fault K1) |
| `audio_too_short` | carried fewer seconds per character than the band allows (a generation cut short that still ended cleanly) |
| `truncated_stream` | (as before) ended without the server's end marker (`[DONE]`, `speech.audio.done`) or with fewer samples than a WAV header announced, or was cut |

The length band is learnt from the same run, per voice (`RequestRecord.voice`; chat, which sends
none, is one group), from its *low-load* requests whose payload passed every other check: those sent
while the run's user count was at its lowest (`RequestRecord.users`), or, when a voice has fewer
than 8 (`BASELINE_MIN`) of them, its first 8 by send time. Their rates give the band: in
log(seconds per character), median +/- max(4 (`BAND_K`) x 1.4826 x MAD, log 2 (`BAND_MIN_FACTOR`)),
so the band is never narrower than half to twice the median rate. A voice with fewer than 8 such
requests uses the band of all voices together; with fewer than 8 over the run, lengths are not judged
(`length_band` in `summary.json` says so). The band is applied when the report is built (the raw
records keep the verdict of the measurement, and Locust's own statistics count these requests as
successes); the report CLI recomputes it the same way. The absolute `implausible_length` limit
(`--max-audio-factor`) still applies per request as it arrives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from higgs_load.audio import SAMPLE_RATE
from higgs_load.records import RequestRecord

SILENCE_WINDOW_S = 0.05
SILENCE_BELOW_DB = 40.0
SILENCE_RUN_S = 1.5
CLIP_LEVEL = 32767
CLIP_RUN_SAMPLES = 3
CLIP_MIN_SAMPLES = 24
BASELINE_MIN = 8
BAND_K = 4.0
BAND_MIN_FACTOR = 2.0
MAD_TO_SIGMA = 1.4826

LENGTH_KINDS = ("audio_too_long", "audio_too_short")
CONTENT_KINDS = ("silence_gap", "clipped_audio")
# The error kinds of a wrong payload that this module and the stream readers report, in report order.
CORRECTNESS_KINDS = (*LENGTH_KINDS, *CONTENT_KINDS, "truncated_stream")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in `mask`."""
    if mask.size == 0:
        return []
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def silence_gap(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str | None:
    """The longest silence inside the speech, described, when it lasts `SILENCE_RUN_S` or more."""
    win = int(SILENCE_WINDOW_S * sample_rate)
    n = samples.size // win
    if n < 3:
        return None
    frames = samples[: n * win].astype(np.float64).reshape(n, win)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    level = float(np.percentile(rms, 90))
    if level <= 0:
        return None  # all silent: silent_audio's case
    quiet = rms < level * 10 ** (-SILENCE_BELOW_DB / 20)
    speech = np.flatnonzero(~quiet)
    inside = quiet[speech[0] : speech[-1] + 1]
    longest = max((end - start for start, end in _runs(inside)), default=0)
    seconds = longest * win / sample_rate
    if seconds + 1e-9 < SILENCE_RUN_S:
        return None
    return (
        f"{seconds:.2f} s of silence inside the speech (>= {SILENCE_RUN_S:g} s at "
        f"{SILENCE_BELOW_DB:g} dB below its speech level)"
    )


def clipping(samples: np.ndarray) -> str | None:
    """The clipped samples, described, when runs of full-scale samples add up to `CLIP_MIN_SAMPLES`."""
    at_full = np.abs(samples.astype(np.int32)) >= CLIP_LEVEL
    runs = [(s, e) for s, e in _runs(at_full) if e - s >= CLIP_RUN_SAMPLES]
    total = sum(e - s for s, e in runs)
    if total < CLIP_MIN_SAMPLES:
        return None
    return f"{total} samples clipped at full scale in {len(runs)} runs of >= {CLIP_RUN_SAMPLES}"


def check_content(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> tuple[str, str] | None:
    """(error kind, detail) of a well-formed, non-silent int16 payload that is still wrong, else None."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    detail = silence_gap(samples, sample_rate)
    if detail:
        return "silence_gap", detail
    detail = clipping(samples)
    if detail:
        return "clipped_audio", detail
    return None


@dataclass(frozen=True)
class LengthBand:
    """Seconds of audio per character of text a request may carry, learnt from `baseline` requests."""

    median_s_per_char: float
    low: float
    high: float
    baseline: int

    def to_dict(self) -> dict:
        return {
            "median_s_per_char": self.median_s_per_char,
            "low_s_per_char": self.low,
            "high_s_per_char": self.high,
            "baseline_requests": self.baseline,
        }


def learn_band(rates: Sequence[float]) -> LengthBand | None:
    """The band of these seconds-per-character rates (None below `BASELINE_MIN` of them)."""
    logs = np.log(np.asarray([r for r in rates if r > 0], dtype=float))
    if logs.size < BASELINE_MIN:
        return None
    center = float(np.median(logs))
    mad = float(np.median(np.abs(logs - center)))
    half = max(BAND_K * MAD_TO_SIGMA * mad, math.log(BAND_MIN_FACTOR))
    return LengthBand(math.exp(center), math.exp(center - half), math.exp(center + half), int(logs.size))


def _rate(rec: RequestRecord) -> float | None:
    if not rec.text_chars or rec.audio_s <= 0:
        return None
    return rec.audio_s / rec.text_chars


def _group(rec: RequestRecord) -> str:
    return rec.voice or "(no voice)"


def _low_load(records: list[RequestRecord], lowest: int | None) -> list[RequestRecord]:
    low = [r for r in records if r.users is None or r.users == lowest]
    if len(low) >= BASELINE_MIN:
        return low
    return sorted(records, key=lambda r: r.t_start)[:BASELINE_MIN]


def judge_lengths(records: Sequence[RequestRecord]) -> dict:
    """Fail, in place, the requests whose audio is too long or short for their text (`LENGTH_KINDS`).

    Idempotent: requests it failed before are judged again. Returns what `length_band` in
    `summary.json` shows: the band per voice (and `all`), and the requests it failed.
    """
    candidates = [r for r in records if r.ok or r.error in LENGTH_KINDS]
    for rec in candidates:
        if rec.error in LENGTH_KINDS:
            rec.ok, rec.error, rec.error_detail = True, None, ""
    judged = [r for r in candidates if _rate(r) is not None]
    groups: dict[str, list[RequestRecord]] = {}
    for rec in judged:
        groups.setdefault(_group(rec), []).append(rec)
    levels = [r.users for r in records if r.users is not None]
    lowest = min(levels) if levels else None
    baselines = {key: _low_load(recs, lowest) for key, recs in groups.items()}
    pooled = learn_band([_rate(r) or 0.0 for recs in baselines.values() for r in recs])
    bands = {key: learn_band([_rate(r) or 0.0 for r in recs]) or pooled for key, recs in baselines.items()}
    failed = {kind: 0 for kind in LENGTH_KINDS}
    for rec in judged:
        band = bands.get(_group(rec))
        rate = _rate(rec)
        if band is None or rate is None:
            continue
        kind = "audio_too_long" if rate > band.high else "audio_too_short" if rate < band.low else None
        if kind is None:
            continue
        rec.ok, rec.error = False, kind
        rec.error_detail = (
            f"{rec.audio_s:.2f} s of audio for {rec.text_chars} characters ({1000 * rate:.1f} ms per "
            f"character; this run's low-load band {1000 * band.low:.1f}-{1000 * band.high:.1f})"
        )
        failed[kind] += 1
    return {
        "judged": pooled is not None,
        "bands": {key: band.to_dict() if band else None for key, band in sorted(bands.items())},
        "all": pooled.to_dict() if pooled else None,
        **failed,
    }


def correctness_counts(records: Sequence[RequestRecord]) -> dict[str, int]:
    """Requests failed with each of `CORRECTNESS_KINDS` (zeros included)."""
    return {kind: sum(1 for r in records if r.error == kind) for kind in CORRECTNESS_KINDS}
