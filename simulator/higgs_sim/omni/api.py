"""The HTTP API (aiohttp) of the emulated vLLM-Omni server: routes OE1-OE6, speech OP1-OP4, errors OX1-OX4.

The real server is FastAPI (``vllm_omni/entrypoints/openai/api_server.py`` on vLLM 0.25's
``build_app``); the framework's parts it relies on are reproduced by hand: the JSON-body check and
schema errors (vLLM's ``RequestValidationError`` handler, OX2), form fields (empty = missing),
FastAPI's ``{"detail": ...}`` for unknown routes and methods, Starlette's plain-text 500, the
API-key middleware on ``/v1`` (OE6, UNCONFIRMED at 0.25: vLLM's behaviour of the 0.2x line), and
handler cancellation when the client goes away (``with_cancellation``: the request is aborted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from higgs_sim.arrival import take_arrival
from higgs_sim.audio import (
    FRAMES_PER_SECOND,
    SAMPLES_PER_FRAME,
    ensure_voice_loop,
    pcm_frames,
    start_offset,
    timbre_of,
)
from higgs_sim.fastapi_answers import (
    api_key_middleware,
    internal_server_error,
    json_response,
    routing_errors_middleware,
)
from higgs_sim.model_list import model_list
from higgs_sim.omni import EMULATED_VLLM_VERSION
from higgs_sim.omni.errors import (
    OmniError,
    SchemaError,
    SchemaIssue,
    error_body,
    schema_error_response,
    value_error,
)
from higgs_sim.omni.metrics import OmniMetrics
from higgs_sim.omni.options import OmniConfig
from higgs_sim.omni.pipeline import (
    Decoded,
    GenerationFailed,
    Pipeline,
    Plan,
    kv_budget_tokens,
    plan_generation,
)
from higgs_sim.omni.requests import (
    InternalServerError,
    ReferenceClipError,
    SpeechRequest,
    higgs_validate,
    parse_speech,
    resolve_reference,
)
from higgs_sim.omni.responses import (
    CONTENT_TYPES,
    SSE_CONTENT_TYPE,
    encode_file,
    sse_delta,
    sse_done,
    sse_error,
    streaming_wav_header,
)
from higgs_sim.omni.voices import VoiceError, VoiceStore
from higgs_sim.trace import TraceRecord, TraceWriter

log = logging.getLogger("higgs_sim.omni")

MAX_BODY_BYTES = 64 * 1024 * 1024  # room for a >10 MB upload to reach the real size check
WORD_TIMESTAMPS_STREAMING = (
    "word_timestamps=true is currently supported by the WebSocket /v1/audio/speech/stream path. "
    "Use session.config with stream_audio=true and response_format='pcm'."
)
UNSUPPORTED_MEDIA_TYPE = "Unsupported Media Type: Only 'application/json' is allowed"


@dataclass(frozen=True)
class _Generation:
    """One speech request's generation, as its responder (whole file, SSE or raw stream) needs it."""

    rid: str
    plan: Plan
    fmt: str  # the response format
    pcm: Callable[[Decoded], bytes]  # the audio of one decoded chunk
    fail: bool  # the --sim-error-rate fault fires for this request


