"""`--sim-fault KIND[,KIND...]` (with `--sim-fault-every N`): wrong audio on every Nth generation
request (the Nth, 2Nth, ...), the kinds given taking turns.

The load test's correctness checks (higgs_load.correctness) are tested against these:

| kind | the request's response ... |
| --- | --- |
| `runaway` | carries 2.5 times the audio its text takes (inside `--max-audio-factor`'s default limit, so it is the load test's length band that catches it) |
| `short` | carries a quarter of the audio its text takes, and ends normally |
| `silence` | carries 2 s of digital silence a third of the way in, its speech on both sides |
| `clip` | carries 0.4 s clipped at full scale (the speech amplified 4 times) a third of the way in |
| `truncate` | is cut (the connection closed) once half its audio was sent: no `[DONE]`, no end of body |

Pure (no server): the spec, the PCM source and the cut point of a faulted request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from higgs_sim.config import CONTENT_FAULTS  # noqa: F401 (the kinds, with the flag)
from higgs_sim.engine import tokens_for_frames
from higgs_sim.protocol import GenerationSpec

RUNAWAY_FACTOR = 2.5
SHORT_FACTOR = 0.25
SILENCE_FRAMES = 50  # 2 s at 25 frames per second
CLIP_FRAMES = 10  # 0.4 s
CLIP_GAIN = 4.0

PcmSource = Callable[[int, int], bytes]


class FaultPicker:
    """Which generation requests get which fault: the Nth, 2Nth, ... (N = `--sim-fault-every`) get
    the kinds in turn."""

    def __init__(self, kinds: tuple[str, ...], every: int = 1) -> None:
        self.kinds = kinds
        self.every = max(1, every)
        self.count = 0

    def next(self) -> str | None:
        if not self.kinds:
            return None
        self.count += 1
        if self.count % self.every:
            return None
        return self.kinds[(self.count // self.every - 1) % len(self.kinds)]


def _with_frames(spec: GenerationSpec, frames: int) -> GenerationSpec:
    return replace(spec, frames=frames, tokens=tokens_for_frames(frames), finish_reason="stop")


def faulted_spec(spec: GenerationSpec, fault: str | None) -> GenerationSpec:
    """The generation a faulted request makes (its length)."""
    if fault == "runaway":
        return _with_frames(spec, int(spec.frames * RUNAWAY_FACTOR))
    if fault == "short":
        return _with_frames(spec, max(1, int(spec.frames * SHORT_FACTOR)))
    if fault == "silence":
        return _with_frames(spec, spec.frames + SILENCE_FRAMES)
    return spec


def _window(fault: str, frames: int) -> tuple[int, int]:
    start = frames // 3 if fault == "clip" else max(1, (frames - SILENCE_FRAMES) // 3)
    return start, start + (CLIP_FRAMES if fault == "clip" else SILENCE_FRAMES)


def faulted_pcm(pcm: PcmSource, fault: str | None, frames: int, samples_per_frame: int) -> PcmSource:
    """The request's audio with the fault's stretch (silence, clipping) written over it."""
    if fault not in ("silence", "clip"):
        return pcm
    lo, hi = _window(fault, frames)

    def source(start: int, end: int) -> bytes:
        data = pcm(start, end)
        a, b = max(start, lo), min(end, hi)
        if a >= b:
            return data
        samples = np.frombuffer(data, dtype="<i2").copy()
        i, j = (a - start) * samples_per_frame, (b - start) * samples_per_frame
        if fault == "silence":
            samples[i:j] = 0
        else:
            loud = samples[i:j].astype(np.float64) * CLIP_GAIN
            samples[i:j] = np.clip(loud, -32768, 32767).astype("<i2")
        return samples.tobytes()

    return source


def truncate_at(fault: str | None, frames: int) -> int | None:
    """Frames after which a faulted response is cut (None: not cut)."""
    return max(1, frames // 2) if fault == "truncate" else None
