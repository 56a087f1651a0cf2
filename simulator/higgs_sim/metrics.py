"""Prometheus metrics with the V1 engine's names, types, labels and buckets, in a registry of our own.

Boson's fork labels every series ``{model_name, engine="0"}`` (vLLM's V1 PrometheusStatLogger,
``vllm/v1/metrics/loggers.py`` lines 117-293 at boson-ai/higgs-audio-vllm@892184b4) and calls the
KV-cache gauge ``vllm:gpu_cache_usage_perc`` (a fraction from 0 to 1). Histogram buckets are the fork's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from higgs_sim.engine import Job

FORK_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
FORK_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
FINISH_REASONS = ("stop", "length", "abort")  # V1's FinishReason values
ENGINE_INDEX = "0"


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class _Counting(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Labelled(Protocol):
    def labels(self, *values: str) -> _Counting: ...


class RequestSeries(Protocol):
    """The series V1 records when a request ends (what :func:`record_finished` fills)."""

    @property
    def success(self) -> _Labelled: ...
    @property
    def e2e(self) -> _Observer: ...
    @property
    def request_prompt_tokens(self) -> _Observer: ...
    @property
    def request_generation_tokens(self) -> _Observer: ...
    @property
    def inference_time(self) -> _Observer: ...
    @property
    def prefill_time(self) -> _Observer: ...
    @property
    def decode_time(self) -> _Observer: ...


class EngineMetrics(RequestSeries, Protocol):
    """What ``higgs_sim.engine.Engine`` records: :class:`SimMetrics` (Boson's server) and one stage of
    the vLLM-Omni emulation (``higgs_sim.omni.metrics.StageMetrics``) both provide it."""

    @property
    def queue_time(self) -> _Observer: ...
    @property
    def ttft(self) -> _Observer: ...
    @property
    def prompt_tokens(self) -> _Counting: ...
    @property
    def generation_tokens(self) -> _Counting: ...
    def set_queue(self, running: int, waiting: int, kv_fraction: float) -> None: ...
    def observe_tpot(self, seconds: float, tokens: int) -> None: ...
    def finished(self, job: Job, now: float) -> None: ...


def record_finished(series: RequestSeries, job: Job, now: float) -> None:
    """A request's end-of-life series, as V1 records them when it finishes."""
    series.success.labels(job.finish_reason).inc()
    series.e2e.observe(now - job.arrival)
    series.request_prompt_tokens.observe(job.prompt_tokens)
    series.request_generation_tokens.observe(job.generated)
    admitted = job.admitted_at if job.admitted_at is not None else job.arrival
    first = job.first_token_at if job.first_token_at is not None else now
    series.inference_time.observe(now - admitted)
    series.prefill_time.observe(first - admitted)
    series.decode_time.observe(now - first)


def observe_many(histogram: _Observer, value: float, count: int) -> None:
    for _ in range(count):  # ~0.5 us each: cheap next to a step's other work
        histogram.observe(value)


def buckets_1_2_5(limit: int) -> tuple[int, ...]:
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to ``limit``."""
    out: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > limit:
                return tuple(out)
            out.append(value)
        exponent += 1


class SimMetrics:
    def __init__(self, model_name: str, max_model_len: int = 8192) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._names = ["model_name", "engine"]
        self._values = [model_name, ENGINE_INDEX]
        latency = FORK_LATENCY_BUCKETS
        self.running = self._gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = self._gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_usage = self._gauge(
            "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage."
        )
        self.preemptions = self._counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        self.prompt_tokens = self._counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = self._counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*self._names, "finished_reason"],
            registry=self.registry,
        )
        self.success = _Partial(success, self._values)
        for reason in FINISH_REASONS:
            self.success.labels(reason)  # V1 creates every reason's series up front
        token_buckets = buckets_1_2_5(max_model_len)
        self.request_prompt_tokens = self._histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets
        )
        self.request_generation_tokens = self._histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", token_buckets
        )
        self.ttft = self._histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            FORK_TTFT_BUCKETS,
        )
        self.tpot = self._histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            TPOT_BUCKETS,
        )
        self.e2e = self._histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", latency
        )
        self.queue_time = self._histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            latency,
        )
        self.inference_time = self._histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            latency,
        )
        self.prefill_time = self._histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            latency,
        )
        self.decode_time = self._histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            latency,
        )

    def _gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(name, doc, self._names, registry=self.registry).labels(*self._values)

    def _counter(self, name: str, doc: str) -> Counter:
        return Counter(name, doc, self._names, registry=self.registry).labels(*self._values)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, self._names, buckets=buckets, registry=self.registry).labels(
            *self._values
        )

    def set_queue(self, running: int, waiting: int, kv_fraction: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(min(max(kv_fraction, 0.0), 1.0))

    def observe_tpot(self, seconds: float, tokens: int) -> None:
        """One step's interval for each of its tokens that was not a request's first (V1 observes
        every inter-token gap)."""
        observe_many(self.tpot, seconds, tokens)

    def finished(self, job: Job, now: float) -> None:
        record_finished(self, job, now)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Partial:
    """``labels(reason)`` for a metric whose other label values are fixed."""

    def __init__(self, metric: Counter, fixed: list[str]) -> None:
        self._metric = metric
        self._fixed = fixed

    def labels(self, *rest: str) -> Counter:
        return self._metric.labels(*self._fixed, *rest)
