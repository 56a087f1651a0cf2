"""Prometheus metrics with vLLM's names, types, labels and buckets, in a registry of our own.

The fork (vLLM 0.8) labels every series with ``model_name`` and calls the KV gauge
``vllm:gpu_cache_usage_perc``; current vLLM adds an ``engine`` label and calls it
``vllm:kv_cache_usage_perc``. Both gauges are fractions from 0 to 1.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = (
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
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)


class SimMetrics:
    def __init__(self, model_name: str, generation: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"model_name": model_name}
        if generation == "current":
            labels["engine"] = "0"
        names = list(labels)
        values = list(labels.values())
        reg = self.registry
        kv_name = "vllm:gpu_cache_usage_perc" if generation == "fork" else "vllm:kv_cache_usage_perc"
        self.kv_gauge_name = kv_name
        self.running = Gauge(
            "vllm:num_requests_running", "Number of requests running on the GPU.", names, registry=reg
        ).labels(*values)
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", names, registry=reg
        ).labels(*values)
        self.kv_usage = Gauge(
            kv_name, "KV-cache usage. 1 means 100 percent usage.", names, registry=reg
        ).labels(*values)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            names,
            buckets=TTFT_BUCKETS,
            registry=reg,
        ).labels(*values)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            names,
            buckets=E2E_BUCKETS,
            registry=reg,
        ).labels(*values)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", names, registry=reg
        ).labels(*values)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", names, registry=reg
        ).labels(*values)
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*names, "finished_reason"],
            registry=reg,
        )
        self.success = _Partial(success, values)

    def set_queue(self, running: int, waiting: int, kv_fraction: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(min(max(kv_fraction, 0.0), 1.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Partial:
    """``labels(reason)`` for a metric whose other label values are fixed."""

    def __init__(self, metric: Counter, fixed: list[str]) -> None:
        self._metric = metric
        self._fixed = fixed

    def labels(self, *rest: str) -> Counter:
        return self._metric.labels(*self._fixed, *rest)
