"""Prometheus text from a server pod -> the few numbers the autoscaler and the status need.

The server is Boson's fork: vLLM 0.8's V1 engine, whose gauges carry the labels
``{model_name, engine}`` (``engine="0"``; docs/server-contract.md M1) and name the KV-cache gauge
``vllm:gpu_cache_usage_perc`` (a 0..1 fraction). The later vLLM name of that gauge,
``vllm:kv_cache_usage_perc``, is read too when present; that supports no other server (vLLM-Omni's
metrics differ in more than this name, docs/server-contract-omni.md D8). Labels are not matched: every
sample of a gauge counts, so samples of one gauge over several engines are summed (queues) or
averaged (cache usage).
Other families (counters with ``_total``/``_created``, histograms, process metrics) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_CACHE_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


class MetricsParseError(ValueError):
    """The text is not Prometheus exposition format, or lacks the queue gauges."""


@dataclass(frozen=True)
class PodSample:
    """What one pod reported in one scrape."""

    waiting: float
    running: float
    kv_cache: float | None


def _gauge_values(text: str) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values.setdefault(sample.name, []).append(float(sample.value))
    except ValueError as err:  # the parser raises ValueError on malformed lines
        raise MetricsParseError(f"malformed Prometheus text: {err}") from err
    return values


def parse_pod_metrics(text: str) -> PodSample:
    """Parse one pod's /metrics body; raise MetricsParseError if the queue gauges are missing."""
    values = _gauge_values(text)
    missing = [name for name in (WAITING, RUNNING) if name not in values]
    if missing:
        raise MetricsParseError(f"metrics lack {', '.join(missing)}")
    kv_cache = None
    for name in KV_CACHE_NAMES:
        if values.get(name):
            kv_cache = sum(values[name]) / len(values[name])
            break
    return PodSample(waiting=sum(values[WAITING]), running=sum(values[RUNNING]), kv_cache=kv_cache)
