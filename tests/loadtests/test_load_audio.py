"""Audio payload validation: format, rate, channels, silence, truncation."""

import struct

import numpy as np
import pytest

from higgs_load.audio import (
    AudioError,
    check_chunks_consistent,
    check_pcm,
    make_wav,
    parse_wav_header,
    wav_pcm,
)


def tone(seconds: float = 0.5, rate: int = 24_000, amp: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()


def test_good_wav_round_trip():
    pcm = tone(0.5)
    assert wav_pcm(make_wav(pcm)) == pcm
    assert check_pcm(pcm) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 16_000}, "sample rate 16000"),
        ({"channels": 2}, "2 channels"),
        ({"bits": 8}, "8-bit"),
    ],
)
def test_wrong_geometry_is_invalid_audio(kwargs, message):
    with pytest.raises(AudioError) as err:
        wav_pcm(make_wav(tone(0.1), **kwargs))
    assert err.value.error_class == "invalid_audio"
    assert message in err.value.detail


def test_float_wav_is_rejected():
    blob = bytearray(make_wav(tone(0.1)))
    struct.pack_into("<H", blob, 20, 3)  # IEEE float format tag
    with pytest.raises(AudioError, match="format tag 3"):
        wav_pcm(bytes(blob))


def test_not_a_wav():
    with pytest.raises(AudioError, match="not a RIFF/WAVE"):
        parse_wav_header(b"ID3\x03" + b"\0" * 40)


def test_short_data_is_truncated_and_streamed_size_accepted():
    pcm = tone(0.2)
    blob = make_wav(pcm)
    with pytest.raises(AudioError) as err:
        wav_pcm(blob[:-100])
    assert err.value.error_class == "truncated_stream"
    # a streaming writer's 0xFFFFFFFF data size means "until the end"
    streamed = bytearray(blob)
    struct.pack_into("<I", streamed, 40, 0xFFFFFFFF)
    assert wav_pcm(bytes(streamed)) == pcm


def test_wav_with_extra_chunk_before_data():
    pcm = tone(0.1)
    blob = make_wav(pcm)
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\0"  # odd size gets a pad byte
    blob = blob[:36] + extra + blob[36:]
    assert wav_pcm(blob) == pcm


def test_silence_empty_and_odd_lengths():
    with pytest.raises(AudioError) as err:
        check_pcm(np.zeros(2400, dtype="<i2").tobytes())
    assert err.value.error_class == "silent_audio"
    with pytest.raises(AudioError, match="no audio samples"):
        check_pcm(b"")
    with pytest.raises(AudioError, match="whole number"):
        check_pcm(b"\x01\x02\x03")
    # quiet but real audio (peak 200) is not silence
    assert check_pcm(tone(0.1, amp=200)) == pytest.approx(0.1)


def test_chunk_sum_must_match_payload():
    check_chunks_consistent([100, 200], 600)
    with pytest.raises(AudioError, match="chunks add up to 300"):
        check_chunks_consistent([100, 200], 602)