class OmniServer:
    def __init__(self, config: OmniConfig, voices: VoiceStore) -> None:
        self.config = config
        self.voices = voices
        talker = config.deploy.talker
        self.metrics = OmniMetrics(config.served_model_name, config.log_stats, talker.max_model_len)
        budget = kv_budget_tokens(talker.gpu_memory_utilization, config.gpu_memory_gib)
        self.pipeline = Pipeline(config.deploy, config.slowdown, budget, self.metrics)
        self.rng = random.Random(config.seed)
        self.trace = TraceWriter(config.trace_file) if config.trace_file else None

    # --- application ---

    def make_app(self) -> web.Application:
        middlewares = [routing_errors_middleware(log), api_key_middleware(self.config.api_key)]
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/audio/speech", self.speech)
        app.router.add_get("/v1/audio/voices", self.list_voices)
        app.router.add_post("/v1/audio/voices", self.upload_voice)
        app.router.add_delete("/v1/audio/voices/{name}", self.delete_voice)
        if self.config.enable_request_id_headers:
            app.on_response_prepare.append(self._request_id_header)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self.pipeline.start(on_fatal=self._engine_dead)

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.pipeline.stop()
        if self.trace:
            self.trace.close()

    @staticmethod
    def _engine_dead(reason: str) -> None:
        """OX3: the server shuts down when its engine is dead."""
        log.error("EngineDeadError (%s): shutting down", reason)
        logging.shutdown()
        os._exit(1)

    @staticmethod
    async def _request_id_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Request-Id"] = request.headers.get("X-Request-Id") or uuid.uuid4().hex

    # --- simple endpoints (OE4-OE6) ---

    async def health(self, _request: web.Request) -> web.Response:
        return json_response({"status": "healthy"})

    async def version(self, _request: web.Request) -> web.Response:
        return json_response({"version": EMULATED_VLLM_VERSION, "simulator": True})

    async def metrics_endpoint(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    async def models(self, _request: web.Request) -> web.Response:
        """OE5: vLLM's model list (entry fields at 0.25 UNCONFIRMED: vLLM's ModelCard of the 0.2x line)."""
        body = model_list(
            self.config.served_model_names, self.config.model, self.config.deploy.talker.max_model_len
        )
        return json_response(body)

    # --- voices (OE2, OE3) ---

    async def list_voices(self, _request: web.Request) -> web.Response:
        return json_response(self.voices.listing())

    async def upload_voice(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except ValueError:
            form = None
        fields = form if form is not None else {}
        issues: list[SchemaIssue] = []

        def text_field(name: str, required: bool) -> str | None:
            value = fields.get(name)
            if isinstance(value, FileField):
                value = value.file.read().decode("utf-8", "replace")
            if value is None or value == "":  # FastAPI: an empty form value is a missing one
                if required:
                    issues.append(
                        {"type": "missing", "loc": ("body", name), "msg": "Field required", "input": None}
                    )
                return None
            return str(value)

        audio = fields.get("audio_sample")
        if isinstance(audio, str) and audio:
            message = f"Expected UploadFile, received: {type(audio)}"
            issues.append(value_error(message, audio, ("body", "audio_sample")))
        embedding = text_field("speaker_embedding", False)
        consent = text_field("consent", True)
        name = text_field("name", True)
        ref_text = text_field("ref_text", False)
        description = text_field("speaker_description", False)
        if issues:
            return self._schema_error(SchemaError(issues))
        assert consent is not None and name is not None
        upload = audio if isinstance(audio, FileField) else None
        try:
            if embedding is not None and upload is not None:
                raise OmniError(400, "'audio_sample' and 'speaker_embedding' are mutually exclusive")
            if embedding is not None:
                result = self.voices.upload_embedding(embedding, consent, name)
            elif upload is not None:
                content = await asyncio.to_thread(upload.file.read)
                result = await asyncio.to_thread(
                    self.voices.upload_audio,
                    upload.filename or "",
                    upload.content_type,
                    content,
                    consent,
                    name,
                    ref_text,
                    description,
                )
            else:
                raise OmniError(400, "Either 'audio_sample' or 'speaker_embedding' must be provided")
        except OmniError as exc:
            return json_response(exc.body(), exc.status)
        except VoiceError as exc:
            return json_response(error_body(str(exc)), 400)
        except OSError as exc:
            log.exception("Failed to upload voice: %s", exc)
            return json_response(
                error_body(f"Failed to upload voice: {exc}", "InternalServerError", 500), 500
            )
        return json_response({"success": True, "voice": result})

    async def delete_voice(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self.voices.delete(name):
            return json_response(error_body(f"Voice '{name}' not found", "NotFoundError", 404), 404)
        return json_response({"success": True, "message": f"Voice '{name}' deleted successfully"})

    # --- speech (OE1, OR1-OR5, OP1-OP4, OX1-OX4) ---

    def _schema_error(self, exc: SchemaError) -> web.Response:
        status, body = schema_error_response(exc, self.config.schema_error_status)
        return json_response(body, status)

    async def _json(self, request: web.Request) -> Any:
        """vLLM's validate_json_request, then FastAPI's body parsing (both schema errors, OE1/OX2)."""
        media_type = request.headers.get("Content-Type", "").lower().split(";", 1)[0].strip()
        if media_type != "application/json":
            raise SchemaError([UNSUPPORTED_MEDIA_TYPE])
        raw = await request.read()
        if not raw:
            raise SchemaError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            pos = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise SchemaError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": reason},
                    }
                ]
            ) from None

    def _check_model(self, model: str | None) -> None:
        if model is not None and model not in self.config.served_model_names:
            raise OmniError(404, f"The model `{model}` does not exist.", "NotFoundError")

    def _plan(self, request: SpeechRequest) -> Plan:
        reference = None
        if request.ref_audio is not None:
            try:
                reference = resolve_reference(request.ref_audio, self.config.allowed_local_media_path)
            except ReferenceClipError as exc:
                message = f"Speech generation failed: {exc.message}" if exc.generation_failed else exc.message
                raise OmniError(400, message) from None
            log.info(
                "voice clone: %.1f s reference; the real server encodes it with HiggsAudioV2TokenizerModel "
                "(OS12: $HIGGS_AUDIO_TOKENIZER_PATH or k2-fsa/OmniVoice); [simulator] nothing is loaded",
                reference.seconds,
            )
        talker = self.config.deploy.talker
        max_tokens = (
            request.max_new_tokens if request.max_new_tokens is not None else talker.sampling.max_tokens
        )
        seed = request.seed if request.seed is not None else talker.sampling.seed
        return plan_generation(
            request.input,
            reference,
            request.ref_text,
            max_tokens,
            talker.max_model_len,
            self.config.seed if seed is None else seed,
        )

    async def speech(self, request: web.Request) -> web.StreamResponse:
        rid = f"speech-{uuid.uuid4().hex}"
        now = time.time()
        arrived = take_arrival(request.transport)
        rec = TraceRecord(rid, request.path, now if arrived is None else min(arrived, now), t_handler=now)
        try:
            speech = parse_speech(await self._json(request))
            self._check_model(speech.model)
            rec.stream = speech.is_streaming()
            if speech.is_streaming() and speech.word_timestamps:
                raise OmniError(400, WORD_TIMESTAMPS_STREAMING)
            speech = higgs_validate(speech, self.voices)
            plan = self._plan(speech)
            fail = bool(self.config.error_rate) and self.rng.random() < self.config.error_rate
            gen = _Generation(rid, plan, speech.response_format, await self._pcm_source(plan), fail)
            if speech.is_raw_audio_stream():
                return await self._raw_stream(request, rec, gen)
            if speech.is_sse_stream():
                return await self._sse(request, rec, gen)
            return await self._whole(request, rec, gen)
        except SchemaError as exc:
            rec.status, rec.error = self.config.schema_error_status, str(exc)
            return self._schema_error(exc)
        except OmniError as exc:
            rec.status, rec.error = exc.status, exc.message
            return json_response(exc.body(), exc.status)
        except InternalServerError as exc:
            log.error("Exception in ASGI application: %s", exc)
            rec.status, rec.error = 500, str(exc)
            return internal_server_error()
        except asyncio.CancelledError:
            rec.error = "Client disconnected"
            raise
        finally:
            rec.t_done = time.time()
            if self.trace:
                self.trace.write(rec)

    async def _pcm_source(self, plan: Plan) -> Callable[[Decoded], bytes]:
        timbre = timbre_of(plan.voice_key, plan.seed)
        offset = start_offset(f"{plan.seed}:{plan.voice_key}:{plan.text}")
        await ensure_voice_loop(timbre)

        def pcm(chunk: Decoded) -> bytes:
            return pcm_frames(timbre, offset, chunk.start, chunk.end)

        return pcm

    def _audio_done(self, rec: TraceRecord, frames: int, started: float) -> None:
        seconds = frames / FRAMES_PER_SECOND
        rec.frames, rec.audio_seconds = frames, seconds
        self.metrics.audio_finished(frames * SAMPLES_PER_FRAME, seconds, time.monotonic() - started)

    async def _whole(
        self,
        request: web.Request,
        rec: TraceRecord,
        gen: _Generation,
    ) -> web.StreamResponse:
        """OP1: one file once generation is over (OP5: with one chunk, the whole utterance)."""
        rid, plan, fmt, pcm, fail = gen.rid, gen.plan, gen.fmt, gen.pcm, gen.fail
        started = time.monotonic()
        parts: list[bytes] = []
        try:
            async with contextlib.aclosing(self.pipeline.run(rid, plan, fail)) as chunks:
                async for chunk in chunks:
                    parts.append(pcm(chunk))
            audio = b"".join(parts)
            body = (
                encode_file(audio, fmt)
                if fmt in ("wav", "pcm")
                else await asyncio.to_thread(encode_file, audio, fmt)
            )
        except (GenerationFailed, RuntimeError, ValueError, TypeError) as exc:
            raise OmniError(400, f"Speech generation failed: {exc}") from None  # OX3
        frames = len(audio) // (2 * SAMPLES_PER_FRAME)
        self._audio_done(rec, frames, started)
        resp = web.Response(body=body, headers={"Content-Type": CONTENT_TYPES[fmt]})
        await resp.prepare(request)
        try:
            await resp.write_eof()
            rec.t_first_audio = time.time()
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    async def _stream_start(self, request: web.Request, content_type: str) -> web.StreamResponse:
        # Starlette's StreamingResponse sends the status and headers before the body's first chunk.
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        return resp

    async def _sse(
        self,
        request: web.Request,
        rec: TraceRecord,
        gen: _Generation,
    ) -> web.StreamResponse:
        """OP2: base64 deltas (a WAV stream's first delta is the placeholder header), then done."""
        rid, plan, fmt, pcm, fail = gen.rid, gen.plan, gen.fmt, gen.pcm, gen.fail
        started = time.monotonic()
        resp = await self._stream_start(request, SSE_CONTENT_TYPE)
        first_at: float | None = None
        buffered = worst = 0.0  # player deficit: audio seconds delivered vs. time since the first packet
        frames = 0
        try:
            async with contextlib.aclosing(self.pipeline.run(rid, plan, fail)) as chunks:
                async for chunk in chunks:
                    data = pcm(chunk)
                    now = time.monotonic()
                    if first_at is None:
                        first_at = now
                        rec.t_first_audio = time.time()
                        self.metrics.audio_first_packet(now - started)
                        if fmt == "wav":
                            await resp.write(sse_delta(streaming_wav_header(), fmt))
                    worst = max(worst, (now - first_at) - buffered)
                    buffered += (chunk.end - chunk.start) / FRAMES_PER_SECOND
                    await resp.write(sse_delta(data, fmt))
                    frames = chunk.end
            self._audio_done(rec, frames, started)
            self.metrics.audio_stream_closed(worst)
            await resp.write(sse_done(plan.text_tokens, plan.tokens))
            await resp.write_eof()
        except (GenerationFailed, OmniError) as exc:  # OX4: after the 200, an error event ends the stream
            rec.error = str(exc)
            await resp.write(sse_error(str(exc)))
            await resp.write_eof()
        except ConnectionError:
            rec.error = "client disconnected"
        return resp

    async def _raw_stream(
        self,
        request: web.Request,
        rec: TraceRecord,
        gen: _Generation,
    ) -> web.StreamResponse:
        """OP3: the raw chunks as decoded (WAV: the placeholder header first)."""
        rid, plan, fmt, pcm, fail = gen.rid, gen.plan, gen.fmt, gen.pcm, gen.fail
        started = time.monotonic()
        resp = await self._stream_start(request, CONTENT_TYPES[fmt])
        frames = 0
        try:
            async with contextlib.aclosing(self.pipeline.run(rid, plan, fail)) as chunks:
                async for chunk in chunks:
                    data = pcm(chunk)
                    if rec.t_first_audio is None:
                        rec.t_first_audio = time.time()
                        if fmt == "wav":
                            data = streaming_wav_header() + data
                    await resp.write(data)
                    frames = chunk.end
            self._audio_done(rec, frames, started)
            await resp.write_eof()
        except (GenerationFailed, OmniError) as exc:
            # OX4 (raw stream): the exception ends the body early; the connection closes mid-body.
            rec.error = str(exc)
            log.error("Streaming speech generation failed for %s: %s", rid, exc)
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError:
            rec.error = "client disconnected"
        return resp
