"""The simulated engine: continuous batching in one asyncio task.

Requests wait in a FIFO queue until a sequence slot (``--max-num-seqs``) and KV-cache room (prompt
plus planned frames) are free. Every step, newly admitted requests are prefilled and every running
request gains one audio frame; the step lasts the timing model's step time (plus prefill time).
Steps are paced against absolute deadlines so the produced throughput matches the model even when
the event loop wakes late. Handlers receive :class:`Chunk` notices (frame ranges) and synthesize
the audio bytes themselves, so a step costs only a few integer updates per running stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from higgs_sim.metrics import SimMetrics
from higgs_sim.timing import StepTimeModel

log = logging.getLogger("higgs_sim.engine")

FIRST_CHUNK_FRAMES = 32  # Boson's server buffers ~32 frames before the first audio chunk
CHUNK_FRAMES = 25  # then one chunk per second of audio
MAX_LAG_SECONDS = 0.5  # if the loop falls further behind than this, stop trying to catch up


@dataclass(frozen=True)
class Chunk:
    start: int  # first frame (inclusive)
    end: int  # last frame (exclusive)
    final: bool


@dataclass(eq=False)
class Job:
    request_id: str
    prompt_tokens: int
    frames: int
    finish_reason: str
    chunked: bool = True  # False: a single notice when all frames are done
    arrival: float = field(default_factory=time.monotonic)
    generated: int = 0
    emitted: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    aborted: bool = False
    chunks: asyncio.Queue[Chunk] = field(default_factory=asyncio.Queue)

    @property
    def kv_need(self) -> int:
        return self.prompt_tokens + self.frames

    def next_boundary(self) -> int:
        if not self.chunked:
            return self.frames
        first = FIRST_CHUNK_FRAMES if self.emitted == 0 else self.emitted + CHUNK_FRAMES
        return min(first, self.frames)


class Engine:
    """Continuous-batching scheduler and step loop."""

    def __init__(self, model: StepTimeModel, max_num_seqs: int, kv_budget: int, metrics: SimMetrics) -> None:
        self.model = model
        self.max_num_seqs = max_num_seqs
        self.kv_budget = kv_budget
        self.metrics = metrics
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self.kv_reserved = 0
        self.kv_used = 0  # sum of current contexts of running jobs
        self.steps = 0
        self.frames_total = 0
        self.prompt_tokens_total = 0
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
        if job.finished_at is not None or job.aborted:
            return
        job.aborted = True
        if job in self.running:
            self._release(job)
            self.running.remove(job)
        elif job in self.waiting:
            self.waiting.remove(job)
        self._publish()

    def _release(self, job: Job) -> None:
        self.kv_reserved -= job.kv_need
        self.kv_used -= job.prompt_tokens + job.generated

    def _admit(self) -> list[Job]:
        admitted: list[Job] = []
        while self.waiting and len(self.running) < self.max_num_seqs:
            job = self.waiting[0]
            if self.kv_reserved + job.kv_need > self.kv_budget:
                break  # FIFO: the head waits for room, as vLLM's scheduler does
            self.waiting.popleft()
            self.kv_reserved += job.kv_need
            self.kv_used += job.prompt_tokens
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
        produced = 0
        for job in self.running:
            if job.aborted:
                continue
            job.generated += 1
            produced += 1
            if job.first_token_at is None:
                job.first_token_at = now
                self.metrics.ttft.observe(now - job.arrival)
            if job.generated >= job.next_boundary():
                final = job.generated >= job.frames
                job.chunks.put_nowait(Chunk(job.emitted, job.generated, final))
                job.emitted = job.generated
                if final:
                    job.finished_at = now
                    self.kv_reserved -= job.kv_need
                    self.kv_used -= job.prompt_tokens + job.generated - 1
                    self.metrics.e2e.observe(now - job.arrival)
                    self.metrics.success.labels(job.finish_reason).inc()
                    continue
            still.append(job)
        self.kv_used += len(still)
        self.running = still
        self.steps += 1
        self.frames_total += produced
        self.metrics.generation_tokens.inc(produced)
        self._publish()
