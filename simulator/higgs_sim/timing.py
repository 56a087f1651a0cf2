"""Timing model: how long one engine step takes, from the H100 decode-step table.

One decode step emits one audio token (a row of 8 codebooks, about one frame: 1/25 s of audio; see
``higgs_sim.engine`` for the exact mapping) for every running stream. Its duration is
interpolated from ``data/h100_decode_roofline.json`` (measured on one H100 80GB with a backbone
shaped like Higgs Audio v2: see /work/shared/calibration/README.md), linearly in batch size and in
context length, then multiplied by a slowdown factor.

Why the default slowdown is 3.4
-------------------------------
The table is a roofline: it leaves out the real model's DualFFN audio layers, sampling and the
delay pattern, the audio tokenizer's decoder, and HTTP/scheduler overhead. The published figure
for the real server is about 60 audio-s/s on an A100-40GB. An H100 has ~2.15x the memory bandwidth
of an A100-40GB (3.35 vs 1.56 TB/s) and decode is bandwidth-bound, so one real H100 should make
about 60 x 2.15 = 130 audio-s/s at a typical operating point. We take that operating point to be
64 concurrent streams with 1024 tokens of context (a voice-cloning prompt plus a few seconds of
generated audio). The raw table gives 445 audio-s/s there; 445 / 130 = 3.4. With it a single stream
runs at ~3.7x real time, 64 streams at ~2x, and 256 streams with 1024 tokens of context fall below
real time (~0.85x), so a load test sees underruns at high concurrency as it would on a real server.

The ``raw`` profile is the table as measured (slowdown 1), i.e. the physical upper bound.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources

FRAMES_PER_SECOND = 25
DEFAULT_SLOWDOWN = 3.4
# Operating point the default slowdown was derived at (see the module docstring).
REFERENCE_BATCH = 64
REFERENCE_KV_LEN = 1024
REFERENCE_H100_AUDIO_S_PER_S = 130.0

# Prefill: a 3B model at ~40% of H100 bf16 peak handles roughly 33k prompt tokens/s, plus a fixed
# launch overhead. Scaled by the same slowdown as decode steps.
PREFILL_FIXED_MS = 2.0
PREFILL_MS_PER_TOKEN = 0.03

PROFILES = ("calibrated", "raw")


@dataclass(frozen=True)
class CalibrationRow:
    batch: int
    kv_len: int
    step_ms: float


def load_table() -> list[CalibrationRow]:
    """The H100 decode-step table shipped with the package."""
    text = resources.files("higgs_sim").joinpath("data/h100_decode_roofline.json").read_text()
    rows = json.loads(text)["rows"]
    return [CalibrationRow(int(r["batch"]), int(r["kv_len"]), float(r["step_ms"])) for r in rows]


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear interpolation; extrapolates linearly from the two nearest points."""
    if len(xs) == 1:
        return ys[0]
    i = 1
    while i < len(xs) - 1 and x > xs[i]:
        i += 1
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class StepTimeModel:
    """Step time by batch and context length, from the calibration table, times a slowdown."""

    def __init__(self, slowdown: float, table: list[CalibrationRow] | None = None) -> None:
        if not (slowdown > 0 and math.isfinite(slowdown)):
            raise ValueError(f"slowdown must be a positive number, got {slowdown!r}")
        self.slowdown = slowdown
        rows = table if table is not None else load_table()
        by_kv: dict[int, list[CalibrationRow]] = {}
        for row in rows:
            by_kv.setdefault(row.kv_len, []).append(row)
        self._kv_lens = sorted(by_kv)
        self._curves = {
            kv: (
                [float(r.batch) for r in sorted(by_kv[kv], key=lambda r: r.batch)],
                [r.step_ms for r in sorted(by_kv[kv], key=lambda r: r.batch)],
            )
            for kv in self._kv_lens
        }

    def raw_step_ms(self, batch: int, kv_len: float) -> float:
        """Unscaled H100 step time: linear in batch per measured kv_len, then linear in kv_len.

        Contexts shorter than the shortest measured one cost the same as it (the weights dominate);
        longer ones extrapolate linearly (attention reads grow linearly with context).
        """
        if batch <= 0:
            return 0.0
        per_kv = [_interp(float(batch), *self._curves[kv]) for kv in self._kv_lens]
        kv = max(float(kv_len), float(self._kv_lens[0]))
        return max(_interp(kv, [float(k) for k in self._kv_lens], per_kv), 0.0)

    def step_seconds(self, batch: int, kv_len: float) -> float:
        return self.raw_step_ms(batch, kv_len) * self.slowdown / 1000.0

    def prefill_seconds(self, prompt_tokens: int) -> float:
        if prompt_tokens <= 0:
            return 0.0
        return (PREFILL_FIXED_MS + PREFILL_MS_PER_TOKEN * prompt_tokens) * self.slowdown / 1000.0

    def predicted_audio_seconds_per_second(self, batch: int, kv_len: float) -> float:
        """Audio seconds produced per wall second with ``batch`` streams decoding at ``kv_len``."""
        step = self.step_seconds(batch, kv_len)
        return batch / step / FRAMES_PER_SECOND if step > 0 else 0.0


def slowdown_for(profile: str, slowdown: float | None) -> float:
    """The effective slowdown: an explicit value wins, else the profile's default."""
    if slowdown is not None:
        return slowdown
    if profile == "raw":
        return 1.0
    if profile == "calibrated":
        return DEFAULT_SLOWDOWN
    raise ValueError(f"unknown timing profile {profile!r}; choose from {', '.join(PROFILES)}")
