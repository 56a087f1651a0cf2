"""The two stages: the talker (stage 0) on the Boson simulator's engine, then code2wav (stage 1).

Stage 0 is ``higgs_sim.engine.Engine`` unchanged: continuous batching with the deploy YAML's
``max_num_seqs`` (4) and a KV budget from its ``gpu_memory_utilization``, step times from the H100
table (``higgs_sim.timing``) times the slowdown. The talker is the same model as Boson's, with the
same delay pattern, so a request that stops by itself after F frames runs F + 10 steps and one cut
by ``max_tokens`` after T steps decodes T - 8 frames (``higgs_sim.engine``).

Generation length (as the Boson simulator, X2 there): about 15 characters of text per second of
speech, at least 0.4 s, capped by stage 0's ``max_tokens`` (the YAML's 1024, or the request's
``max_new_tokens``, OR2) and by the room left in ``max_model_len``.

Stage 1 decodes codes to audio in one forward per request (OP4): with ``async_chunk: false`` it
starts only when stage 0 has finished the whole utterance, so all the audio comes at the end, in
one chunk. Its time is a small per-request decode (:data:`CODE2WAV_FIXED_MS` plus
:data:`CODE2WAV_MS_PER_FRAME` per frame, times the slowdown; not calibrated: no measurement of the
real codec exists here) in one of stage 1's ``max_num_seqs`` slots. With ``async_chunk: true``
(UNCONFIRMED cadence, OP4 describes only false) stage 1 decodes every ``codec_chunk_frames``
frames as stage 0 makes them (a frame exists once its 8 delayed codebook rows are out).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from higgs_sim.audio import FRAMES_PER_SECOND
from higgs_sim.engine import CODEBOOKS, Engine, Job, frames_for_tokens, tokens_for_frames
from higgs_sim.omni.deploy import DeployConfig
from higgs_sim.omni.errors import OmniError
from higgs_sim.omni.metrics import OmniMetrics
from higgs_sim.omni.requests import Reference
from higgs_sim.timing import StepTimeModel

log = logging.getLogger("higgs_sim.omni.pipeline")

GIB = 1024**3
TALKER_WEIGHT_BYTES = 11.5e9  # the 3B generation model in bf16 (the Boson simulator's figure)
KV_BYTES_PER_TOKEN = 112 * 1024  # same backbone as Boson's model
CODE2WAV_FIXED_MS = 4.0
CODE2WAV_MS_PER_FRAME = 0.06  # 1.5 ms per second of audio
CHARS_PER_SECOND_OF_SPEECH = 15.0
MIN_FRAMES = 10
CHARS_PER_TEXT_TOKEN = 4.0
TOKENS_PER_MESSAGE = 8  # chat-template overhead per message
SYSTEM_PROMPT = "Generate audio following instruction."  # higgs_audio_v2_tokenizer.py
SMART_VOICE = "smart-voice"  # OR5: no reference, the model picks its own voice
CODE_BYTES = 8  # int64 codes handed from stage 0 to stage 1 (transfer metrics; an estimate)
TRANSFER_SECONDS = 0.0005  # simulated shared-memory hop time


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TEXT_TOKEN)


def frames_for_text(text: str) -> int:
    """The Boson simulator's rule (higgs_sim.protocol.frames_for_text): 15 characters per second."""
    return max(MIN_FRAMES, math.ceil(len(text) / CHARS_PER_SECOND_OF_SPEECH * FRAMES_PER_SECOND))


