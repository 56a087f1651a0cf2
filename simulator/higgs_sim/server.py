"""The HTTP API (aiohttp): the real server's endpoints, response shapes and chunk cadence, plus faults.

The behaviour follows ``docs/server-contract.md`` (row IDs in the comments); the real server is
Boson's ``vllm/entrypoints/bosonai/api_server.py`` (FastAPI), whose framework defaults (404/405/415
bodies, a plain-text 500) are reproduced here by hand.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from higgs_sim.arrival import take_arrival
from higgs_sim.audio import (
    FRAMES_PER_SECOND,
    SAMPLES_PER_FRAME,
    encoded_file,
    ensure_voice_loop,
    pcm_frames,
    speech_chunk,
    start_offset,
    timbre_of,
)
from higgs_sim.config import FaultConfig, SimConfig
from higgs_sim.content_faults import FaultPicker, faulted_pcm, faulted_spec, truncate_at
from higgs_sim.engine import Chunk, Engine, Job
from higgs_sim.events import DONE, ChatEvents, chat_completion, stream_error_text
from higgs_sim.fastapi_answers import (
    api_key_middleware,
    internal_server_error,
    json_response,
    routing_errors_middleware,
)
from higgs_sim.metrics import SimMetrics
from higgs_sim.model_list import model_list
from higgs_sim.protocol import (
    ApiError,
    ChatOptions,
    DetailError,
    GenerationSpec,
    InternalError,
    Limits,
    SpeechOptions,
    parse_chat,
    parse_speech,
)
from higgs_sim.timing import StepTimeModel
from higgs_sim.trace import TraceRecord, TraceWriter
from higgs_sim.voices import VoiceRegistry

log = logging.getLogger("higgs_sim")

# What /version reports and the banner names: Boson's vLLM 0.8 fork.
EMULATED_VERSION = "0.8.5.dev0+higgs"
EMULATED_SERVER = "bosonai/higgs-audio-vllm (vLLM 0.8 fork)"
MAX_BODY_BYTES = 256 * 1024 * 1024  # 50 reference clips as base64 WAV fit comfortably
STATS_INTERVAL_SECONDS = 10.0
UNSUPPORTED_MEDIA_TYPE = "Unsupported Media Type: Only 'application/json' is allowed"
REQUEST_ID = web.RequestKey("request_id", str)

PcmSource = Callable[[int, int], bytes]  # frames [start, end) of one request's audio


def _trace_record(request: web.Request, rid: str, **fields: Any) -> TraceRecord:
    now = time.time()
    arrived = take_arrival(request.transport)
    received = now if arrived is None else min(arrived, now)
    return TraceRecord(rid, request.path, received, t_handler=now, **fields)


async def _write_audio(resp: web.StreamResponse, rec: TraceRecord, data: bytes) -> None:
    if rec.t_first_audio is None:
        # Stamped before the write: the bytes reach the socket inside it, before any wait to drain.
        rec.t_first_audio = time.time()
    await resp.write(data)


class Truncated(Exception):
    """The truncation fault fired: the connection was closed mid-response."""


class StreamFaults:
    """The mid-stream faults of one response, checked after each audio chunk is written."""

    def __init__(self, faults: FaultConfig, cut_after: int | None = None) -> None:
        self.faults = faults
        self.error_after = faults.error_after_frames
        self.stalled = False
        self.cut_after = cut_after  # this response's --sim-fault truncate point

    def action(self, frames_sent: int) -> str | None:
        """What to do once ``frames_sent`` frames went out (checked at every chunk boundary, the
        last one included): truncate, error, stall, or None."""
        faults = self.faults
        if faults.truncate_after_frames is not None and frames_sent >= faults.truncate_after_frames:
            return "truncate"
        if self.cut_after is not None and frames_sent >= self.cut_after:
            return "truncate"
        if self.error_after is not None and frames_sent >= self.error_after:
            return "error"
        if (
            faults.stall_after_frames is not None
            and not self.stalled
            and frames_sent >= faults.stall_after_frames
        ):
            self.stalled = True
            return "stall"
        return None

    def error_message(self, frames_sent: int) -> str:
        return (
            f"simulated engine error after {frames_sent} frames (--sim-error-after-frames {self.error_after})"
        )


@dataclass
class _ChatStream:
    """State of one streamed chat response: which tokens' events were written."""

    job: Job
    events: ChatEvents
    pcm: PcmSource
    sent: int = 0  # tokens whose events were written
    next_chunk: int = 0  # index in job.plan
    frames_sent: int = 0

    def pending(self) -> tuple[bytes, bool]:
        """Events of the tokens generated since the last call, and whether they carry audio."""
        job, plan = self.job, self.job.plan
        parts = [self.events.role] if self.sent == 0 else []
        has_audio = False
        while self.sent < job.generated:
            boundary = plan[self.next_chunk].token if self.next_chunk < len(plan) else job.tokens + 1
            quiet = min(job.generated, boundary - 1) - self.sent
            if quiet > 0:
                parts.append(self.events.empty * quiet)  # no json.dumps per token
                self.sent += quiet
                continue
            self.sent += 1
            chunks = []
            while self.next_chunk < len(plan) and plan[self.next_chunk].token == self.sent:
                chunks.append(plan[self.next_chunk])
                self.next_chunk += 1
            parts.extend(self._token_events(chunks))
            has_audio = has_audio or any(c.frames for c in chunks)
        return b"".join(parts), has_audio

    def _token_events(self, chunks: list[Chunk]) -> list[bytes]:
        inline = [c for c in chunks if c.frames and not c.after_finish]
        after = [c for c in chunks if c.frames and c.after_finish]
        for c in chunks:
            self.frames_sent = max(self.frames_sent, c.end)
        pcm = b"".join(self.pcm(c.start, c.end) for c in inline) if inline else None
        if self.sent < self.job.tokens:
            return [self.events.audio(pcm)] if pcm is not None else [self.events.empty]
        out = [self.events.finish(self.job.finish_reason, pcm)]
        out.extend(self.events.after_finish(self.pcm(c.start, c.end)) for c in after)
        return out


