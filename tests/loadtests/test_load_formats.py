"""Speech body formats as the server sends them: joined WAV files, joined MP3 files, appended errors."""

from __future__ import annotations

import pytest

from higgs_load.audio import AudioError
from higgs_load.formats import JoinedWavParser, decode_mp3, error_message, read_wav_header, split_mp3
from tests.support.bodies import chunks, error_json, mp3_file, speech_body, wav_file


def parse_in_pieces(body: bytes, size: int) -> tuple[bytes, JoinedWavParser]:
    parser = JoinedWavParser()
    pcm = b"".join(parser.feed(body[i : i + size]) for i in range(0, len(body), size))
    parser.close()
    return pcm, parser


@pytest.mark.parametrize("size", [1, 7, 44, 45, 4096, 10**7])
def test_joined_wav_files_give_every_chunk(size):
    pieces = chunks()
    pcm, parser = parse_in_pieces(speech_body("wav", pieces), size)
    assert pcm == b"".join(pieces)  # a reader stopping at the first header would get 0.68 s only
    assert parser.files == len(pieces)


def test_an_empty_wav_file_in_the_body_is_skipped():
    a, b = chunks()[:2]
    pcm, parser = parse_in_pieces(wav_file(a) + wav_file(b"") + wav_file(b), 100)
    assert pcm == a + b and parser.files == 3


@pytest.mark.parametrize("cut", [10, 30, 44 + 100])
def test_joined_wav_cut_inside_a_file_is_truncated(cut):
    body = speech_body("wav")
    second = len(wav_file(chunks()[0]))
    parser = JoinedWavParser()
    parser.feed(body[: second + cut])
    with pytest.raises(AudioError) as err:
        parser.close()
    assert err.value.error_class == "truncated_stream"


def test_appended_error_json_ends_the_audio():
    pieces = chunks()
    body = wav_file(pieces[0]) + error_json("CUDA error") + wav_file(pieces[-1])  # rest of audio after it
    parser = JoinedWavParser()
    pcm = b"".join(parser.feed(body[i : i + 50]) for i in range(0, len(body), 50))
    parser.close()
    assert pcm == pieces[0]
    assert parser.error_text is not None and error_message(bytes(parser.error_text)).startswith("CUDA error")


def test_wav_garbage_and_wrong_rate_are_invalid():
    with pytest.raises(AudioError, match="not a RIFF/WAVE"):
        JoinedWavParser().feed(b"ID3\x04" + bytes(40))
    parser = JoinedWavParser()
    parser.feed(wav_file(chunks()[0]))
    with pytest.raises(AudioError, match="not a RIFF/WAVE"):
        parser.feed(b"RIFX....")
    bad = bytearray(wav_file(chunks()[0]))
    bad[24:28] = (16000).to_bytes(4, "little")
    with pytest.raises(AudioError, match="sample rate 16000"):
        JoinedWavParser().feed(bytes(bad))
    with pytest.raises(AudioError, match="no WAV file"):
        JoinedWavParser().close()


def test_header_parse_waits_for_more_bytes():
    blob = wav_file(chunks()[0])
    assert all(read_wav_header(blob[:n]) is None for n in (0, 3, 12, 20, 43))
    info = read_wav_header(blob[:44])
    assert info is not None and info.data_offset == 44 and info.declared_data_bytes == len(blob) - 44


def test_joined_mp3_files_split_and_decode():
    pieces = chunks()
    body = speech_body("mp3", pieces)
    files, error = split_mp3(body)
    assert error is None and len(files) == len(pieces)
    for (start, end), pcm in zip(files, pieces, strict=True):
        decoded = decode_mp3(body[start:end])
        assert abs(len(decoded) - len(pcm)) <= 2 * 2304  # MP3 pads to whole frames
    assert files[0][0] == 0 and files[-1][1] == len(body)


def id3_tag(payload: bytes = b"TSSE\x00\x00\x00\x0e\x00\x00\x00Lavf61.7.100") -> bytes:
    size = len(payload)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x04\x00\x00" + syncsafe + payload


def test_mp3_files_with_id3_tags_as_ffmpeg_writes_them_split_at_each_tag():
    pieces = chunks()[:2]
    body = b"".join(id3_tag() + mp3_file(p) for p in pieces) + error_json()
    files, error = split_mp3(body)
    assert len(files) == 2 and error == error_json()
    assert files[1][0] == len(id3_tag() + mp3_file(pieces[0]))


def test_mp3_garbage_and_cut_frames():
    with pytest.raises(AudioError, match="no MP3 frame at byte 0"):
        split_mp3(b"RIFF" + bytes(100))
    blob = mp3_file(chunks()[1])
    with pytest.raises(AudioError) as err:
        split_mp3(blob[:-10])
    assert err.value.error_class == "truncated_stream"


def test_error_message_of_the_contract_shape_and_of_plain_text():
    assert error_message(error_json("boom")) == "boom / BadRequestError / 400"
    assert error_message(b"Internal Server Error") == "Internal Server Error"