def kv_budget_tokens(gpu_memory_utilization: float, gpu_memory_gib: float) -> int:
    free = gpu_memory_utilization * gpu_memory_gib * GIB - TALKER_WEIGHT_BYTES
    return max(int(free // KV_BYTES_PER_TOKEN), 0)


@dataclass(frozen=True)
class Plan:
    text: str
    voice_key: str  # the timbre: SMART_VOICE, or the reference clip's digest
    seed: int
    text_tokens: int  # usage: input_tokens
    prompt_tokens: int
    tokens: int  # stage-0 decode steps
    frames: int  # audio frames they decode to
    finish_reason: str  # "stop" or "length"


def plan_generation(
    text: str,
    reference: Reference | None,
    ref_text: str | None,
    max_tokens: int | None,
    max_model_len: int,
    seed: int,
) -> Plan:
    """Prompt size, steps and frames of one request (raises OmniError 400 for a prompt too long)."""
    prompt = 3 * TOKENS_PER_MESSAGE + text_tokens(SYSTEM_PROMPT) + text_tokens(text)
    voice_key = SMART_VOICE
    if reference is not None:
        # Voice clone: the reference transcript (user) and its codes (assistant) precede the text.
        prompt += 2 * TOKENS_PER_MESSAGE + text_tokens(ref_text or "")
        prompt += math.ceil(reference.seconds * FRAMES_PER_SECOND) + 2
        voice_key = "clone:" + reference.digest
    if prompt >= max_model_len:
        raise OmniError(
            400,
            f"The decoder prompt (length {prompt}) is longer than the maximum model length of {max_model_len}. "
            "Make sure that `max_model_len` is no smaller than the number of text tokens.",
        )
    frames = frames_for_text(text)
    tokens = tokens_for_frames(frames)
    room = max_model_len - prompt
    cap = room if max_tokens is None else min(max_tokens, room)
    if tokens <= cap:
        return Plan(text, voice_key, seed, text_tokens(text), prompt, tokens, frames, "stop")
    return Plan(
        text, voice_key, seed, text_tokens(text), prompt, cap, min(frames, frames_for_tokens(cap)), "length"
    )


@dataclass(frozen=True)
class Decoded:
    """Frames [start, end) decoded by code2wav; ``final`` marks the request's last chunk."""

    start: int
    end: int
    final: bool


class GenerationFailed(Exception):
    """A simulated failure inside generation (``--sim-error-rate``)."""


class Pipeline:
    def __init__(self, deploy: DeployConfig, slowdown: float, kv_budget: int, metrics: OmniMetrics) -> None:
        self.deploy = deploy
        self.slowdown = slowdown
        self.metrics = metrics
        self.stage0 = metrics.stages["0"]
        self.stage1 = metrics.stages["1"]
        self.engine = Engine(StepTimeModel(slowdown), deploy.talker.max_num_seqs, kv_budget, self.stage0)
        self.stage0.on_queue.append(lambda _running, _waiting: self._publish())
        self.c2w_slots = asyncio.Semaphore(deploy.code2wav.max_num_seqs)
        self.c2w_waiting = 0
        self.c2w_running = 0
        self.c2w_tokens = 0  # stage-1 prompt tokens in flight (its KV gauge)
        self.inflight = 0
        self.frames_total = 0

    def start(self, on_fatal: Callable[[str], None] | None = None) -> None:
        self.engine.start(on_fatal)
        self._publish()

    async def stop(self) -> None:
        await self.engine.stop()

    def code2wav_seconds(self, frames: int) -> float:
        return (CODE2WAV_FIXED_MS + CODE2WAV_MS_PER_FRAME * frames) * self.slowdown / 1000.0

    def _publish(self) -> None:
        waiting = len(self.engine.waiting)
        self.metrics.set_pipeline_queue(max(self.inflight - waiting, 0), waiting)
        capacity = self.deploy.code2wav.max_num_seqs * self.deploy.code2wav.max_model_len
        self.stage1.running.set(self.c2w_running)
        self.stage1.waiting.set(self.c2w_waiting)
        self.stage1.kv_usage.set(min(self.c2w_tokens / capacity, 1.0) if capacity else 0.0)

    async def _code2wav(self, frames: int, arrival: float, first: bool, last: bool) -> None:
        """One code2wav forward in one of stage 1's slots, with its ``vllm:*{stage="1"}`` series."""
        queued = time.monotonic()
        self.c2w_waiting += 1
        self._publish()
        try:
            await self.c2w_slots.acquire()
        finally:
            self.c2w_waiting -= 1
        started = time.monotonic()
        tokens = CODEBOOKS * frames  # its prefill: num_codebooks x num_frames (yaml)
        self.c2w_running += 1
        self.c2w_tokens += tokens
        self._publish()
        try:
            await asyncio.sleep(self.code2wav_seconds(frames))
        finally:
            self.c2w_running -= 1
            self.c2w_tokens -= tokens
            self.c2w_slots.release()
            self._publish()
        now = time.monotonic()
        m = self.stage1
        m.queue_time.observe(started - queued)
        m.prompt_tokens.inc(tokens)
        m.generation_tokens.inc(1)
        m.request_prompt_tokens.observe(tokens)
        if first:
            m.ttft.observe(now - arrival)
        if last:
            m.success.labels("stop").inc()
            m.request_generation_tokens.observe(1)
            m.e2e.observe(now - arrival)
            m.inference_time.observe(now - started)
            m.prefill_time.observe(now - started)
            m.decode_time.observe(0.0)

    async def run(self, request_id: str, plan: Plan, fail: bool = False) -> AsyncGenerator[Decoded, None]:
        """Generate one request: yields the decoded chunks in order, the last one ``final``."""
        arrival = time.monotonic()
        job = Job(
            request_id,
            plan.prompt_tokens,
            plan.tokens,
            plan.frames,
            plan.finish_reason,
            chunked=False,
            per_token=self.deploy.async_chunk,
        )
        try:
            self.engine.submit(job)
        except ValueError as exc:
            raise OmniError(400, str(exc)) from None
        self.inflight += 1
        self._publish()
        completed = False
        try:
            if self.deploy.async_chunk:
                async for chunk in self._streamed(job, plan, fail):
                    yield chunk
            else:
                await job.chunks.get()  # stage 0 finished the whole utterance
                handed = time.monotonic()
                self.metrics.transfer(
                    plan.frames * CODEBOOKS * CODE_BYTES,
                    TRANSFER_SECONDS,
                    TRANSFER_SECONDS,
                    2 * TRANSFER_SECONDS,
                )
                if fail:
                    raise GenerationFailed("simulated engine error in stage 1 (code2wav) (--sim-error-rate)")
                await self._code2wav(plan.frames, handed, first=True, last=True)
                self.frames_total += plan.frames
                yield Decoded(0, plan.frames, final=True)
            completed = True
        finally:
            self.engine.abort(job)  # no-op once finished
            self.inflight -= 1
            self._publish()
            total_prompt = plan.prompt_tokens + CODEBOOKS * plan.frames
            self.metrics.request_finished(
                plan.finish_reason if completed else "abort",
                time.monotonic() - arrival,
                total_prompt if completed else 0,
                job.generated + 1 if completed else 0,
            )

    async def _streamed(self, job: Job, plan: Plan, fail: bool) -> AsyncGenerator[Decoded, None]:
        """async_chunk: true: code2wav decodes codec_chunk_frames at a time as the frames appear."""
        chunk = self.deploy.codec_chunk_frames
        sent = seen = 0
        handed = time.monotonic()
        while True:
            await job.wait_progress(seen)
            seen = job.generated
            done = job.finished_at is not None
            if job.aborted:
                return
            ready = plan.frames if done else min(plan.frames, max(0, seen - CODEBOOKS))
            if done and fail:
                raise GenerationFailed("simulated engine error in stage 1 (code2wav) (--sim-error-rate)")
            while ready - sent >= chunk or (done and ready > sent):
                end = min(ready, sent + chunk)
                last = done and end == plan.frames
                self.metrics.transfer(
                    (end - sent) * CODEBOOKS * CODE_BYTES,
                    TRANSFER_SECONDS,
                    TRANSFER_SECONDS,
                    2 * TRANSFER_SECONDS,
                )
                await self._code2wav(end - sent, handed, first=sent == 0, last=last)
                self.frames_total += end - sent
                yield Decoded(sent, end, final=last)
                sent = end
            if done:
                if plan.frames == 0:
                    yield Decoded(0, 0, final=True)
                return
