"""vLLM-Omni (docs/server-contract-omni.md) in the load test, without Locust: the request bodies (OR1-OR5),
the kinds each server serves, which server it is (GET /v1/audio/voices, /health), and the readers of
its responses (OP1-OP3, OX4) fed with bodies shaped exactly as the contract says."""

from __future__ import annotations

import http.server
import random
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from higgs_load.audio import AudioError
from higgs_load.measure import (
    OmniMp3FileMeasurement,
    OmniSpeechSSEMeasurement,
    OmniWavFileMeasurement,
    PcmBodyMeasurement,
    measurement_for,
)
from higgs_load.payloads import (
    API_KINDS,
    Prompt,
    Settings,
    check_kinds_served,
    omni_speech_body,
    parse_mix,
    request_for,
)
from higgs_load.records import RequestRecord
from higgs_load.voices import (
    VoiceError,
    VoiceList,
    api_from_health,
    check_uploaded_voice,
    detect_api,
    parse_voice_list,
)
from tests.support import bodies as cb
from tests.support.locust import MODEL
from tests.support.ports import free_port

OMNI = Settings(MODEL, None, None, None, None, api="omni")
PROMPT = Prompt("The train to Berlin leaves from platform nine.", "short")

# --- request bodies (OR1-OR5) ---


def test_omni_speech_bodies_per_kind():
    """No voice (the model's own, OR5), no sampling fields (OR2); the kind picks stream and format."""
    assert omni_speech_body(PROMPT, OMNI, "speech_sse") == {
        "model": MODEL,
        "input": PROMPT.text,
        "response_format": "pcm",
        "stream": True,
    }
    assert omni_speech_body(PROMPT, OMNI, "speech_pcm") == {
        "model": MODEL,
        "input": PROMPT.text,
        "response_format": "pcm",
        "stream": True,
        "stream_format": "audio",
    }
    for kind, fmt in (("speech_wav", "wav"), ("speech_mp3", "mp3")):
        body = omni_speech_body(PROMPT, OMNI, kind)
        assert body == {"model": MODEL, "input": PROMPT.text, "response_format": fmt}  # not streamed (OP1)
    with pytest.raises(ValueError, match="not a speech kind"):
        omni_speech_body(PROMPT, OMNI, "stream")


def test_max_tokens_goes_as_max_new_tokens_seed_passes_temperature_does_not():
    settings = Settings(MODEL, None, max_tokens=300, temperature=0.7, seed=7, api="omni")
    prompt = Prompt(PROMPT.text, "short", voice="belinda", max_tokens=120, temperature=0.3, seed=None)
    path, body = request_for("speech_sse", prompt, settings, None, random.Random(1))
    assert path == "/v1/audio/speech"
    assert body["max_new_tokens"] == 120 and body["seed"] == 7  # the prompt's cap wins, as for Boson
    forbidden = {"max_tokens", "temperature", "top_p", "top_k", "stop", "voice"}
    assert not forbidden & set(body), body  # the prompt's voice names a Boson preset: not sent
    assert request_for("speech_wav", PROMPT, settings, None)[1]["max_new_tokens"] == 300


def test_a_voice_only_when_given():
    """--voice (an uploaded voice, checked at start) goes in every speech request; nothing is drawn."""
    settings = Settings(MODEL, "my_voice", None, None, None, voices=("my_voice", "other"), api="omni")
    for kind in API_KINDS["omni"]:
        assert request_for(kind, PROMPT, settings, None)[1]["voice"] == "my_voice"
    listed = Settings(MODEL, None, None, None, None, voices=("my_voice",), api="omni")
    assert "voice" not in request_for("speech_pcm", PROMPT, listed, None, random.Random(0))[1]


def test_boson_bodies_are_unchanged():
    boson = Settings(MODEL, "belinda", 300, 0.7, 7)
    assert request_for("speech_pcm", PROMPT, boson, None)[1] == {
        "model": MODEL,
        "input": PROMPT.text,
        "voice": "belinda",
        "response_format": "pcm",
        "max_tokens": 300,
        "temperature": 0.7,
        "seed": 7,
    }


# --- kinds each server serves ---


def test_chat_kinds_are_refused_under_omni_naming_the_kinds_that_work():
    check_kinds_served("omni", ["speech_sse", "speech_pcm", "speech_wav", "speech_mp3"])
    with pytest.raises(ValueError) as exc:
        check_kinds_served(
            "omni", ["stream", "speech_pcm", "clone"], "GET /v1/audio/voices returned an object"
        )
    message = str(exc.value)
    assert message.startswith("--mix kinds stream, clone cannot run against vLLM-Omni (detected: GET")
    assert "no chat completions" in message and "D9" in message
    assert message.endswith("the kinds that work are speech_sse, speech_pcm, speech_wav, speech_mp3")
    with pytest.raises(
        ValueError, match=r"kind speech_sse cannot run against Boson's vLLM fork \(--server-api"
    ):
        check_kinds_served("boson", ["speech_sse"])
    with pytest.raises(ValueError, match="no chat completions"):
        request_for("chat", PROMPT, OMNI, None)


