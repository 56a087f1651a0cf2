"""Prometheus text from a server pod -> the few numbers the autoscaler and the status need.

Which samples count depends on the server behind the pod (the operator does not need to be told,
the families say it):

1. vLLM-Omni's pipeline gauges, ``vllm_omni:num_requests_waiting`` and ``vllm_omni:num_requests_running``
   (labels ``{model_name}``; docs/server-contract-omni.md OM1), when the pod has samples of both: the
   queue of the whole two-stage pipeline, what a client waits in.
2. Else, when the ``vllm:*`` queue samples carry a ``stage`` label (vLLM-Omni relabels vLLM's
   ``engine`` as ``stage`` + ``replica``, one series per stage, OM2): stage ``"0"`` only, the talker
   (stage 1, code2wav, decodes what stage 0 produced; adding its queue would count a request twice).
3. Else Boson's fork: vLLM 0.8's V1 engine, whose gauges carry ``{model_name, engine}``
   (``engine="0"``; docs/server-contract.md M1); every sample of a gauge counts, so samples over
   several engines are summed (queues).

The KV-cache usage is ``vllm:kv_cache_usage_perc`` (later vLLM's name, vLLM-Omni's) or
``vllm:gpu_cache_usage_perc`` (the fork's, a 0..1 fraction), averaged over its samples; with
``stage`` labels over stage ``"0"``'s only. Other families (counters with ``_total``/``_created``,
histograms, process metrics) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_CACHE_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
# vLLM-Omni (OM1): the pipeline-wide queue.
OMNI_WAITING = "vllm_omni:num_requests_waiting"
OMNI_RUNNING = "vllm_omni:num_requests_running"
# vLLM-Omni (OM2): the stage whose queue stands for the pod's (the talker).
STAGE_LABEL = "stage"
TALKER_STAGE = "0"


class MetricsParseError(ValueError):
    """The text is not Prometheus exposition format, or lacks the queue gauges."""


@dataclass(frozen=True)
class PodSample:
    """What one pod reported in one scrape."""

    waiting: float
    running: float
    kv_cache: float | None


Samples = dict[str, list[tuple[dict[str, str], float]]]


def _samples(text: str) -> Samples:
    samples: Samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except ValueError as err:  # the parser raises ValueError on malformed lines
        raise MetricsParseError(f"malformed Prometheus text: {err}") from err
    return samples


def _values(samples: Samples, name: str, stage: str | None) -> list[float]:
    return [
        value for labels, value in samples.get(name, []) if stage is None or labels.get(STAGE_LABEL) == stage
    ]


def parse_pod_metrics(text: str) -> PodSample:
    """Parse one pod's /metrics body; raise MetricsParseError if the queue gauges are missing."""
    samples = _samples(text)
    staged = any(STAGE_LABEL in labels for name in (WAITING, RUNNING) for labels, _ in samples.get(name, []))
    stage = TALKER_STAGE if staged else None
    kv_cache = None
    for name in KV_CACHE_NAMES:
        values = _values(samples, name, stage)
        if values:
            kv_cache = sum(values) / len(values)
            break
    if samples.get(OMNI_WAITING) and samples.get(OMNI_RUNNING):  # 1. vLLM-Omni's pipeline gauges
        waiting, running = _values(samples, OMNI_WAITING, None), _values(samples, OMNI_RUNNING, None)
        return PodSample(waiting=sum(waiting), running=sum(running), kv_cache=kv_cache)
    # 2. vLLM's gauges of vLLM-Omni's stage 0, or 3. every sample (Boson's fork)
    waiting, running = _values(samples, WAITING, stage), _values(samples, RUNNING, stage)
    missing = [name for name, values in ((WAITING, waiting), (RUNNING, running)) if not values]
    if missing:
        where = f' with stage="{TALKER_STAGE}"' if staged else ""
        raise MetricsParseError(f"metrics lack {', '.join(missing)}{where}")
    return PodSample(waiting=sum(waiting), running=sum(running), kv_cache=kv_cache)
