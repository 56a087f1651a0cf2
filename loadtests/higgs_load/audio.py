"""Audio payload parsing and validation (pure numpy; no Locust import).

Higgs Audio emits 24 kHz mono little-endian int16 PCM. Streaming chat sends it raw (base64 in each
SSE delta); non-streaming chat and `response_format=wav` send a RIFF/WAVE file. Every payload is
checked here: a payload that fails is a failed request with a specific error class.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes, int16
CHANNELS = 1
# Peak below this (int16 units, about -60 dBFS) counts as silence: real speech and the simulator's
# synthetic voice are far louder; a muted or zero-filled stream is not.
SILENCE_PEAK = 32
# Size that streaming WAV writers put in RIFF/data headers when the length is unknown.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)


class AudioError(Exception):
    """A payload that is not valid audio. `error_class` is the load-test failure class."""

    def __init__(self, error_class: str, detail: str) -> None:
        super().__init__(f"{error_class}: {detail}")
        self.error_class = error_class
        self.detail = detail


@dataclass(frozen=True)
class WavInfo:
    sample_rate: int
    channels: int
    bits_per_sample: int
    audio_format: int
    declared_data_bytes: int | None  # None when the header says "unknown length" (streamed WAV)
    data_offset: int


def parse_wav_header(blob: bytes) -> WavInfo:
    """Parse a RIFF/WAVE header; raise AudioError(invalid_audio) with the reason when malformed."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AudioError("invalid_audio", f"not a RIFF/WAVE file (starts with {blob[:12]!r})")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(blob):
                raise AudioError("invalid_audio", f"WAV fmt chunk too short ({size} bytes)")
            audio_format, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", blob, body)
            fmt = (audio_format, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError("invalid_audio", "WAV data chunk before fmt chunk")
            declared = None if size in _UNKNOWN_SIZES else size
            return WavInfo(fmt[2], fmt[1], fmt[3], fmt[0], declared, body)
        pos = body + size + (size & 1)
    raise AudioError("invalid_audio", "WAV has no data chunk")


def check_format(sample_rate: int, channels: int, bits: int, audio_format: int = 1) -> None:
    """Raise AudioError unless the stream is 24 kHz mono 16-bit integer PCM."""
    # 0xFFFE (WAVE_FORMAT_EXTENSIBLE) may also carry PCM; accept it with the same geometry.
    if audio_format not in (1, 0xFFFE):
        raise AudioError("invalid_audio", f"WAV format tag {audio_format} is not integer PCM")
    if sample_rate != SAMPLE_RATE:
        raise AudioError("invalid_audio", f"sample rate {sample_rate} Hz, expected {SAMPLE_RATE}")
    if channels != CHANNELS:
        raise AudioError("invalid_audio", f"{channels} channels, expected mono")
    if bits != 8 * SAMPLE_WIDTH:
        raise AudioError("invalid_audio", f"{bits}-bit samples, expected 16-bit")


def wav_pcm(blob: bytes, *, truncated_class: str = "truncated_stream") -> bytes:
    """Validate a complete WAV file and return its PCM bytes.

    A data chunk shorter than its header declares means the transfer was cut: `truncated_class`.
    """
    info = parse_wav_header(blob)
    check_format(info.sample_rate, info.channels, info.bits_per_sample, info.audio_format)
    pcm = blob[info.data_offset :]
    if info.declared_data_bytes is not None:
        if len(pcm) < info.declared_data_bytes:
            raise AudioError(
                truncated_class,
                f"WAV data has {len(pcm)} bytes, header declares {info.declared_data_bytes}",
            )
        pcm = pcm[: info.declared_data_bytes]
    return pcm


def pcm_samples(pcm: bytes) -> np.ndarray:
    """Decode little-endian int16 PCM; odd byte counts are malformed."""
    if len(pcm) % SAMPLE_WIDTH:
        raise AudioError("invalid_audio", f"PCM length {len(pcm)} is not a whole number of int16 samples")
    return np.frombuffer(pcm, dtype="<i2")


def check_pcm(pcm: bytes) -> float:
    """Validate PCM content (non-empty, not silent); return its duration in seconds."""
    samples = pcm_samples(pcm)
    if samples.size == 0:
        raise AudioError("invalid_audio", "no audio samples")
    peak = int(np.max(np.abs(samples.astype(np.int32))))
    if peak <= SILENCE_PEAK:
        raise AudioError("silent_audio", f"peak amplitude {peak} <= {SILENCE_PEAK} (silence)")
    return samples.size / SAMPLE_RATE


def check_chunks_consistent(chunk_samples: list[int], total_pcm_bytes: int) -> None:
    """The sum of per-chunk sample counts must equal the assembled payload length."""
    total = sum(chunk_samples)
    if total * SAMPLE_WIDTH != total_pcm_bytes:
        raise AudioError(
            "invalid_audio",
            f"chunks add up to {total} samples but payload holds {total_pcm_bytes // SAMPLE_WIDTH}",
        )


def make_wav(pcm: bytes, sample_rate: int = SAMPLE_RATE, channels: int = 1, bits: int = 16) -> bytes:
    """Build a canonical 44-byte-header WAV (used for the voice-cloning reference and tests)."""
    block_align = channels * bits // 8
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        bits,
        b"data",
        len(pcm),
    )
    return header + pcm
