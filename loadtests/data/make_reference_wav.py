"""Synthesize the bundled voice-cloning reference (reference_voice.wav), deterministically.

A speech-like signal made with numpy: a glottal-pulse-like harmonic source with a gliding pitch,
shaped by three vowel formants that change per syllable, with syllable envelopes and short pauses.
24 kHz mono int16, about 4 s. It is not intelligible speech; it is a valid, non-silent reference
of the right format that the project owns and can regenerate. The transcript beside it is the text
the reference turn carries in the request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from higgs_load.audio import SAMPLE_RATE, make_wav

# (F1, F2, F3) in Hz for a few vowels: a, e, i, o, u
VOWELS = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240)]
TRANSCRIPT = "Hello, this is the reference voice for the Higgs Audio load test."


def _resonate(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """Two-pole resonator (one formant)."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2 * np.pi * freq / SAMPLE_RATE
    a1, a2 = -2 * r * np.cos(theta), r * r
    y = np.zeros_like(x)
    y1 = y2 = 0.0
    for i, v in enumerate(x):  # short signal: a plain loop is fine and dependency-free
        y0 = v - a1 * y1 - a2 * y2
        y[i] = y0
        y2, y1 = y1, y0
    return y


def synthesize(seconds: float = 4.0, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * SAMPLE_RATE))
    pos = int(0.1 * SAMPLE_RATE)
    while pos < out.size - SAMPLE_RATE // 5:
        dur = int(rng.uniform(0.14, 0.28) * SAMPLE_RATE)
        t = np.arange(dur) / SAMPLE_RATE
        f0 = rng.uniform(110, 150) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 4) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        source = sum(np.sin(k * phase) / k for k in range(1, 30))  # sawtooth-like voiced source
        f1, f2, f3 = VOWELS[rng.integers(len(VOWELS))]
        voiced = (
            _resonate(source, f1, 80) + 0.6 * _resonate(source, f2, 100) + 0.3 * _resonate(source, f3, 120)
        )
        envelope = np.sin(np.pi * np.arange(dur) / dur) ** 0.6
        seg = voiced * envelope
        end = min(out.size, pos + dur)
        out[pos:end] += seg[: end - pos]
        pos = end + int(rng.uniform(0.02, 0.12) * SAMPLE_RATE)
    out /= np.max(np.abs(out))
    return np.round(out * 0.7 * 32767).astype("<i2")


def main() -> None:
    here = Path(__file__).resolve().parent
    pcm = synthesize().tobytes()
    (here / "reference_voice.wav").write_bytes(make_wav(pcm))
    (here / "reference_voice.txt").write_text(TRANSCRIPT + "\n", encoding="utf-8")
    print(f"wrote {here / 'reference_voice.wav'} ({len(pcm) // 2 / SAMPLE_RATE:.2f} s)")


if __name__ == "__main__":
    main()