def test_mix_knows_speech_sse():
    assert parse_mix("sse=2,speech_pcm=1") == {"speech_sse": 2, "speech_pcm": 1}


# --- which server: GET /v1/audio/voices, else GET /health ---


def test_voice_list_shapes_name_the_server():
    assert parse_voice_list(b'["belinda","en_man"]') == VoiceList("boson", ["belinda", "en_man"])
    omni = b'{"voices":["anna"],"uploaded_voices":[{"name":"anna","consent":"c","created_at":1}]}'
    assert parse_voice_list(omni) == VoiceList("omni", ["anna"])
    assert parse_voice_list(b'{"voices":[],"uploaded_voices":[]}') == VoiceList("omni", [])
    assert parse_voice_list(b'{"uploaded_voices":[{"name":"anna"}]}') == VoiceList("omni", ["anna"])
    for bad in (b'{"object":"list","data":[]}', b'{"voices":[1]}', b"nope"):
        with pytest.raises(VoiceError, match="nor an object with `voices`"):
            parse_voice_list(bad)


def test_health_bodies_name_the_server():
    assert api_from_health(b"") == "boson"  # E1: 200 with an empty body
    assert api_from_health(b'{"status":"healthy"}') == "omni"  # OE4
    assert api_from_health(b"<html>") is None


