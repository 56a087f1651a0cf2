"""Turn the bytes of one response, with their arrival times, into a validated RequestRecord.

Transport-agnostic (no Locust, no HTTP client): the caller feeds each read's bytes with the clock
reading taken right after the read returned, so TTFA is when the first audio byte arrived, not when
the response was parsed at the end.
"""

from __future__ import annotations

import base64
import binascii
import json

from higgs_load.audio import (
    SAMPLE_WIDTH,
    AudioError,
    check_chunks_consistent,
    check_format,
    check_pcm,
    parse_wav_header,
    wav_pcm,
)
from higgs_load.metrics import simulate_underruns
from higgs_load.records import RequestRecord
from higgs_load.sse import SSEParser


class Measurement:
    """Base: collects (arrival, samples) chunks; subclasses decode their wire format."""

    streamed = True

    def __init__(self, record: RequestRecord, t0: float) -> None:
        self.rec = record
        self.t0 = t0  # clock reading (same clock as feed's `now`) when the request was sent
        self.pcm = bytearray()
        self.bytes = 0

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
            check_chunks_consistent([c[1] for c in rec.chunks], len(self.pcm))
            rec.audio_s = check_pcm(bytes(self.pcm))
        except AudioError as exc:
            return self.fail(exc.error_class, exc.detail, now)
        under = simulate_underruns(rec.chunks)
        rec.underruns, rec.stall_s = under.count, under.stall_s
        rec.ok = True
        return rec

    def fail(self, error: str, detail: str, now: float) -> RequestRecord:
        rec = self.rec
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
    """OpenAI-style SSE: choices[0].delta.audio.data is base64 int16 PCM; ends with `data: [DONE]`."""

    def __init__(self, record: RequestRecord, t0: float) -> None:
        super().__init__(record, t0)
        self.parser = SSEParser()
        self.done = False
        self.finish_reason: str | None = None

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        for event in self.parser.feed(data):
            if event == b"[DONE]":
                self.done = True
                continue
            try:
                obj = json.loads(event)
                choice = obj["choices"][0] if obj.get("choices") else {}
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                raise AudioError("invalid_audio", f"SSE event is not a chat.completion.chunk: {exc}") from exc
            if "error" in obj:
                raise AudioError("invalid_audio", f"error event in stream: {str(obj['error'])[:200]}")
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            audio = (choice.get("delta") or {}).get("audio") or {}
            b64 = audio.get("data")
            if b64:
                try:
                    pcm = base64.b64decode(b64, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise AudioError("invalid_audio", f"delta.audio.data is not base64: {exc}") from exc
                if len(pcm) % SAMPLE_WIDTH:
                    raise AudioError("invalid_audio", f"audio chunk of {len(pcm)} bytes is not whole int16")
                self._audio(pcm, now)

    def _complete(self) -> None:
        if not self.done:
            raise AudioError("truncated_stream", "stream ended without `data: [DONE]`")
        if self.parser.pending:
            raise AudioError("truncated_stream", "stream ended inside an event")


class WavBodyMeasurement(Measurement):
    """A WAV body (`/v1/audio/speech` response_format=wav), read as it arrives."""

    def __init__(self, record: RequestRecord, t0: float) -> None:
        super().__init__(record, t0)
        self.buf = bytearray()
        self.header_len: int | None = None
        self.carry = b""

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        self.buf += data
        if self.header_len is None:
            try:
                info = parse_wav_header(bytes(self.buf))
            except AudioError:
                if len(self.buf) < 4096:  # header not complete yet
                    return
                raise
            check_format(info.sample_rate, info.channels, info.bits_per_sample, info.audio_format)
            self.header_len = info.data_offset
            fresh = bytes(self.buf[info.data_offset :])
        else:
            fresh = data
        fresh = self.carry + fresh
        whole = len(fresh) - len(fresh) % SAMPLE_WIDTH
        self.carry = fresh[whole:]
        self._audio(fresh[:whole], now)

    def _complete(self) -> None:
        if self.header_len is None:
            parse_wav_header(bytes(self.buf))  # raises the precise reason
        pcm = wav_pcm(bytes(self.buf))
        if len(pcm) != len(self.pcm):
            raise AudioError("invalid_audio", f"WAV data has {len(pcm)} bytes, {len(self.pcm)} streamed")
        if self.carry:
            raise AudioError("invalid_audio", "WAV data ends with half a sample")


class PcmBodyMeasurement(Measurement):
    """Raw int16 PCM body (`/v1/audio/speech` response_format=pcm)."""

    def __init__(self, record: RequestRecord, t0: float) -> None:
        super().__init__(record, t0)
        self.carry = b""

    def feed(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        fresh = self.carry + data
        whole = len(fresh) - len(fresh) % SAMPLE_WIDTH
        self.carry = fresh[whole:]
        self._audio(fresh[:whole], now)

    def _complete(self) -> None:
        if self.carry:
            raise AudioError("invalid_audio", "PCM body ends with half a sample")


class ChatJsonMeasurement(Measurement):
    """Non-streaming chat: choices[0].message.audio.data is a base64 WAV. Audio is usable only once the
    whole JSON body is in, so TTFA equals the full response time here."""

    streamed = False

    def __init__(self, record: RequestRecord, t0: float) -> None:
        super().__init__(record, t0)
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


def measurement_for(kind: str, record: RequestRecord, t0: float) -> Measurement:
    if kind in ("stream", "clone"):
        return ChatStreamMeasurement(record, t0)
    if kind == "chat":
        return ChatJsonMeasurement(record, t0)
    if kind == "speech_wav":
        return WavBodyMeasurement(record, t0)
    if kind == "speech_pcm":
        return PcmBodyMeasurement(record, t0)
    raise ValueError(f"unknown request kind {kind!r}")
