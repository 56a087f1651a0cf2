"""The HTTP API (aiohttp): the real server's endpoints, response shapes and chunk cadence, plus faults."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from higgs_sim import __version__
from higgs_sim.arrival import take_arrival
from higgs_sim.audio import (
    FRAMES_PER_SECOND,
    SAMPLES_PER_FRAME,
    ensure_voice_loop,
    pcm_frames,
    start_offset,
    timbre_of,
    wav_bytes,
    wav_header,
)
from higgs_sim.config import SimConfig
from higgs_sim.engine import Chunk, Engine, Job
from higgs_sim.metrics import SimMetrics
from higgs_sim.protocol import ApiError, GenerationSpec, Limits, parse_chat, parse_speech
from higgs_sim.timing import StepTimeModel
from higgs_sim.trace import TraceRecord, TraceWriter
from higgs_sim.voices import VoiceRegistry

log = logging.getLogger("higgs_sim")

EMULATES = {
    "fork": ("0.8.5.dev0+higgs", "bosonai/higgs-audio-vllm (vLLM 0.8 fork)"),
    "current": ("0.32.0", "vLLM 0.32 OpenAI-compatible server"),
}
AUDIO_EXPIRY_SECONDS = 3600
MAX_BODY_BYTES = 256 * 1024 * 1024  # 50 reference clips as base64 WAV fit comfortably
STATS_INTERVAL_SECONDS = 10.0


def error_response(exc: ApiError, request_id: str | None = None) -> web.Response:
    headers = {"X-Request-Id": request_id} if request_id else None
    return web.json_response(exc.body(), status=exc.status, headers=headers)


def sse(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


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


class SimServer:
    def __init__(self, config: SimConfig, voices: VoiceRegistry) -> None:
        self.config = config
        self.voices = voices
        self.metrics = SimMetrics(config.served_model_name, config.vllm_generation)
        self.engine = Engine(
            StepTimeModel(config.slowdown), config.max_num_seqs, config.kv_budget_tokens, self.metrics
        )
        self.limits = Limits(config.served_model_names, config.max_model_len, config.audio_limit)
        self.rng = random.Random(config.seed)
        self.trace = TraceWriter(config.trace_file) if config.trace_file else None
        self.completed = 0
        self._tasks: list[asyncio.Task[None]] = []

    # --- application ---

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/audio/voices", self.list_voices)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/audio/speech", self.speech)
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

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            key = self.config.api_key
            if (
                key
                and request.path.startswith("/v1")
                and request.headers.get("Authorization") != f"Bearer {key}"
            ):
                raise ApiError(
                    401,
                    "Unauthorized: missing or wrong API key (send 'Authorization: Bearer <key>')",
                    "AuthenticationError",
                )
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except web.HTTPNotFound:
            return error_response(
                ApiError(404, f"no such endpoint: {request.method} {request.path}", "NotFoundError")
            )
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            msg = f"method {request.method} not allowed on {request.path} (allowed: {allowed})"
            return error_response(ApiError(405, msg, "MethodNotAllowed"))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # e.g. 413 for a body over the size limit: still OpenAI-style JSON
            return error_response(ApiError(exc.status, exc.text or exc.reason, type(exc).__name__))
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.path)
            return error_response(
                ApiError(500, "unexpected error in the simulator (see its log)", "InternalServerError")
            )
        finally:
            take_arrival(request.transport)  # what arrived during this request is not the next one's start

    # --- simple endpoints ---

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(self, _request: web.Request) -> web.Response:
        version, emulates = EMULATES[self.config.vllm_generation]
        return web.json_response(
            {"version": version, "simulator": True, "simulator_version": __version__, "emulates": emulates}
        )

    async def metrics_endpoint(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    async def models(self, _request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": self.config.model,
                "parent": None,
                "max_model_len": self.config.max_model_len,
            }
            for name in self.config.served_model_names
        ]
        return web.json_response({"object": "list", "data": data})

    async def list_voices(self, _request: web.Request) -> web.Response:
        voices = self.voices.voices
        data = [{"id": v.name, "name": v.name, "transcript": v.transcript} for v in voices.values()]
        return web.json_response({"object": "list", "data": data, "voices": sorted(voices)})

    # --- generation endpoints ---

    async def chat(self, request: web.Request) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id") or f"chatcmpl-{uuid.uuid4().hex}"
        rec = _trace_record(request, rid)
        try:
            spec, opts = parse_chat(await self._json(request), self.limits, self.voices)
            rec.stream = opts["stream"]
            self._inject_error()
            if not spec.audio_out:
                return self._text_only(rid, spec, opts)
            job, timbre, offset = await self._submit(rid, spec, chunked=opts["stream"])
            try:
                if opts["stream"]:
                    return await self._stream_chat(request, rec, job, spec, opts, timbre, offset)
                return await self._full_chat(request, rec, job, spec, opts, timbre, offset)
            finally:
                self.engine.abort(job)  # no-op once finished
        except ApiError as exc:
            rec.status, rec.error = exc.status, exc.message
            return error_response(exc, rid)
        finally:
            self._finish(rec)

    async def speech(self, request: web.Request) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id") or f"speech-{uuid.uuid4().hex}"
        rec = _trace_record(request, rid, stream=True)
        try:
            spec, opts = parse_speech(await self._json(request), self.limits, self.voices)
            self._inject_error()
            job, timbre, offset = await self._submit(rid, spec, chunked=True)
            try:
                return await self._stream_speech(request, rec, job, opts["format"], timbre, offset)
            finally:
                self.engine.abort(job)
        except ApiError as exc:
            rec.status, rec.error = exc.status, exc.message
            return error_response(exc, rid)
        finally:
            self._finish(rec)

    async def _json(self, request: web.Request) -> Any:
        # vLLM's FastAPI routes validate the content type before the body.
        if request.content_type != "application/json":
            raise ApiError(
                400,
                f"the request body must be JSON (Content-Type: application/json), got {request.content_type or 'none'!r}",
            )
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None

    def _inject_error(self) -> None:
        rate = self.config.faults.error_rate
        if rate and self.rng.random() < rate:
            raise ApiError(500, "simulated internal server error (--sim-error-rate)", "InternalServerError")

    async def _submit(self, rid: str, spec: GenerationSpec, chunked: bool) -> tuple[Job, int, int]:
        seed = self.config.seed if spec.seed is None else spec.seed
        timbre = timbre_of(spec.voice_key, seed)
        offset = start_offset(f"{seed}:{spec.voice_key}:{spec.text}")
        await ensure_voice_loop(timbre)
        job = Job(rid, spec.prompt_tokens, spec.frames, spec.finish_reason, chunked=chunked)
        try:
            self.engine.submit(job)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return job, timbre, offset

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

    async def _chunks(self, rec: TraceRecord, job: Job) -> AsyncIterator[Chunk]:
        """Yield engine chunks, applying the stall and truncation faults after each one is sent."""
        faults = self.config.faults
        stalled = False
        while True:
            chunk: Chunk = await job.chunks.get()
            yield chunk
            rec.frames = chunk.end
            rec.audio_seconds = chunk.end / FRAMES_PER_SECOND
            if faults.truncate_after_frames is not None and chunk.end >= faults.truncate_after_frames:
                rec.error = f"truncated after {chunk.end} frames (--sim-truncate-after-frames)"
                raise Truncated()
            if chunk.final:
                return
            if (
                faults.stall_after_frames is not None
                and not stalled
                and chunk.end >= faults.stall_after_frames
            ):
                stalled = True
                await asyncio.sleep(faults.stall_seconds)

    def _pcm(self, timbre: int, offset: int, start: int, end: int) -> bytes:
        return pcm_frames(timbre, offset, start, end, self.config.faults.silent_audio)

    @staticmethod
    def _cut(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()

    async def _stream_chat(
        self,
        request: web.Request,
        rec: TraceRecord,
        job: Job,
        spec: GenerationSpec,
        opts: dict[str, Any],
        timbre: int,
        offset: int,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Request-Id": job.request_id,
            }
        )
        await resp.prepare(request)
        created = int(time.time())
        audio_id = f"audio-{job.request_id}"
        expires = created + AUDIO_EXPIRY_SECONDS

        def chunk_of(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse(
                {
                    "id": job.request_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": opts["model"],
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
            )

        try:
            first = True
            async for chunk in self._chunks(rec, job):
                data = base64.b64encode(self._pcm(timbre, offset, chunk.start, chunk.end)).decode()
                out = chunk_of({"role": "assistant", "content": ""}) if first else b""
                out += chunk_of(
                    {"audio": {"id": audio_id, "data": data, "expires_at": expires, "transcript": ""}}
                )
                first = False
                await _write_audio(resp, rec, out)
            tail = chunk_of({}, job.finish_reason)
            if opts["include_usage"]:
                usage = self._usage(job)
                tail += sse(
                    {
                        "id": job.request_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": opts["model"],
                        "choices": [],
                        "usage": usage,
                    }
                )
            await resp.write(tail + sse("[DONE]"))
            await resp.write_eof()
        except Truncated:
            self._cut(request)
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    async def _full_chat(
        self,
        request: web.Request,
        rec: TraceRecord,
        job: Job,
        spec: GenerationSpec,
        opts: dict[str, Any],
        timbre: int,
        offset: int,
    ) -> web.StreamResponse:
        chunk = await job.chunks.get()
        pcm = self._pcm(timbre, offset, 0, chunk.end)
        audio = wav_bytes(pcm) if opts["format"] == "wav" else pcm
        created = int(time.time())
        body = json.dumps(
            {
                "id": job.request_id,
                "object": "chat.completion",
                "created": created,
                "model": opts["model"],
                "choices": [
                    {
                        "index": 0,
                        "logprobs": None,
                        "finish_reason": job.finish_reason,
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "audio": {
                                "id": f"audio-{job.request_id}",
                                "data": base64.b64encode(audio).decode(),
                                "expires_at": created + AUDIO_EXPIRY_SECONDS,
                                "transcript": spec.text,
                            },
                        },
                    }
                ],
                "usage": self._usage(job),
            }
        ).encode()
        return await self._send_whole(request, rec, job, body, "application/json", chunk.end)

    async def _send_whole(
        self, request: web.Request, rec: TraceRecord, job: Job, body: bytes, content_type: str, frames: int
    ) -> web.StreamResponse:
        """A complete (non-streamed) body, cut half way when the truncation fault is on."""
        resp = web.StreamResponse(headers={"Content-Type": content_type, "X-Request-Id": job.request_id})
        resp.content_length = len(body)
        await resp.prepare(request)
        truncate = self.config.faults.truncate_after_frames
        try:
            if truncate is not None and frames >= truncate:
                await resp.write(body[: len(body) // 2])
                rec.error = f"truncated after {truncate} frames (--sim-truncate-after-frames)"
                self._cut(request)
                return resp
            await resp.write(body)
            rec.t_first_audio = time.time()
            rec.frames, rec.audio_seconds = frames, frames / FRAMES_PER_SECOND
            await resp.write_eof()
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    async def _stream_speech(
        self, request: web.Request, rec: TraceRecord, job: Job, fmt: str, timbre: int, offset: int
    ) -> web.StreamResponse:
        content_type = "audio/wav" if fmt == "wav" else "audio/pcm"
        resp = web.StreamResponse(headers={"Content-Type": content_type, "X-Request-Id": job.request_id})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            first = True
            async for chunk in self._chunks(rec, job):
                data = self._pcm(timbre, offset, chunk.start, chunk.end)
                if first and fmt == "wav":
                    # The planned length is known up front, so the header carries the true size.
                    data = wav_header(job.frames * SAMPLES_PER_FRAME) + data
                first = False
                await _write_audio(resp, rec, data)
            await resp.write_eof()
        except Truncated:
            self._cut(request)
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    def _text_only(self, rid: str, spec: GenerationSpec, opts: dict[str, Any]) -> web.Response:
        """``modalities: ["text"]``: the simulator answers with the input text and no audio."""
        tokens = len(spec.text) // 4 + 1
        body = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": opts["model"],
            "choices": [
                {
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": spec.text},
                }
            ],
            "usage": {
                "prompt_tokens": spec.prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": spec.prompt_tokens + tokens,
            },
        }
        return web.json_response(body, headers={"X-Request-Id": rid})

    @staticmethod
    def _usage(job: Job) -> dict[str, int]:
        return {
            "prompt_tokens": job.prompt_tokens,
            "completion_tokens": job.generated,
            "total_tokens": job.prompt_tokens + job.generated,
        }

    # --- background loops ---

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.voice_presets_refresh_interval)
            self.voices.refresh()

    async def _stats_loop(self) -> None:
        """vLLM-style periodic throughput line, only while there is activity."""
        last_prompt, last_frames, last_t = 0, 0, time.monotonic()
        while True:
            await asyncio.sleep(STATS_INTERVAL_SECONDS)
            eng, now = self.engine, time.monotonic()
            dt = now - last_t
            if eng.frames_total != last_frames or eng.running or eng.waiting:
                log.info(
                    "Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s "
                    "(%.1f audio-s/s), Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%",
                    (eng.prompt_tokens_total - last_prompt) / dt,
                    (eng.frames_total - last_frames) / dt,
                    (eng.frames_total - last_frames) / dt / FRAMES_PER_SECOND,
                    len(eng.running),
                    len(eng.waiting),
                    100.0 * eng.kv_used / eng.kv_budget,
                )
            last_prompt, last_frames, last_t = eng.prompt_tokens_total, eng.frames_total, now