def test_an_uploaded_voice_is_checked_against_the_list():
    check_uploaded_voice(["anna"], "anna")
    with pytest.raises(VoiceError, match=r"--voice 'belinda' is not an uploaded voice .* lists: none\)"):
        check_uploaded_voice([], "belinda")


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.answers.get(self.path, (404, b'{"detail":"Not Found"}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_detect_from_the_voice_list_then_from_health(server):
    _Handler.answers = {"/v1/audio/voices": (200, b'{"voices":[],"uploaded_voices":[]}')}
    api, listing, how = detect_api(server)
    assert (api, listing, how) == (
        "omni",
        VoiceList("omni", []),
        "GET /v1/audio/voices returned an object with `voices`",
    )
    _Handler.answers = {"/v1/audio/voices": (200, b'["belinda"]')}
    assert detect_api(server)[:2] == ("boson", VoiceList("boson", ["belinda"]))
    # The list cannot tell (an error status, say a wrong key): /health's body does.
    _Handler.answers = {"/v1/audio/voices": (401, b'{"error":"Unauthorized"}'), "/health": (200, b"")}
    assert detect_api(server) == ("boson", None, "GET /health returned an empty body")
    _Handler.answers["/health"] = (200, b'{"status":"healthy"}')
    assert detect_api(server)[0] == "omni"
    _Handler.answers["/health"] = (200, b"ok")
    with pytest.raises(VoiceError, match=r"cannot tell which server .*HTTP 401.*name it with --server-api"):
        detect_api(server)
    with pytest.raises(VoiceError, match="cannot tell which server"):
        detect_api(f"http://127.0.0.1:{free_port()}", timeout=2)


# --- readers of vLLM-Omni's responses ---


def run(kind: str, pieces: list[tuple[float, bytes]], t0: float = 100.0) -> RequestRecord:
    """pieces: [(arrival time, bytes)]; the finished record of an omni `kind` response."""
    m = measurement_for(kind, RequestRecord(kind=kind, t_start=0.0), t0, None, "omni")
    try:
        for now, data in pieces:
            m.feed(data, now)
    except AudioError as exc:  # as HiggsUser.measure records it
        return m.fail(exc.error_class, exc.detail, now)
    return m.finish(pieces[-1][0] if pieces else t0)


def test_omni_readers_per_kind():
    rec = RequestRecord(kind="x", t_start=0.0)
    assert isinstance(measurement_for("speech_sse", rec, 0.0, None, "omni"), OmniSpeechSSEMeasurement)
    assert isinstance(measurement_for("speech_pcm", rec, 0.0, None, "omni"), PcmBodyMeasurement)
    assert isinstance(measurement_for("speech_wav", rec, 0.0, None, "omni"), OmniWavFileMeasurement)
    assert isinstance(measurement_for("speech_mp3", rec, 0.0, None, "omni"), OmniMp3FileMeasurement)
    with pytest.raises(ValueError, match="unknown request kind 'stream' for --server-api omni"):
        measurement_for("stream", rec, 0.0, None, "omni")
    with pytest.raises(ValueError, match="unknown request kind 'speech_sse' for --server-api boson"):
        measurement_for("speech_sse", rec, 0.0)


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
def test_sse_deltas_read_to_done_at_any_split(size):
    """OP2: TTFA is the arrival of the first delta's audio, whatever the byte boundaries."""
    a, b = cb.tone(0.68), cb.tone(1.0, freq=300)
    body = cb.omni_delta(a) + cb.omni_delta(b) + cb.omni_done()
    first_end = len(cb.omni_delta(a))
    pieces = [(100.0 + 0.001 * i, body[i : i + size]) for i in range(0, len(body), size)]
    rec = run("speech_sse", pieces)
    assert rec.ok, rec.error_detail
    assert rec.audio_s == pytest.approx(1.68) and rec.streamed
    assert [n for _, n in rec.chunks] == [len(a) // 2, len(b) // 2]
    # The piece that completed the first delta event is the first audio's arrival.
    completing = pieces[(first_end - 1) // size][0]
    assert rec.ttfa_s == pytest.approx(completing - 100.0)


def test_sse_as_the_emulation_sends_it_one_chunk_at_the_end():
    """OP4 (async_chunk false): one delta carrying the whole utterance, then done."""
    events = cb.omni_sse_events()
    rec = run("speech_sse", [(100.9, events[0]), (100.91, events[1])])
    assert rec.ok and rec.ttfa_s == pytest.approx(0.9) and rec.audio_s == pytest.approx(2.4)
    assert rec.underruns == 0


def test_sse_error_event_is_a_stream_error():
    """OX4: `speech.audio.error` after some audio: a failure of its own class, with the message."""
    rec = run(
        "speech_sse", [(100.2, cb.omni_delta(cb.tone(0.5))), (100.3, cb.omni_error("CUDA out of memory"))]
    )
    assert not rec.ok and rec.error == "stream_error"
    assert "CUDA out of memory" in rec.error_detail and "server_error" in rec.error_detail
    # A cut after the error is still the server's error.
    rec = run("speech_sse", [(100.2, cb.omni_error() + b"event: speech.audio.delta\ndata: {")])
    assert rec.error == "stream_error" and "Speech generation failed: boom" in rec.error_detail


def test_sse_without_done_is_truncated_and_bad_events_invalid():
    rec = run("speech_sse", [(100.2, cb.omni_delta(cb.tone(0.5)))])
    assert rec.error == "truncated_stream" and "speech.audio.done" in rec.error_detail
    rec = run("speech_sse", [(100.2, cb.omni_delta(cb.tone(0.5)) + b"event: speech.audio.delta\ndata: {")])
    assert rec.error == "truncated_stream" and "inside an event" in rec.error_detail
    bad = b'event: speech.audio.delta\ndata: {"type":"speech.audio.delta","audio":"%%%","response_format":"pcm"}\n\n'
    assert run("speech_sse", [(100.1, bad + cb.omni_done())]).error == "invalid_audio"
    assert run("speech_sse", [(100.1, b"data: [DONE]\n\n")]).error == "invalid_audio"  # no [DONE] in OP2
    wav_delta = cb.omni_delta(cb.tone(0.2), fmt="wav")
    assert run("speech_sse", [(100.1, wav_delta + cb.omni_done())]).error == "invalid_audio"
    silent = cb.omni_delta(bytes(48000)) + cb.omni_done()
    assert run("speech_sse", [(100.1, silent)]).error == "silent_audio"
    assert run("speech_sse", [(100.1, cb.omni_done())]).error == "invalid_audio"  # no audio at all


def test_raw_stream_is_pcm():
    """OP3: raw int16 chunks; a failure cuts the body (the runtime records `truncated_stream`)."""
    a = cb.tone(1.2)
    rec = run("speech_pcm", [(100.5, a[:1001]), (100.6, a[1001:])])
    assert rec.ok and rec.streamed and rec.ttfa_s == pytest.approx(0.5) and rec.audio_s == pytest.approx(1.2)
    m = measurement_for("speech_pcm", RequestRecord(kind="speech_pcm", t_start=0.0), 100.0, None, "omni")
    m.feed(a[:1000], 100.5)
    assert m.cut(100.7, "connection reset").error == "truncated_stream"


def test_wav_is_one_file_not_streamed():
    """OP1: the whole utterance in one file; two files in one body are not vLLM-Omni's."""
    pcm = cb.tone(2.0)
    wav = cb.omni_wav_file(pcm)
    rec = run("speech_wav", [(101.0, wav[:30]), (101.1, wav[30:])])
    assert rec.ok and not rec.streamed and rec.audio_s == pytest.approx(2.0)
    assert rec.ttfa_s == pytest.approx(1.1)  # the first audio byte came with the second read
    rec = run("speech_wav", [(101.0, wav + wav)])
    assert rec.error == "invalid_audio" and "2 WAV files in the body, expected one" in rec.error_detail
    assert run("speech_wav", [(101.0, wav[:-10])]).error == "truncated_stream"


def test_mp3_is_one_file_not_streamed():
    mp3 = cb.mp3_file(cb.tone(1.5))
    rec = run("speech_mp3", [(101.0, mp3)])
    assert rec.ok and not rec.streamed and rec.audio_s > 1.4
    rec = run("speech_mp3", [(101.0, mp3 + mp3)])
    assert rec.error == "invalid_audio" and "2 MP3 files" in rec.error_detail
