"""Turn the bytes of one response, with their arrival times, into a validated RequestRecord.

Transport-agnostic (no Locust, no HTTP client): the caller feeds each read's bytes with the clock
reading taken right after the read returned, so TTFA is when the first audio byte arrived, not when
the response was parsed at the end. The bodies of Boson's fork are those of docs/server-contract.md:
SSE read to `data: [DONE]` (CH6-CH8), speech `pcm` as one stream and `wav`/`mp3` as complete files
joined (SP7), a server error inside a 200 body as `stream_error` (CH8, SP10). vLLM-Omni's
(docs/server-contract-omni.md): speech SSE `speech.audio.delta` events read to `speech.audio.done`,
a `speech.audio.error` event a `stream_error` (OP2, OX4); the raw stream as `pcm` (OP3, a failure
cuts it: `truncated_stream`); `wav`/`mp3` not streamed, exactly one file (OP1).
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left

from higgs_load.audio import SAMPLE_WIDTH, AudioError, check_chunks_consistent, check_pcm, wav_pcm
from higgs_load.correctness import check_content
from higgs_load.formats import (
    ERROR_MARKER,
    ERROR_TEXT_LIMIT,
    JoinedWavParser,
    decode_mp3,
    error_message,
    split_mp3,
)
from higgs_load.playback import min_prebuffer_s, simulate_underruns
from higgs_load.records import RequestRecord
from higgs_load.sse import SSEParser


class Measurement:
    """Base: collects (arrival, samples) chunks; subclasses decode their wire format.

    `max_audio_s` is the implausible-length limit for the request's text (None: not checked).
    """

    streamed = True
    prebuffer_s = 0.0  # the listener's pre-buffer the underruns are counted at (--prebuffer-ms)

    def __init__(self, record: RequestRecord, t0: float, max_audio_s: float | None = None) -> None:
        self.rec = record
        self.t0 = t0  # clock reading (same clock as feed's `now`) when the request was sent
        self.max_audio_s = max_audio_s
        self.pcm = bytearray()
        self.bytes = 0
        self.server_error: bytes | None = None  # the server's own error text inside the body

    def _audio(self, pcm: bytes, now: float) -> None:
        if not pcm:
            return
        if self.rec.ttfa_s is None:
            self.rec.ttfa_s = now - self.t0
        # A tuple of numbers: the garbage collector stops tracking it, so a long run holding hundreds of
        # thousands of chunks does not pause the event loop (and every TTFA stamp) on collections.
        self.rec.chunks.append((round(now - self.t0, 6), len(pcm) // SAMPLE_WIDTH))
        self.pcm += pcm

    def feed(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def _complete(self) -> None:
        """Check the finished payload; raise AudioError on a bad one."""
        raise NotImplementedError

    def finish(self, now: float) -> RequestRecord:
        """The body ended normally (EOF). Validate and fill in the record."""
        rec = self.rec
        rec.duration_s = now - self.t0
        rec.bytes_received = self.bytes
        rec.streamed = self.streamed
        try:
            self._complete()
            if self.server_error is not None:
                return self.fail("stream_error", "", now)
            check_chunks_consistent([c[1] for c in rec.chunks], len(self.pcm))
            rec.audio_s = check_pcm(bytes(self.pcm))
        except AudioError as exc:
            return self.fail(exc.error_class, exc.detail, now)
        if self.max_audio_s is not None and rec.audio_s > self.max_audio_s:
            detail = (
                f"{rec.audio_s:.1f} s of audio for {rec.text_chars} characters of text "
                f"(limit {self.max_audio_s:.1f} s; known fault K1)"
            )
            return self.fail("implausible_length", detail, now)
        wrong = check_content(bytes(self.pcm))
        if wrong is not None:
            return self.fail(*wrong, now)
        under = simulate_underruns(rec.chunks, prebuffer_s=self.prebuffer_s)
        rec.underruns, rec.stall_s = under.count, under.stall_s
        rec.min_prebuffer_s = min_prebuffer_s(rec.chunks) if self.streamed else None
        rec.ok = True
        return rec

    def fail(self, error: str, detail: str, now: float) -> RequestRecord:
        """Record a failure. Once the server has said in the body that it failed, that is the cause,
        whatever went wrong after it (a cut body, a timeout)."""
        rec = self.rec
        if self.server_error is not None:
            error, detail = "stream_error", f"server error in the body: {error_message(self.server_error)}"
        rec.ok = False
        rec.error = error
        rec.error_detail = detail[:300]
        rec.duration_s = now - self.t0
        rec.bytes_received = self.bytes
        rec.streamed = self.streamed
        rec.audio_s = len(self.pcm) / (SAMPLE_WIDTH * 24_000)
        return rec

    def cut(self, now: float, detail: str) -> RequestRecord:
        """The connection broke mid-body: truncated once audio (or any body) arrived."""
        if self.bytes:
            return self.fail("truncated_stream", detail, now)
        return self.fail("connection_error", detail, now)


class ChatStreamMeasurement(Measurement):
    """OpenAI-style SSE, one event per generated token (CH6): most carry `"audio": null`; those with
    audio carry base64 int16 PCM in `choices[0].delta.audio.data`. The last audio may come with or
    after `finish_reason` (CH7), so the stream is read to `data: [DONE]`; `data: {"error": ...}`
    (CH8) is a `stream_error`."""

    def __init__(self, record: RequestRecord, t0: float, max_audio_s: float | None = None) -> None:
        super().__init__(record, t0, max_audio_s)
        self.parser = SSEParser()
        self.done = False
        self.finish_reason: str | None = None

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        for event in self.parser.feed(data):
            if not self.done:  # nothing after [DONE] belongs to the response
                self._event(event, now)

    def _event(self, event: bytes, now: float) -> None:
        if event == b"[DONE]":
            self.done = True
            return
        if _NO_AUDIO in event and _NOT_FINISHED in event:
            return  # most per-token events (pydantic's compact JSON): nothing to parse
        try:
            obj = json.loads(event)
        except ValueError as exc:
            raise AudioError("invalid_audio", f"SSE event is not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise AudioError("invalid_audio", f"SSE event is not a JSON object: {event[:80]!r}")
        if "error" in obj:
            self.server_error = event[:ERROR_TEXT_LIMIT]
            return
        choices = obj.get("choices")
        if not choices:  # the usage event of stream_options.include_usage has none
            return
        try:
            choice = choices[0]
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            audio = (choice.get("delta") or {}).get("audio")
            b64 = audio.get("data") if audio else None
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise AudioError("invalid_audio", f"SSE event is not a chat.completion.chunk: {exc!r}") from exc
        if b64 and self.server_error is None:
            self._audio(_b64_pcm(b64), now)

    def _complete(self) -> None:
        if not self.done:
            raise AudioError("truncated_stream", "stream ended without `data: [DONE]`")
        if self.parser.pending:
            raise AudioError("truncated_stream", "stream ended inside an event")


_NO_AUDIO = b'"audio":null'
_NOT_FINISHED = b'"finish_reason":null'


def _b64_pcm(b64: object, what: str = "delta.audio.data") -> bytes:
    try:
        pcm = base64.b64decode(b64, validate=True)  # type: ignore[arg-type]
    except (binascii.Error, ValueError, TypeError) as exc:
        raise AudioError("invalid_audio", f"{what} is not base64: {exc}") from exc
    if len(pcm) % SAMPLE_WIDTH:
        raise AudioError("invalid_audio", f"audio chunk of {len(pcm)} bytes is not whole int16")
    return pcm


class OmniSpeechSSEMeasurement(Measurement):
    """vLLM-Omni's streamed speech (`stream: true`, `pcm`; OP2): `speech.audio.delta` events whose
    `audio` is base64 int16 PCM, ended by `speech.audio.done` (no `[DONE]` line). TTFA is the arrival
    of the first delta that carries audio. A `speech.audio.error` event (OX4) is a `stream_error`; a
    body that ends without `speech.audio.done` is a `truncated_stream`."""

    def __init__(self, record: RequestRecord, t0: float, max_audio_s: float | None = None) -> None:
        super().__init__(record, t0, max_audio_s)
        self.parser = SSEParser()
        self.done = False

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        for event in self.parser.feed(data):
            if not self.done and self.server_error is None:  # nothing after the end belongs to it
                self._event(event, now)

    def _event(self, event: bytes, now: float) -> None:
        try:
            obj = json.loads(event)
        except ValueError as exc:
            raise AudioError("invalid_audio", f"SSE event is not JSON: {event[:80]!r}") from exc
        if not isinstance(obj, dict):
            raise AudioError("invalid_audio", f"SSE event is not a JSON object: {event[:80]!r}")
        kind = obj.get("type")
        if kind == "speech.audio.error" or "error" in obj:
            self.server_error = event[:ERROR_TEXT_LIMIT]
        elif kind == "speech.audio.done":
            self.done = True
        elif kind == "speech.audio.delta":
            if obj.get("response_format", "pcm") != "pcm":
                raise AudioError(
                    "invalid_audio", f"delta of response_format {obj.get('response_format')!r}, asked pcm"
                )
            self._audio(_b64_pcm(obj.get("audio"), "speech.audio.delta audio"), now)
        else:
            raise AudioError("invalid_audio", f"SSE event of unknown type {kind!r}: {event[:80]!r}")

    def _complete(self) -> None:
        if self.parser.pending:
            raise AudioError("truncated_stream", "stream ended inside an event")
        if not self.done:
            raise AudioError("truncated_stream", "stream ended without a `speech.audio.done` event")


class WavBodyMeasurement(Measurement):
    """A `/v1/audio/speech` `wav` body: complete WAV files joined (one per chunk the server encoded),
    read as it arrives; `{"error": ...}` where a file should start is a `stream_error` (SP10)."""

    def __init__(self, record: RequestRecord, t0: float, max_audio_s: float | None = None) -> None:
        super().__init__(record, t0, max_audio_s)
        self.wav = JoinedWavParser()

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        self._audio(self.wav.feed(data), now)
        if self.wav.error_text is not None:
            self.server_error = bytes(self.wav.error_text)

    def _complete(self) -> None:
        self.wav.close()


class PcmBodyMeasurement(Measurement):
    """Raw int16 PCM body (`/v1/audio/speech` `pcm`, the default). Bytes from an `{"error": ...}`
    text on (SP10) are the server's error, not audio."""

    def __init__(self, record: RequestRecord, t0: float, max_audio_s: float | None = None) -> None:
        super().__init__(record, t0, max_audio_s)
        self.carry = b""
        self.tail = b""  # the last bytes of the previous read: a marker may straddle two reads

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        if self.server_error is not None:
            self.server_error = (self.server_error + data)[:ERROR_TEXT_LIMIT]
            return
        window = self.tail + data
        at = window.find(ERROR_MARKER)
        if at >= 0:
            self.server_error = window[at : at + ERROR_TEXT_LIMIT]
            data = data[: max(0, at - len(self.tail))]
        else:
            self.tail = window[-(len(ERROR_MARKER) - 1) :]
        fresh = self.carry + data
        whole = len(fresh) - len(fresh) % SAMPLE_WIDTH
        self.carry = fresh[whole:]
        self._audio(fresh[:whole], now)

    def _complete(self) -> None:
        if self.carry and self.server_error is None:
            raise AudioError("invalid_audio", "PCM body ends with half a sample")


