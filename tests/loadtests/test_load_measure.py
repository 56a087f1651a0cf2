"""Measurement of one response from its bytes and arrival times: TTFA, chunks, validation classes."""

import base64
import json

import numpy as np
import pytest

from higgs_load.audio import make_wav
from higgs_load.measure import measurement_for
from higgs_load.records import RequestRecord
from tests.support import bodies as cb

SR = 24_000


def pcm(seconds, amp=6000):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


def sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk_event(audio: bytes | None, finish=None):
    delta = (
        {"audio": {"data": base64.b64encode(audio).decode()}} if audio is not None else {"role": "assistant"}
    )
    return sse(
        {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def run(kind, pieces, t0=100.0):
    """pieces: [(arrival time, bytes)]; returns the finished record."""
    m = measurement_for(kind, RequestRecord(kind=kind, t_start=0.0), t0)
    for now, data in pieces:
        m.feed(data, now)
    return m.finish(pieces[-1][0] if pieces else t0)


def test_ttfa_is_first_audio_not_first_event():
    a, b = pcm(1.28), pcm(1.0)
    first = chunk_event(a)
    pieces = [
        (100.05, chunk_event(None)),  # role-only event: not audio
        (100.30, first[:100]),  # first audio event arrives split: its bytes complete at 100.40
        (100.40, first[100:]),
        (101.30, chunk_event(b)),
        (101.31, chunk_event(None, finish="stop") + b"data: [DONE]\n\n"),
    ]
    r = run("stream", pieces)
    assert r.ok, r.error_detail
    assert r.ttfa_s == pytest.approx(0.40)
    assert r.audio_s == pytest.approx(2.28)
    assert r.chunks == [(pytest.approx(0.40), len(a) // 2), (pytest.approx(1.30), len(b) // 2)]
    assert r.duration_s == pytest.approx(1.31)
    assert r.streamed and r.underruns == 0


def test_stream_underrun_recorded():
    # 1 s audio at 0.2, next 1 s chunk at 1.7: buffer empty from 1.2 -> 0.5 s stall
    r = run("stream", [(100.2, chunk_event(pcm(1.0))), (101.7, chunk_event(pcm(1.0)) + b"data: [DONE]\n\n")])
    assert r.ok and r.underruns == 1 and r.stall_s == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ([(100.1, chunk_event(pcm(0.5)))], "truncated_stream"),  # no [DONE]
        ([(100.1, chunk_event(pcm(0.5)) + b'data: {"choi')], "truncated_stream"),
        ([(100.1, chunk_event(np.zeros(4800, "<i2").tobytes()) + b"data: [DONE]\n\n")], "silent_audio"),
        ([(100.1, chunk_event(None) + b"data: [DONE]\n\n")], "invalid_audio"),  # no audio at all
    ],
)
def test_stream_failures(pieces, error):
    r = run("stream", pieces)
    assert not r.ok and r.error == error


def test_bad_base64_and_odd_chunk_raise_invalid_audio():
    from higgs_load.audio import AudioError

    bad = sse({"choices": [{"delta": {"audio": {"data": "@@notbase64"}}}]})
    m = measurement_for("stream", RequestRecord(kind="stream", t_start=0.0), 0.0)
    with pytest.raises(AudioError) as err:
        m.feed(bad, 0.1)
    assert err.value.error_class == "invalid_audio"
    m = measurement_for("stream", RequestRecord(kind="stream", t_start=0.0), 0.0)
    with pytest.raises(AudioError, match="not whole int16"):
        m.feed(chunk_event(b"\x01\x02\x03"), 0.1)


def test_wav_body_streamed_in_pieces():
    blob = make_wav(pcm(1.0))
    pieces = [(100.1, blob[:30]), (100.2, blob[30:1001]), (100.5, blob[1001:])]
    r = run("speech_wav", pieces)
    assert r.ok, r.error_detail
    assert r.ttfa_s == pytest.approx(0.2)  # first bytes after the 44-byte header
    assert r.audio_s == pytest.approx(1.0)


def test_wav_body_cut_short_is_truncated():
    blob = make_wav(pcm(1.0))
    r = run("speech_wav", [(100.1, blob[:-480])])
    assert r.error == "truncated_stream"


def test_wav_wrong_rate_fails_on_header():
    from higgs_load.audio import AudioError

    m = measurement_for("speech_wav", RequestRecord(kind="speech_wav", t_start=0.0), 0.0)
    with pytest.raises(AudioError, match="sample rate 22050"):
        m.feed(make_wav(pcm(0.1), sample_rate=22050), 0.1)


def test_pcm_body_with_odd_split():
    raw = pcm(0.5)
    r = run("speech_pcm", [(100.1, raw[:1001]), (100.3, raw[1001:])])
    assert r.ok and r.audio_s == pytest.approx(0.5)
    assert sum(c[1] for c in r.chunks) == len(raw) // 2
    r = run("speech_pcm", [(100.1, raw[:1001])])
    assert r.error == "invalid_audio"


def test_chat_json_ttfa_is_full_body():
    body = json.dumps(
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "audio": {"data": base64.b64encode(make_wav(pcm(0.7))).decode()},
                    }
                }
            ]
        }
    ).encode()
    r = run("chat", [(100.2, body[:50]), (100.9, body[50:])])
    assert r.ok and r.ttfa_s == pytest.approx(0.9) and not r.streamed
    assert r.audio_s == pytest.approx(0.7)
    r = run("chat", [(100.2, b'{"choices": [{"message": {"content": "text only"}}]}')])
    assert r.error == "invalid_audio"


