"""Synthetic speech-like audio: 24 kHz mono int16, sliced in 960-sample frames from a precomputed loop.

Each timbre is computed once (numpy, 8 s of audio, ~50 ms): a glottal-like harmonic source with slow
intonation, shaped by vowel formants that change every syllable, under a syllable-rate amplitude
envelope with short pauses between words, plus a faint noise floor so no frame is digitally silent.
A request's audio is a window of that loop starting at an offset drawn from its seed, so it is
deterministic for a given seed and costs one ``np.take`` per chunk.

Encoded files are written as the real server writes them: WAV (a 44-byte header; byte for byte what
soundfile writes for int16), and MP3/FLAC through soundfile (libsndfile), whose ``Unknown format``
error for ``pcm16`` and ``opus`` is the one the real server's chat endpoint returns.
"""

from __future__ import annotations

import asyncio
import io
import struct
import wave
import zlib

import numpy as np
import soundfile as sf

SAMPLE_RATE = 24_000
FRAMES_PER_SECOND = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND  # 960
SAMPLE_WIDTH = 2
LOOP_SECONDS = 8
TIMBRES = 64

# (F1, F2, F3) in Hz of a few vowels: enough variety for a speech-like spectrum.
_VOWELS = np.array(
    [
        (730, 1090, 2440),
        (270, 2290, 3010),
        (300, 870, 2240),
        (530, 1840, 2480),
        (570, 840, 2410),
        (660, 1720, 2410),
    ],
    dtype=np.float64,
)


def timbre_of(voice_key: str, seed: int) -> int:
    """A stable timbre index for a voice name (or a reference-audio digest) and a seed."""
    return (zlib.crc32(voice_key.encode()) ^ (seed * 2654435761)) % TIMBRES


_LOOPS: dict[int, np.ndarray] = {}  # at most TIMBRES entries of 8 s each (~24 MiB in all)
_PENDING: dict[int, asyncio.Future[np.ndarray]] = {}


async def ensure_voice_loop(timbre: int) -> None:
    """Compute a timbre's loop off the event loop (once) so a new voice never stalls other streams."""
    if timbre in _LOOPS:
        return
    pending = _PENDING.get(timbre)
    if pending is None:
        pending = asyncio.ensure_future(asyncio.to_thread(voice_loop, timbre))
        _PENDING[timbre] = pending
        pending.add_done_callback(lambda _f: _PENDING.pop(timbre, None))
    await asyncio.shield(pending)


def voice_loop(timbre: int) -> np.ndarray:
    """The precomputed int16 loop of one timbre (cached)."""
    cached = _LOOPS.get(timbre)
    if cached is None:
        cached = _LOOPS[timbre] = _synthesize(timbre)
    return cached


def _synthesize(timbre: int) -> np.ndarray:
    rng = np.random.default_rng(timbre + 1)
    n = LOOP_SECONDS * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    f0_base = 95.0 + 130.0 * (timbre % 8) / 7.0  # low male to high female pitch
    syllable_s = rng.uniform(0.17, 0.24)
    n_syll = int(np.ceil(LOOP_SECONDS / syllable_s))
    syll_idx = np.minimum((t / syllable_s).astype(np.int64), n_syll - 1)
    # Intonation: slow drift plus a per-syllable step.
    syll_pitch = rng.uniform(0.9, 1.12, n_syll)
    f0 = f0_base * syll_pitch[syll_idx] * (1.0 + 0.03 * np.sin(2 * np.pi * 0.4 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = _VOWELS[rng.integers(0, len(_VOWELS), n_syll)]  # (n_syll, 3)
    f0_syll = f0_base * syll_pitch  # harmonic gains per syllable, not per sample: cheap
    signal = np.zeros(n)
    for k in range(1, 25):
        freq = k * f0_syll
        gain = sum(
            (1.0 / (j + 1)) / (1.0 + ((freq - formants[:, j]) / bw) ** 2)
            for j, bw in enumerate((90.0, 110.0, 170.0))
        )
        gain = gain * (freq < 5000) / k**0.5
        signal += gain[syll_idx] * np.sin(k * phase)
    # Syllable envelope: rise and fall inside each syllable; every ~4th syllable is a short pause.
    within = (t % syllable_s) / syllable_s
    envelope = np.sin(np.pi * within) ** 0.6
    pauses = rng.random(n_syll) < 0.22
    pauses[0] = pauses[-1] = True  # quiet at both ends: the loop wraps without a click
    envelope = np.where(pauses[syll_idx], 0.04, envelope)
    signal = signal * envelope
    signal = 0.6 * signal / np.max(np.abs(signal))
    signal += rng.normal(0.0, 0.004, n)  # breath/noise floor: never digitally silent
    return np.clip(signal * 32767, -32768, 32767).astype("<i2")


def start_offset(seed_material: str) -> int:
    """Where in the loop a request's audio starts (deterministic per request seed/text)."""
    return zlib.crc32(seed_material.encode()) % (LOOP_SECONDS * SAMPLE_RATE)


def pcm_frames(timbre: int, offset: int, first_frame: int, end_frame: int, silent: bool = False) -> bytes:
    """Little-endian int16 PCM for frames [first_frame, end_frame) of a request."""
    count = (end_frame - first_frame) * SAMPLES_PER_FRAME
    if count <= 0:
        return b""
    if silent:
        return bytes(count * SAMPLE_WIDTH)
    loop = voice_loop(timbre)
    start = offset + first_frame * SAMPLES_PER_FRAME
    idx = np.arange(start, start + count) % loop.shape[0]
    return loop.take(idx).tobytes()


def wav_header(num_samples: int) -> bytes:
    """44-byte RIFF/WAVE header for mono 16-bit 24 kHz PCM with ``num_samples`` samples."""
    data_bytes = num_samples * SAMPLE_WIDTH
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * SAMPLE_WIDTH, SAMPLE_WIDTH, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def wav_bytes(pcm: bytes) -> bytes:
    return wav_header(len(pcm) // SAMPLE_WIDTH) + pcm


def encoded_file(pcm: bytes, fmt: str) -> bytes:
    """One complete file of ``pcm`` in ``fmt``; raises ``ValueError("Unknown format: 'x'")`` for a
    format soundfile cannot write (``pcm16``, ``opus``), as ``sf.write`` does in the real server."""
    if fmt == "wav":
        return wav_bytes(pcm)  # identical to soundfile's WAV, without the detour
    buffer = io.BytesIO()
    sf.write(buffer, np.frombuffer(pcm, dtype="<i2"), SAMPLE_RATE, format=fmt)
    return buffer.getvalue()


def speech_chunk(pcm: bytes, fmt: str) -> bytes:
    """One chunk of a ``/v1/audio/speech`` body: raw PCM, or a complete file of its own (the real
    server exports every chunk separately, serving_audio.py lines 56-78)."""
    return pcm if fmt == "pcm" else encoded_file(pcm, fmt)


class InvalidAudio(ValueError):
    """Reference audio that is not a readable WAV."""


def reference_seconds(data: bytes) -> float:
    """Duration of a reference WAV; raises :class:`InvalidAudio` if it is not a non-empty WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
    except (wave.Error, EOFError, struct.error) as exc:
        raise InvalidAudio(f"not a WAV file ({exc})") from None
    if rate <= 0 or frames <= 0:
        raise InvalidAudio("the WAV file holds no audio frames")
    return frames / rate
