"""The simulated engine: continuous batching in one asyncio task, one audio token per stream per step.

Requests wait in a FIFO queue until a sequence slot (``--max-num-seqs``) and KV-cache room (prompt
plus planned tokens) are free. Every step, newly admitted requests are prefilled and every running
request gains one token; the step lasts the timing model's step time (plus prefill time). Steps are
paced against absolute deadlines so the produced throughput matches the model even when the event
loop wakes late. Handlers get :class:`Chunk` notices (frame ranges) on ``Job.chunks``, or, for a
``per_token`` job, wake-ups as tokens are made (``Job.wait_progress``: at once for the first token,
a chunk and the end, within ``QUIET_WAKE_SECONDS`` for the others); they synthesize the audio bytes
themselves, so a step costs only a few integer updates per running stream.

Tokens and frames (Boson's streaming decoder: ``vllm/entrypoints/bosonai/serving_audio.py``
lines 308-311 and 360-445, ``serving_chat.py`` lines 371-437, ``utils.py`` lines 17-68, and the
sampler in ``vllm/model_executor/models/higgs_audio.py``): each decode step emits one row of 8
codebook tokens under a delay pattern. The first row is the audio-stream bos; codebook k lags k
rows, so F frames need F + 7 rows; an all-eos row closes the stream and the step after it emits
the text token ``<|audio_eos|>``, which ends the request. So a request that stops by itself runs
F + 10 steps (tokens). Cut by ``max_tokens`` after T steps, it decodes T - 8 frames (bos dropped,
7 delay rows), none when T <= 10 (``token2wav`` skips a cache of at most 8 + 2 rows).

Cadence (chunk size 25 = the tokenizer's 25 tokens per second, overlap 25): the first chunk is
decoded when 25 + 8 - 1 = 32 rows are cached; it cuts 18 rows (the bos row and 17 frames, 0.68 s).
The 14 rows left need 36 more to reach chunk + overlap = 50 rows, so the second chunk comes at step
68, and every 25 steps after that, 25 frames each. The rest is decoded at the end: in the step that
ends a stopped request (its ``<|audio_eos|>`` step has no audio rows), or after the last step of a
request cut by ``max_tokens`` (the chat stream then sends it after the ``finish_reason`` event).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from higgs_sim.metrics import EngineMetrics
from higgs_sim.timing import StepTimeModel

log = logging.getLogger("higgs_sim.engine")

CODEBOOKS = 8
CHUNK_TOKENS = 25  # audio_chunk_size default: the tokenizer's tokens per second
OVERLAP_TOKENS = 25  # audio_chunk_overlap_size default, the same
FIRST_CHUNK_TOKENS = CHUNK_TOKENS + CODEBOOKS - 1  # 32 rows cached before the first decode
FIRST_CUT_TOKENS = CHUNK_TOKENS - CODEBOOKS + 1  # 18 rows consumed by the first chunk
FIRST_CHUNK_FRAMES = FIRST_CUT_TOKENS - 1  # 17: the bos row carries no audio
SECOND_CHUNK_TOKENS = FIRST_CUT_TOKENS + CHUNK_TOKENS + OVERLAP_TOKENS  # 68
STOP_OVERHEAD_TOKENS = CODEBOOKS + 2  # bos row, 7 delay rows, the all-eos row, <|audio_eos|>
LENGTH_OVERHEAD_TOKENS = CODEBOOKS  # bos row and 7 delay rows
MIN_DECODED_TOKENS = CODEBOOKS + 3  # token2wav skips a cache of <= codebooks + 2 rows
MAX_LAG_SECONDS = 0.5  # if the loop falls further behind than this, stop trying to catch up
# A per-token job's handler is woken at once for its first token, a chunk and its end; tokens without
# audio wait until this long since the last wake-up, so a fast engine wakes hundreds of streams a few
# times per frame of audio, not every step (their events are written together, each one intact).
QUIET_WAKE_SECONDS = 0.04


def tokens_for_frames(frames: int) -> int:
    """Decode steps of a request that stops by itself after ``frames`` frames of audio."""
    return frames + STOP_OVERHEAD_TOKENS


def frames_for_tokens(tokens: int) -> int:
    """Frames decoded from a request cut by ``max_tokens`` after ``tokens`` steps."""
    return tokens - LENGTH_OVERHEAD_TOKENS if tokens >= MIN_DECODED_TOKENS else 0


@dataclass(frozen=True)
class Chunk:
    start: int  # first frame (inclusive)
    end: int  # last frame (exclusive)
    token: int  # the step (1-based) whose output carries it
    final: bool
    after_finish: bool = False  # decoded after the last step (a request cut by max_tokens)

    @property
    def frames(self) -> int:
        return self.end - self.start


def chunk_plan(tokens: int, frames: int, stopped: bool) -> list[Chunk]:
    """Every chunk of a request, in order; the last is ``final`` (empty when no audio was decoded)."""
    plan: list[Chunk] = []
    # A stopped request's last step is the text token <|audio_eos|>: no chunk boundary there.
    last_audio_token = tokens - 1 if stopped else tokens
    token, end = FIRST_CHUNK_TOKENS, FIRST_CHUNK_FRAMES
    while token <= last_audio_token and end < frames:
        plan.append(Chunk(plan[-1].end if plan else 0, end, token, final=False))
        token = SECOND_CHUNK_TOKENS if len(plan) == 1 else token + CHUNK_TOKENS
        end += CHUNK_TOKENS
    start = plan[-1].end if plan else 0
    plan.append(Chunk(start, max(frames, start), tokens, final=True, after_finish=not stopped))
    return plan


@dataclass(eq=False)
class Job:
    request_id: str
    prompt_tokens: int
    tokens: int  # decode steps to run
    frames: int  # audio frames those steps decode to
    finish_reason: str  # "stop" or "length"
    chunked: bool = True  # False: a single notice when all tokens are done
    per_token: bool = False  # wake the handler after every step instead of queueing chunks
    arrival: float = field(default_factory=time.monotonic)
    generated: int = 0
    admitted_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    aborted: bool = False
    chunks: asyncio.Queue[Chunk] = field(default_factory=asyncio.Queue)
    plan: list[Chunk] = field(init=False)
    next_chunk: int = 0  # index in plan of the next chunk to reach
    woken_at: float = 0.0  # time.monotonic() of the last per-token wake-up
    _waiter: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        stopped = self.finish_reason == "stop"
        if self.chunked:
            self.plan = chunk_plan(self.tokens, self.frames, stopped)
        else:
            self.plan = [Chunk(0, self.frames, self.tokens, final=True, after_finish=not stopped)]

    @property
    def kv_need(self) -> int:
        return self.prompt_tokens + self.tokens

    @property
    def done(self) -> bool:
        return self.finished_at is not None or self.aborted

    async def wait_progress(self, seen: int) -> None:
        """Return once more than ``seen`` tokens exist or the job ended (a per-token job's handler)."""
        if self.generated != seen or self.done:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Engine:
    """Continuous-batching scheduler and step loop."""

    def __init__(
        self, model: StepTimeModel, max_num_seqs: int, kv_budget: int, metrics: EngineMetrics
    ) -> None:
        self.model = model
        self.max_num_seqs = max_num_seqs
        self.kv_budget = kv_budget
        self.metrics = metrics
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self.kv_reserved = 0
        self.kv_used = 0  # sum of current contexts of running jobs
        self.steps = 0
        self.tokens_total = 0
        self.frames_total = 0
        self.prompt_tokens_total = 0
        self._last_step_at: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, on_fatal: Callable[[str], None] | None = None) -> None:
        """Run the step loop; ``on_fatal`` is called if it dies (vLLM's server exits when its engine does)."""
        self._task = asyncio.create_task(self._loop(), name="engine")

        def check(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("engine loop failed", exc_info=task.exception())
                if on_fatal is not None:
                    on_fatal(f"engine loop failed: {task.exception()!r}")

        self._task.add_done_callback(check)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, job: Job) -> None:
        if job.kv_need > self.kv_budget:
            raise ValueError(
                f"request needs {job.kv_need} KV tokens, more than the whole cache ({self.kv_budget})"
            )
        self.waiting.append(job)
        self._publish()
        self._wake.set()

    def abort(self, job: Job) -> None:
        """Drop a job whose client went away (or whose response was cut)."""
        if job.done:
            return
        job.aborted = True
        if job in self.running:
            self._release(job)
            self.running.remove(job)
        elif job in self.waiting:
            self.waiting.remove(job)
        self.metrics.success.labels("abort").inc()
        job.wake()
        self._publish()

    def _release(self, job: Job) -> None:
        self.kv_reserved -= job.kv_need
        self.kv_used -= job.prompt_tokens + job.generated

    def _admit(self) -> list[Job]:
        admitted: list[Job] = []
        now = time.monotonic()
        while self.waiting and len(self.running) < self.max_num_seqs:
            job = self.waiting[0]
            if self.kv_reserved + job.kv_need > self.kv_budget:
                break  # FIFO: the head waits for room, as vLLM's scheduler does
            self.waiting.popleft()
            self.kv_reserved += job.kv_need
            self.kv_used += job.prompt_tokens
            job.admitted_at = now
            self.metrics.queue_time.observe(now - job.arrival)
            self.running.append(job)
            admitted.append(job)
        return admitted

    def _publish(self) -> None:
        self.metrics.set_queue(len(self.running), len(self.waiting), self.kv_used / self.kv_budget)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                self._last_step_at = None
                await self._wake.wait()
                deadline = loop.time()
            admitted = self._admit()
            if not self.running:
                # Nothing fits yet (cannot happen with submit's check, but never spin).
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = len(self.running)
            step = self.model.step_seconds(batch, self.kv_used / batch)
            if admitted:
                new_tokens = sum(j.prompt_tokens for j in admitted)
                step += self.model.prefill_seconds(new_tokens)
                self.prompt_tokens_total += new_tokens
                self.metrics.prompt_tokens.inc(new_tokens)
            deadline += step
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                if delay < -MAX_LAG_SECONDS:
                    deadline = loop.time()
                await asyncio.sleep(0)
            self._advance()

    def _advance(self) -> None:
        now = time.monotonic()
        still: list[Job] = []
        produced = later_tokens = 0
        for job in self.running:
            if job.aborted:
                continue
            job.generated += 1
            produced += 1
            if job.first_token_at is None:
                job.first_token_at = now
                self.metrics.ttft.observe(now - job.arrival)
            else:
                later_tokens += 1
            reached = self._reach_chunks(job)
            if job.generated >= job.tokens:
                self._finish(job, now)
                continue
            if job.per_token and (reached or job.generated == 1 or now - job.woken_at >= QUIET_WAKE_SECONDS):
                job.woken_at = now
                job.wake()
            still.append(job)
        self.kv_used += len(still)
        self.running = still
        self.steps += 1
        self.tokens_total += produced
        self.metrics.generation_tokens.inc(produced)
        if self._last_step_at is not None and later_tokens:
            self.metrics.observe_tpot(now - self._last_step_at, later_tokens)
        self._last_step_at = now
        self._publish()

    def _reach_chunks(self, job: Job) -> bool:
        """Account (and, for a chunked job, queue) the chunks this step completes; True if any."""
        plan = job.plan
        reached = False
        while job.next_chunk < len(plan) and plan[job.next_chunk].token <= job.generated:
            chunk = plan[job.next_chunk]
            job.next_chunk += 1
            self.frames_total += chunk.frames
            reached = True
            if not job.per_token:
                job.chunks.put_nowait(chunk)
        return reached

    def _finish(self, job: Job, now: float) -> None:
        job.finished_at = now
        self.kv_reserved -= job.kv_need
        self.kv_used -= job.prompt_tokens + job.generated - 1
        self.metrics.finished(job, now)
        job.wake()
