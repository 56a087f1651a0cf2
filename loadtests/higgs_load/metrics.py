"""Load-test metric definitions (DESIGN.md "Load-test metrics"), computed exactly from raw records.

No Locust import: the locustfile, the report CLI and the tests share these functions.

A request either succeeds (valid, non-silent 24 kHz mono int16 audio of a plausible length, read to
the end of its body) or fails with one error kind, counted in `errors`:

| kind | the request ... |
| --- | --- |
| `http_<status>` | got an HTTP error status (400, 401, 404, 500, ...) |
| `timeout` | received no byte for `--request-timeout` seconds |
| `connection_error` | got no response (refused, reset before the status line) |
| `truncated_stream` | lost its body midway: no `data: [DONE]` (chat) or `speech.audio.done` (vLLM-Omni's speech SSE), a cut WAV or MP3 file, a reset (how vLLM-Omni's raw stream fails) |
| `stream_error` | carried the server's own error inside a 200 body: an SSE event `data: {"error": ...}` (contract CH8) or `speech.audio.error` (vLLM-Omni, OX4), or `{"error": ...}` JSON appended to a speech body (SP10) |
| `invalid_audio` | carried no audio or malformed audio (not base64, not a WAV, wrong rate, half samples) |
| `silent_audio` | carried audio whose peak is below about -60 dBFS |
| `implausible_length` | carried audio far longer than its text can take (see `plausible_audio_limit_s`; known fault K1) |

`implausible_length` is also reported on its own (`implausible_length` in `summary.json`, a row in
`summary.md`, a `--fail-on` metric).

The correctness checks (higgs_load.correctness, below) add `silence_gap`, `clipped_audio`,
`audio_too_long` and `audio_too_short`; underruns are counted at the listener's `--prebuffer-ms`
(higgs_load.playback, below).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from higgs_load.audio import SAMPLE_RATE
from higgs_load.playback import Underrun, simulate_underruns  # noqa: F401 (re-exported)
from higgs_load.records import RequestRecord

PERCENTILES = (50, 90, 99)
CHARS_PER_SECOND = 15.0  # speech read aloud: about 180 words per minute
IMPLAUSIBLE_FACTOR = 3.0
IMPLAUSIBLE_FLOOR_S = 5.0


def plausible_audio_limit_s(
    text_chars: int, factor: float = IMPLAUSIBLE_FACTOR, floor_s: float = IMPLAUSIBLE_FLOOR_S
) -> float | None:
    """The most audio a text of `text_chars` characters may yield before it is `implausible_length`.

    Speech runs at about 15 characters per second, so a text should take `text_chars / 15` seconds;
    audio more than `factor` (3, `--max-audio-factor`) times that, and longer than `floor_s` (5 s, so a
    short text may still carry pauses and breaths), is a generation that ran on to `max_tokens`
    (known fault K1, boson-ai/higgs-audio#151: 40 s of audio for a short sentence). A factor of 0
    turns the check off (None).
    """
    if factor <= 0:
        return None
    return max(floor_s, factor * text_chars / CHARS_PER_SECOND)


@dataclass(frozen=True)
class SLO:
    ttfa_ms: float | None = None
    rtf: float | None = None
    underrun_s: float | None = None  # allowed total stall per stream; None = not judged

    def met_by(self, rec: RequestRecord) -> bool:
        """A request is 'good' when it succeeded and meets every SLO given."""
        if not rec.ok:
            return False
        if self.ttfa_ms is not None and (rec.ttfa_s is None or rec.ttfa_s * 1000 > self.ttfa_ms):
            return False
        if self.rtf is not None and (rec.rtf is None or rec.rtf > self.rtf):
            return False
        return not (self.underrun_s is not None and rec.stall_s > self.underrun_s + 1e-9)


def percentiles(values: Sequence[float], ps: Sequence[int] = PERCENTILES) -> dict[str, float | None]:
    """Exact percentiles (numpy linear interpolation) of the raw values; None when there are none."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return {f"p{p}": None for p in ps}
    return {f"p{p}": float(np.percentile(arr, p)) for p in ps}


def _window(records: Sequence[RequestRecord]) -> tuple[float, float]:
    start = min(r.t_start for r in records)
    end = max(r.t_end for r in records)
    return start, end


def audio_seconds_between(records: Sequence[RequestRecord], start: float, end: float) -> float:
    """Audio seconds delivered (by chunk arrival time) inside [start, end), successful requests only."""
    total = 0.0
    for rec in records:
        if not rec.ok:
            continue
        for offset, samples in rec.chunks:
            if start <= rec.t_start + offset < end:
                total += samples / SAMPLE_RATE
    return total


def summarize(
    records: Sequence[RequestRecord],
    slo: SLO,
    window: tuple[float, float] | None = None,
) -> dict:
    """Whole-run (or one step's) figures. `window` defaults to first send .. last completion."""
    n = len(records)
    if n == 0:
        return {"requests": 0}
    start, end = window or _window(records)
    wall = max(end - start, 1e-9)
    good = [r for r in records if r.ok]
    errors: dict[str, int] = {}
    for r in records:
        if not r.ok:
            errors[r.error or "unknown"] = errors.get(r.error or "unknown", 0) + 1
    ttfa_ms = [r.ttfa_s * 1000 for r in good if r.ttfa_s is not None]
    rtfs = [r.rtf for r in good if r.rtf is not None]
    streams = [r for r in good if r.streamed]
    with_underrun = sum(1 for r in streams if r.underruns > 0)
    meeting = sum(1 for r in records if slo.met_by(r))
    audio_total = sum(r.audio_s for r in good)
    ttfa_p = percentiles(ttfa_ms)
    rtf_p = percentiles(rtfs)
    return {
        "requests": n,
        "successes": len(good),
        "failures": n - len(good),
        "error_rate": (n - len(good)) / n,
        "errors": dict(sorted(errors.items())),
        "wall_s": wall,
        "audio_seconds": audio_total,
        "audio_throughput": audio_seconds_between(records, start, end) / wall
        if window
        else audio_total / wall,
        "requests_per_s": n / wall,
        "ttfa_ms": ttfa_p,
        "ttfa_p50_ms": ttfa_p["p50"],
        "ttfa_p90_ms": ttfa_p["p90"],
        "ttfa_p99_ms": ttfa_p["p99"],
        "ttfa_mean_ms": float(np.mean(ttfa_ms)) if ttfa_ms else None,
        "rtf": rtf_p,
        "rtf_p50": rtf_p["p50"],
        "rtf_p90": rtf_p["p90"],
        "rtf_p99": rtf_p["p99"],
        "xrt_p50": (1 / rtf_p["p50"]) if rtf_p["p50"] else None,
        "streams": len(streams),
        "streams_with_underrun": with_underrun,
        "underrun_free_share": (1 - with_underrun / len(streams)) if streams else None,
        "underrun_count": sum(r.underruns for r in streams),
        "underrun_stall_s": sum(r.stall_s for r in streams),
        "implausible_length": errors.get("implausible_length", 0),
        "good_requests": meeting,
        "goodput": meeting / wall,
        "goodput_share": meeting / n,
    }


STEP_WARMUP_FRACTION = 1 / 3  # --step-warmup: the first third of a level is its warm-up
STEP_MEASURED_REQUESTS = 2  # the measured part of a level lasts at least this many of its longest requests


@dataclass(frozen=True)
class Step:
    """A period of the run held at one user count (from the shape's timeline): the level began at
    `t_begin` and ended at `t_end`; its figures are measured from `t_measure` (after its warm-up) on."""

    users: int
    t_begin: float
    t_end: float
    t_measure: float | None = None  # None: no warm-up, measured from t_begin

    @property
    def measured_from(self) -> float:
        return self.t_begin if self.t_measure is None else self.t_measure


def with_warmup(step: Step, fraction: float) -> Step:
    """`step` measured from `fraction` of its length on (the first part, the ramp, left out)."""
    return Step(step.users, step.t_begin, step.t_end, step.t_begin + fraction * (step.t_end - step.t_begin))


def min_step_hold_s(longest_request_s: float, warmup_fraction: float = STEP_WARMUP_FRACTION) -> float:
    """The shortest hold that describes a level, for requests lasting up to `longest_request_s`.

    Its warm-up must outlast one longest request (by then the previous level's requests have ended
    and every user of this level is streaming), and its measured part must hold `STEP_MEASURED_REQUESTS`
    (2) of them (so each user completes requests inside it). With the default warm-up (a third) that
    is 3 times the longest request.
    """
    if not 0 < warmup_fraction < 1:
        raise ValueError(f"the step warm-up must be a fraction between 0 and 1, got {warmup_fraction}")
    return max(
        longest_request_s / warmup_fraction,
        STEP_MEASURED_REQUESTS * longest_request_s / (1 - warmup_fraction),
    )


def summarize_steps(records: Sequence[RequestRecord], steps: Sequence[Step], slo: SLO) -> list[dict]:
    """Per-step figures over the step's measured window [`measured_from`, `t_end`): the level's own,
    not its ramp.

    Throughput counts every audio chunk that arrived inside the window, whichever request it belongs
    to (a request that began in the previous level, or runs on past the window, counts for the audio
    it delivered inside it). Request figures (TTFA and RTF percentiles, error rate, goodput, underruns)
    come from the requests sent inside the window: after the warm-up, so the level is fully spawned and
    the previous level's requests are gone.

    The warm-up is `--step-warmup` (a third of the hold); the hold must be at least `min_step_hold_s`
    of the prompts' longest request at real time (15 characters per audio second, capped by
    max_tokens), else the run is refused naming `--step-hold` and the minimum (its default). The first
    level begins when the shape starts, before the first user; the last ends where the plan ends, and
    the run then waits for the requests in flight (Locust's `--stop-timeout`: twice the longest
    request, 10 s at least), so the audio they delivered before that end counts in the last level.
    """
    out = []
    for step in steps:
        begin, end = step.measured_from, step.t_end
        wall = max(end - begin, 1e-9)
        recs = [r for r in records if begin <= r.t_start < end]
        row: dict = {"users": step.users, "t_begin": step.t_begin, "t_end": step.t_end, "t_measure": begin}
        row.update(summarize(recs, slo, window=(begin, end)) if recs else {"requests": 0})
        audio = audio_seconds_between(records, begin, end)
        row["audio_seconds_in_window"] = audio
        row["audio_throughput"] = audio / wall
        out.append(row)
    return out


def capacity(step_rows: Sequence[dict], min_good_share: float, replicas: int = 1) -> dict | None:
    """Highest concurrency (walking up from the lowest) whose goodput share meets `min_good_share`.

    Stops at the first level that misses, so a lucky level after a collapse does not count.
    """
    best = None
    for row in sorted(step_rows, key=lambda r: r["users"]):
        if row.get("requests", 0) == 0 or row["goodput_share"] < min_good_share:
            break
        best = row
    if best is None:
        return None
    per_replica_users = best["users"] / replicas
    per_replica_audio = best["audio_throughput"] / replicas
    return {
        "users": best["users"],
        "audio_throughput": best["audio_throughput"],
        "replicas": replicas,
        "users_per_replica": per_replica_users,
        "audio_throughput_per_replica": per_replica_audio,
        "sentence": (
            f"{per_replica_users:g} concurrent streams, {per_replica_audio:.2f} audio-seconds per second "
            f"per replica (goodput share >= {min_good_share:g})"
        ),
    }


def timeline(records: Sequence[RequestRecord], bin_s: float = 1.0) -> dict[str, list[float]]:
    """Per-bin audio throughput (audio-s/s, by chunk arrival), completions and errors over time."""
    if not records:
        return {"t": [], "audio_throughput": [], "completed": [], "errors": []}
    start, end = _window(records)
    nbins = max(1, math.ceil((end - start) / bin_s))
    audio = np.zeros(nbins)
    done = np.zeros(nbins)
    errs = np.zeros(nbins)
    for rec in records:
        idx = min(nbins - 1, int((rec.t_end - start) / bin_s))
        if rec.ok:
            done[idx] += 1
            for offset, samples in rec.chunks:
                audio[min(nbins - 1, int((rec.t_start + offset - start) / bin_s))] += samples / SAMPLE_RATE
        else:
            errs[idx] += 1
    return {
        "t": [i * bin_s for i in range(nbins)],
        "audio_throughput": list(audio / bin_s),
        "completed": list(done),
        "errors": list(errs),
    }