def test_cut_connection_classes():
    m = measurement_for("stream", RequestRecord(kind="stream", t_start=0.0), 0.0)
    assert m.cut(1.0, "refused").error == "connection_error"
    m = measurement_for("stream", RequestRecord(kind="stream", t_start=0.0), 0.0)
    m.feed(chunk_event(pcm(0.2)), 0.5)
    assert m.cut(1.0, "reset").error == "truncated_stream"


# --- bodies shaped as docs/server-contract.md says the real server sends them -------------------------


def feed_events(kind, events, t=100.0, step=0.01):
    pieces = [(t + i * step, e) for i, e in enumerate(events)]
    return run(kind, pieces)


def test_per_token_sse_with_audio_after_finish_reason_is_read_to_done():
    pieces = cb.chunks()
    events = cb.sse_events(pieces, tokens_between=5, last_after_finish=True)
    r = feed_events("stream", events)
    assert r.ok, r.error_detail
    assert r.audio_s == pytest.approx(sum(len(p) for p in pieces) / 2 / SR)
    assert len(r.chunks) == len(pieces)  # the chunk after finish_reason counted too
    # Cut right after the finish_reason event: the last audio and [DONE] never came.
    finish_at = next(i for i, e in enumerate(events) if b'"finish_reason":"stop"' in e)
    r = feed_events("stream", events[: finish_at + 1])
    assert r.error == "truncated_stream"


def test_sse_events_split_at_every_byte_boundary():
    body = b"".join(cb.sse_events(cb.chunks()[:2], tokens_between=2))
    for size in (1, 5, 64, 1000):
        r = run("stream", [(100.0 + i / 1e4, body[i : i + size]) for i in range(0, len(body), size)])
        assert r.ok, (size, r.error_detail)


def test_sse_error_event_is_a_stream_error():
    r = feed_events("stream", cb.sse_error_events())
    assert not r.ok and r.error == "stream_error"
    assert "boom" in r.error_detail and r.audio_s > 0  # the audio before it is kept in the record
    # Cut after the error event (no [DONE]): still the server's error, not a truncation.
    r = feed_events("stream", cb.sse_error_events()[:-1])
    assert r.error == "stream_error"


def test_usage_event_with_empty_choices_is_fine():
    events = cb.sse_events(cb.chunks()[:1])
    usage = b'data: {"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9}}\n\n'
    r = feed_events("stream", [*events[:-1], usage, events[-1]])
    assert r.ok, r.error_detail


@pytest.mark.parametrize("size", [1, 3, 8, 100, 48000])
def test_speech_wav_body_of_joined_files(size):
    pieces = cb.chunks()
    body = cb.speech_body("wav", pieces)
    r = run("speech_wav", [(100.0 + i / 1e5, body[i : i + size]) for i in range(0, len(body), size)])
    assert r.ok, r.error_detail
    assert r.audio_s == pytest.approx(sum(cb.CADENCE_S), abs=1e-3)


def test_speech_wav_chunk_arrivals_give_ttfa_and_chunks():
    files = [cb.wav_file(p) for p in cb.chunks()]
    r = run("speech_wav", [(100.7, files[0]), (101.7, files[1]), (102.7, files[2] + files[3])])
    assert r.ok and r.ttfa_s == pytest.approx(0.7)
    assert [c[0] for c in r.chunks] == [pytest.approx(0.7), pytest.approx(1.7), pytest.approx(2.7)]


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
@pytest.mark.parametrize("split", [0, 1, 3, 7, 8, 20])
def test_speech_body_with_appended_error_json_is_a_stream_error(fmt, split):
    pieces = cb.chunks()[:2]
    body = cb.speech_body(fmt, pieces)
    tail = cb.error_json("engine died")
    whole = body + tail
    at = len(body) + split  # the read boundary falls inside the error text
    r = run(f"speech_{fmt}", [(100.1, whole[:at]), (100.2, whole[at:])])
    assert not r.ok and r.error == "stream_error", r.error_detail
    assert "engine died" in r.error_detail


def test_speech_mp3_body_of_joined_files():
    pieces = cb.chunks()
    files = [cb.mp3_file(p) for p in pieces]
    r = run("speech_mp3", [(100.7, files[0]), (101.7, files[1]), (102.7, files[2] + files[3])])
    assert r.ok, r.error_detail
    assert r.ttfa_s == pytest.approx(0.7) and len(r.chunks) == 4
    assert r.audio_s == pytest.approx(sum(cb.CADENCE_S), abs=0.5)
    r = run("speech_mp3", [(100.7, files[0] + cb.error_json())])
    assert r.error == "stream_error"


def test_implausibly_long_audio_fails_with_its_own_kind():
    from higgs_load.metrics import plausible_audio_limit_s

    text = "Good morning, your table is ready."  # 34 characters: ~2.3 s, limit max(5, 6.8) s
    limit = plausible_audio_limit_s(len(text))
    assert limit == pytest.approx(3 * 34 / 15)
    assert plausible_audio_limit_s(3) == 5.0 and plausible_audio_limit_s(3, factor=0) is None
    rec = RequestRecord(kind="speech_pcm", t_start=0.0, text_chars=len(text))
    m = measurement_for("speech_pcm", rec, 100.0, limit)
    m.feed(pcm(40.0), 100.5)  # K1: 40 s for a short sentence
    r = m.finish(101.0)
    assert not r.ok and r.error == "implausible_length"
    assert "40.0 s of audio for 34 characters" in r.error_detail and r.audio_s == pytest.approx(40.0)
    m = measurement_for("speech_pcm", RequestRecord(kind="speech_pcm", t_start=0.0), 100.0, limit)
    m.feed(pcm(3.0), 100.5)
    assert m.finish(101.0).ok