class SimServer:
    def __init__(self, config: SimConfig, voices: VoiceRegistry) -> None:
        self.config = config
        self.voices = voices
        self.metrics = SimMetrics(config.served_model_name, config.max_model_len)
        self.engine = Engine(
            StepTimeModel(config.slowdown), config.max_num_seqs, config.kv_budget_tokens, self.metrics
        )
        self.limits = Limits(config.served_model_names, config.max_model_len, config.audio_limit)
        self.rng = random.Random(config.seed)
        self.trace = TraceWriter(config.trace_file) if config.trace_file else None
        self.completed = 0
        self._tasks: list[asyncio.Task[None]] = []
        # --sim-fault: which requests get wrong audio, and where a truncated one is cut (by job id)
        self.fault_picker = FaultPicker(config.faults.content_faults, config.faults.content_fault_every)
        self._cut_at: dict[str, int] = {}

    # --- application ---

    def make_app(self) -> web.Application:
        # FastAPI's routing errors and Starlette's plain 500 (E6, ER3); the API key on /v1 (E7).
        middlewares = [routing_errors_middleware(log), api_key_middleware(self.config.api_key)]
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/audio/voices", self.list_voices)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/audio/speech", self.speech)
        if self.config.enable_request_id_headers:
            app.on_response_prepare.append(self._add_request_id)  # E8
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self.engine.start(on_fatal=self.crash)
        self._tasks.append(asyncio.create_task(self._stats_loop(), name="stats"))
        if self.config.voice_presets_dir and self.config.voice_presets_refresh_interval > 0:
            self._tasks.append(asyncio.create_task(self._refresh_loop(), name="voice-refresh"))
        seconds = self.config.faults.crash_after_seconds
        if seconds is not None:
            asyncio.get_running_loop().call_later(
                seconds, self.crash, f"--sim-crash-after-seconds {seconds:g}"
            )

    async def _on_cleanup(self, _app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        await self.engine.stop()
        if self.trace:
            self.trace.close()

    def crash(self, reason: str) -> None:
        """Simulated fatal engine error: the process exits with status 1 at once."""
        log.error("SIMULATED CRASH (%s): exiting with status 1", reason)
        logging.shutdown()
        os._exit(1)

    async def _add_request_id(self, request: web.Request, response: web.StreamResponse) -> None:
        header = request.headers.get("X-Request-Id")
        response.headers["X-Request-Id"] = request.get(REQUEST_ID) or (
            uuid.uuid4().hex if header is None else header
        )

    # --- simple endpoints ---

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)  # E1: an empty body

    async def version(self, _request: web.Request) -> web.Response:
        return json_response({"version": EMULATED_VERSION, "simulator": True})  # E3, X6

    async def metrics_endpoint(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    async def models(self, _request: web.Request) -> web.Response:
        """E2: vLLM's ModelList, one card per served name."""
        return json_response(
            model_list(self.config.served_model_names, self.config.model, self.config.max_model_len)
        )

    async def list_voices(self, _request: web.Request) -> web.Response:
        return json_response(self.voices.names())  # E5: a bare array in config.json order

    # --- generation endpoints ---

    def _request_id(self, request: web.Request, own: str | None = None) -> str:
        """The client's X-Request-Id, else the body's request_id, else a new one (E8)."""
        rid = request.headers.get("X-Request-Id") or own or uuid.uuid4().hex
        request[REQUEST_ID] = rid
        return rid

    async def chat(self, request: web.Request) -> web.StreamResponse:
        rec = _trace_record(request, self._request_id(request))
        try:
            spec, opts = parse_chat(await self._json(request), self.limits)
            rec.request_id = rid = self._request_id(request, opts.request_id)
            rec.stream = opts.stream
            self._inject_error()
            completion_id = f"chatcmpl-{rid}"
            job, pcm = await self._submit(
                completion_id, spec, chunked=opts.stream, per_token=opts.stream, rec=rec
            )
            try:
                if opts.stream:
                    return await self._stream_chat(request, rec, job, opts, pcm)
                return await self._full_chat(request, rec, job, opts, pcm)
            finally:
                self.engine.abort(job)  # no-op once finished
        except (ApiError, DetailError, InternalError) as exc:
            return self._failed(rec, exc)
        finally:
            self._finish(rec)

    async def speech(self, request: web.Request) -> web.StreamResponse:
        rid = self._request_id(request)
        rec = _trace_record(request, rid, stream=True)
        try:
            spec, opts = parse_speech(await self._json(request), self.limits, self.voices)
            self._inject_error()
            job, pcm = await self._submit(f"audiospeech-{rid}", spec, chunked=True, rec=rec)
            try:
                return await self._stream_speech(request, rec, job, opts, pcm)
            finally:
                self.engine.abort(job)
        except (ApiError, DetailError, InternalError) as exc:
            return self._failed(rec, exc)
        finally:
            self._finish(rec)

    @staticmethod
    def _failed(rec: TraceRecord, exc: ApiError | DetailError | InternalError) -> web.Response:
        if isinstance(exc, ApiError):
            rec.status, rec.error = exc.status, exc.message
            return json_response(exc.body(), exc.status)
        if isinstance(exc, DetailError):
            rec.status, rec.error = exc.status, exc.detail
            return json_response({"detail": exc.detail}, exc.status)
        log.error("Exception in ASGI application: %s", exc)
        rec.status, rec.error = 500, str(exc)
        return internal_server_error()

    async def _json(self, request: web.Request) -> Any:
        # SP1/CH1: the content type is checked before the body (validate_json_request).
        media_type = request.headers.get("Content-Type", "").lower().split(";", 1)[0]
        if media_type != "application/json":
            raise DetailError(415, UNSUPPORTED_MEDIA_TYPE)
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None

    def _inject_error(self) -> None:
        rate = self.config.faults.error_rate
        if rate and self.rng.random() < rate:
            raise ApiError(500, "simulated internal server error (--sim-error-rate)", "InternalServerError")

    async def _submit(
        self,
        rid: str,
        spec: GenerationSpec,
        *,
        chunked: bool,
        per_token: bool = False,
        rec: TraceRecord | None = None,
    ) -> tuple[Job, PcmSource]:
        seed = self.config.seed if spec.seed is None else spec.seed
        timbre = timbre_of(spec.voice_key, seed)
        offset = start_offset(f"{seed}:{spec.voice_key}:{spec.text}")
        silent = self.config.faults.silent_audio
        fault = self.fault_picker.next()
        spec = faulted_spec(spec, fault)
        if rec is not None:
            rec.fault = fault
        await ensure_voice_loop(timbre)
        job = Job(
            rid,
            spec.prompt_tokens,
            spec.tokens,
            spec.frames,
            spec.finish_reason,
            chunked=chunked,
            per_token=per_token,
        )
        try:
            self.engine.submit(job)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

        def pcm(start: int, end: int) -> bytes:
            return pcm_frames(timbre, offset, start, end, silent)

        cut = truncate_at(fault, spec.frames)
        if cut is not None:
            self._cut_at[job.request_id] = cut
        return job, faulted_pcm(pcm, fault, spec.frames, SAMPLES_PER_FRAME)

    def _finish(self, rec: TraceRecord) -> None:
        rec.t_done = time.time()
        if self.trace:
            self.trace.write(rec)
        if rec.status == 200 and rec.error is None:
            self.completed += 1
            limit = self.config.faults.crash_after_requests
            if limit is not None and self.completed >= limit:
                # Let the last response leave the socket buffer first.
                asyncio.get_running_loop().call_later(0.2, self.crash, f"--sim-crash-after-requests {limit}")

    async def _chunks(self, job: Job) -> AsyncIterator[Chunk]:
        while True:
            chunk = await job.chunks.get()
            yield chunk
            if chunk.final:
                return

    @staticmethod
    def _cut(request: web.Request, rec: TraceRecord, frames: int) -> None:
        rec.error = f"truncated after {frames} frames (--sim-truncate-after-frames)"
        if request.transport is not None:
            request.transport.abort()

    @staticmethod
    def _sent(rec: TraceRecord, frames: int) -> None:
        rec.frames, rec.audio_seconds = frames, frames / FRAMES_PER_SECOND
        rec.sent.append((time.time(), frames))

    async def _stream_chat(
        self, request: web.Request, rec: TraceRecord, job: Job, opts: ChatOptions, pcm: PcmSource
    ) -> web.StreamResponse:
        """CH6/CH7: one event per token; audio in the events of the steps that complete a chunk."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        stream = _ChatStream(job, ChatEvents(job.request_id, int(time.time()), opts.model), pcm)
        faults = StreamFaults(self.config.faults, self._cut_at.pop(job.request_id, None))
        try:
            while stream.sent < job.tokens and not job.aborted:
                await job.wait_progress(stream.sent)
                data, has_audio = stream.pending()
                if not data:
                    continue
                await (_write_audio(resp, rec, data) if has_audio else resp.write(data))
                if not has_audio:
                    continue
                self._sent(rec, stream.frames_sent)
                action = faults.action(stream.frames_sent)
                if action == "truncate":
                    self._cut(request, rec, stream.frames_sent)
                    return resp
                if action == "error":
                    rec.error = faults.error_message(stream.frames_sent)
                    await resp.write(ChatEvents.error(rec.error) + DONE)
                    await resp.write_eof()
                    return resp
                if action == "stall":
                    await asyncio.sleep(faults.faults.stall_seconds)
            tail = stream.events.usage(job.prompt_tokens, job.generated) if opts.include_usage else b""
            await resp.write(tail + DONE)
            await resp.write_eof()
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    async def _full_chat(
        self, request: web.Request, rec: TraceRecord, job: Job, opts: ChatOptions, pcm: PcmSource
    ) -> web.StreamResponse:
        """CH5: the whole file, base64, once generation is over; pcm16/opus fail only then."""
        chunk = await job.chunks.get()
        if not chunk.frames:
            # K4: no audio tokens decoded, ChatCompletionAudio(data=None) fails validation.
            raise InternalError("the generation decoded no audio (ChatCompletionAudio.data must be a string)")
        try:
            audio = await asyncio.to_thread(encoded_file, pcm(0, chunk.end), opts.audio_format)
        except ValueError as exc:  # soundfile: "Unknown format: 'pcm16'"
            raise ApiError(400, str(exc)) from None
        body = chat_completion(
            job.request_id,
            int(time.time()),
            opts.model,
            base64.b64encode(audio).decode(),
            job.finish_reason,
            job.prompt_tokens,
            job.generated,
        )
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        cut = self._cut_at.pop(job.request_id, None)
        return await self._send_whole(request, rec, data, "application/json", chunk.end, cut)

    async def _send_whole(
        self,
        request: web.Request,
        rec: TraceRecord,
        body: bytes,
        content_type: str,
        frames: int,
        cut: int | None = None,
    ) -> web.StreamResponse:
        """A complete (non-streamed) body, cut half way when the truncation fault is on (or `cut`,
        this request's --sim-fault truncate point)."""
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.content_length = len(body)
        await resp.prepare(request)
        truncate = self.config.faults.truncate_after_frames if cut is None else cut
        try:
            if truncate is not None and frames >= truncate:
                await resp.write(body[: len(body) // 2])
                self._cut(request, rec, truncate)
                return resp
            await resp.write(body)
            rec.t_first_audio = time.time()
            self._sent(rec, frames)
            await resp.write_eof()
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    async def _stream_speech(
        self, request: web.Request, rec: TraceRecord, job: Job, opts: SpeechOptions, pcm: PcmSource
    ) -> web.StreamResponse:
        """SP6-SP8: audio/mpeg whatever the format; each chunk encoded on its own."""
        fmt = opts.response_format
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        faults = StreamFaults(self.config.faults, self._cut_at.pop(job.request_id, None))
        try:
            async for chunk in self._chunks(job):
                if not chunk.frames:
                    continue
                raw = pcm(chunk.start, chunk.end)
                # MP3 encoding takes a few ms per second of audio: off the event loop.
                data = (
                    speech_chunk(raw, fmt)
                    if fmt != "mp3"
                    else await asyncio.to_thread(speech_chunk, raw, fmt)
                )
                await _write_audio(resp, rec, data)
                self._sent(rec, chunk.end)
                action = faults.action(chunk.end)
                if action == "truncate":
                    self._cut(request, rec, chunk.end)
                    return resp
                if action == "error":  # SP10: the error text joins the body, the status stays 200
                    rec.error = faults.error_message(chunk.end)
                    await resp.write(stream_error_text(rec.error).encode())
                    break
                if action == "stall":
                    await asyncio.sleep(faults.faults.stall_seconds)
            await resp.write_eof()
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    # --- background loops ---

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.voice_presets_refresh_interval)
            self.voices.refresh()

    async def _stats_loop(self) -> None:
        """vLLM-style periodic throughput line, only while there is activity."""
        last_prompt, last_tokens, last_frames, last_t = 0, 0, 0, time.monotonic()
        while True:
            await asyncio.sleep(STATS_INTERVAL_SECONDS)
            eng, now = self.engine, time.monotonic()
            dt = now - last_t
            if eng.tokens_total != last_tokens or eng.running or eng.waiting:
                log.info(
                    "Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s "
                    "(%.1f audio-s/s), Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%",
                    (eng.prompt_tokens_total - last_prompt) / dt,
                    (eng.tokens_total - last_tokens) / dt,
                    (eng.frames_total - last_frames) / dt / FRAMES_PER_SECOND,
                    len(eng.running),
                    len(eng.waiting),
                    100.0 * eng.kv_used / eng.kv_budget,
                )
            last_prompt, last_tokens, last_frames, last_t = (
                eng.prompt_tokens_total,
                eng.tokens_total,
                eng.frames_total,
                now,
            )