class Mp3BodyMeasurement(Measurement):
    """A `/v1/audio/speech` `mp3` body: complete MP3 files joined. Each file is decoded (soundfile) once
    the body is in; its audio counts as arrived when the file's last byte did."""

    def __init__(self, record: RequestRecord, t0: float, max_audio_s: float | None = None) -> None:
        super().__init__(record, t0, max_audio_s)
        self.body = bytearray()
        self.read_ends: list[int] = []  # body offset after each read
        self.read_times: list[float] = []

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        self.body += data
        self.read_ends.append(len(self.body))
        self.read_times.append(now)

    def _complete(self) -> None:
        blob = bytes(self.body)
        files, error = split_mp3(blob)
        if error is not None:
            self.server_error = error
            return
        if not files:
            raise AudioError("invalid_audio", "empty body: no MP3 file")
        for start, end in files:
            self._audio(decode_mp3(blob[start:end]), self.read_times[bisect_left(self.read_ends, end)])


class OmniWavFileMeasurement(WavBodyMeasurement):
    """vLLM-Omni's `wav`, not streamed (OP1): exactly one complete WAV file, sent once the utterance
    is generated. Read as it arrives (TTFA: its first audio byte), but not a stream."""

    streamed = False

    def _complete(self) -> None:
        super()._complete()
        if self.wav.error_text is None and self.wav.files != 1:
            raise AudioError("invalid_audio", f"{self.wav.files} WAV files in the body, expected one (OP1)")


class OmniMp3FileMeasurement(Mp3BodyMeasurement):
    """vLLM-Omni's `mp3`, not streamed (OP1): exactly one MP3 file."""

    streamed = False

    def _complete(self) -> None:
        files, _error = split_mp3(bytes(self.body))
        if len(files) > 1:
            raise AudioError("invalid_audio", f"{len(files)} MP3 files in the body, expected one (OP1)")
        super()._complete()


class ChatJsonMeasurement(Measurement):
    """Non-streaming chat: choices[0].message.audio.data is a base64 WAV (CH5). Audio is usable only
    once the whole JSON body is in, so TTFA equals the full response time here."""

    streamed = False

    def __init__(self, record: RequestRecord, t0: float, max_audio_s: float | None = None) -> None:
        super().__init__(record, t0, max_audio_s)
        self.body = bytearray()
        self.last = t0

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        self.body += data
        self.last = now

    def _complete(self) -> None:
        try:
            obj = json.loads(self.body)
            b64 = obj["choices"][0]["message"]["audio"]["data"]
            blob = base64.b64decode(b64, validate=True)
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
            raise AudioError(
                "invalid_audio", f"no base64 WAV at choices[0].message.audio.data: {exc}"
            ) from exc
        pcm = wav_pcm(blob, truncated_class="invalid_audio")
        self._audio(pcm, self.last)


_MEASUREMENTS: dict[str, type[Measurement]] = {
    "stream": ChatStreamMeasurement,
    "clone": ChatStreamMeasurement,
    "chat": ChatJsonMeasurement,
    "speech_pcm": PcmBodyMeasurement,
    "speech_wav": WavBodyMeasurement,
    "speech_mp3": Mp3BodyMeasurement,
}
_OMNI_MEASUREMENTS: dict[str, type[Measurement]] = {
    "speech_sse": OmniSpeechSSEMeasurement,
    "speech_pcm": PcmBodyMeasurement,  # the raw stream (stream_format "audio", OP3)
    "speech_wav": OmniWavFileMeasurement,
    "speech_mp3": OmniMp3FileMeasurement,
}


def measurement_for(
    kind: str, record: RequestRecord, t0: float, max_audio_s: float | None = None, api: str = "boson"
) -> Measurement:
    """The reader of a `kind` response from `api`'s server (boson: Boson's fork, omni: vLLM-Omni)."""
    table = _OMNI_MEASUREMENTS if api == "omni" else _MEASUREMENTS
    try:
        return table[kind](record, t0, max_audio_s)
    except KeyError:
        raise ValueError(f"unknown request kind {kind!r} for --server-api {api}") from None
