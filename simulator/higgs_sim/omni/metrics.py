"""``/metrics``: vLLM-Omni's ``vllm_omni:*`` families (OM1) and vLLM's ``vllm:*`` relabelled per stage (OM2).

OM1 (``vllm_omni/metrics/{definitions,prometheus,modality}.py``): pipeline gauges and counters
labelled ``{model_name}`` (``num_requests_running``, ``num_requests_waiting``,
``requests_success_total{finished_reason}``, ``e2e_request_latency_s``, ``prompt_tokens_total``,
``generation_tokens_total``); audio families labelled ``{model_name, stage, replica}``; transfer
families labelled by hop. OM2: each upstream ``vllm:*`` family has ``engine`` replaced by ``stage`` +
``replica`` (stage ``"0"`` the talker, ``"1"`` code2wav, replica ``"0"``), so every name has one
series per stage. Which ``vllm:*`` families vLLM 0.25 registers is UNCONFIRMED: the V1 logger's core
set is used, with vLLM 0.2x's names (``kv_cache_usage_perc``, ``inter_token_latency_seconds``).
OM3: ``--disable-log-stats`` leaves the ``vllm:*`` wrap out and the ``vllm_omni:*`` families empty.

The per-stage object provides ``higgs_sim.metrics.EngineMetrics``, what ``higgs_sim.engine.Engine``
records, so stage 0 runs on the same engine as Boson's simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from higgs_sim.metrics import (
    FINISH_REASONS,
    FORK_LATENCY_BUCKETS,
    FORK_TTFT_BUCKETS,
    TPOT_BUCKETS,
    buckets_1_2_5,
    observe_many,
    record_finished,
)

if TYPE_CHECKING:
    from higgs_sim.engine import Job

STAGES = ("0", "1")  # the talker, code2wav
REPLICA = "0"
# vllm_omni/metrics/definitions.py
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
SECONDS_FAST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
RTF_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 5.0, 10.0)
BYTES_BUCKETS = (1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456)
CONTINUITY_THRESHOLD_MS = 100  # AUDIO_CONTINUITY_DEFAULT_THRESHOLD_S
# vLLM V1's buckets (vllm/v1/metrics/loggers.py): those of Boson's 0.8 fork, with larger ones added since.
TTFT_BUCKETS = (*FORK_TTFT_BUCKETS, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (*TPOT_BUCKETS, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (*FORK_LATENCY_BUCKETS, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class _Null:
    """A metric child that records nothing (stats off)."""

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def labels(self, *values: str) -> _Null:
        return self


NULL = _Null()


class StageMetrics:
    """One stage's ``vllm:*`` series (labels ``model_name, stage, replica``)."""

    def __init__(
        self, registry: CollectorRegistry | None, families: dict[str, Any], model: str, stage: str
    ) -> None:
        self.enabled = registry is not None
        values = (model, stage, REPLICA)

        def child(name: str) -> Any:
            return families[name].labels(*values) if self.enabled else NULL

        self.running = child("vllm:num_requests_running")
        self.waiting = child("vllm:num_requests_waiting")
        self.kv_usage = child("vllm:kv_cache_usage_perc")
        self.preemptions = child("vllm:num_preemptions")
        self.prompt_tokens = child("vllm:prompt_tokens")
        self.generation_tokens = child("vllm:generation_tokens")
        self.ttft = child("vllm:time_to_first_token_seconds")
        self.itl = child("vllm:inter_token_latency_seconds")
        self.e2e = child("vllm:e2e_request_latency_seconds")
        self.queue_time = child("vllm:request_queue_time_seconds")
        self.inference_time = child("vllm:request_inference_time_seconds")
        self.prefill_time = child("vllm:request_prefill_time_seconds")
        self.decode_time = child("vllm:request_decode_time_seconds")
        self.request_prompt_tokens = child("vllm:request_prompt_tokens")
        self.request_generation_tokens = child("vllm:request_generation_tokens")
        success = families["vllm:request_success"] if self.enabled else None
        self.success = _Reasons(success, values)
        for reason in FINISH_REASONS:
            self.success.labels(reason)  # V1 creates every reason's series up front
        self.on_queue: list[Any] = []  # callbacks(running, waiting) for the pipeline-level gauges

    # --- the interface higgs_sim.engine.Engine calls ---

    def set_queue(self, running: int, waiting: int, kv_fraction: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(min(max(kv_fraction, 0.0), 1.0))
        for callback in self.on_queue:
            callback(running, waiting)

    def observe_tpot(self, seconds: float, tokens: int) -> None:
        observe_many(self.itl, seconds, tokens)

    def finished(self, job: Job, now: float) -> None:
        record_finished(self, job, now)


class _Reasons:
    def __init__(self, family: Counter | None, fixed: tuple[str, ...]) -> None:
        self._family = family
        self._fixed = fixed

    def labels(self, *values: str) -> Any:
        """The series of one finish reason (the model, stage and replica labels are fixed)."""
        return NULL if self._family is None else self._family.labels(*self._fixed, *values)


class OmniMetrics:
    """The server's registry: process collectors, ``vllm_omni:*``, and ``vllm:*`` per stage."""

    def __init__(self, model_name: str, log_stats: bool, max_model_len: int) -> None:
        self.model = model_name
        self.log_stats = log_stats
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)  # the real server uses prometheus_client's default registry
        reg = self.registry
        m, stage_labels = ["model_name"], ["model_name", "stage", "replica"]
        self.p_running = Gauge(
            "vllm_omni:num_requests_running",
            "Number of requests currently running across all pipeline stages.",
            m,
            registry=reg,
        )
        self.p_waiting = Gauge(
            "vllm_omni:num_requests_waiting", "Number of requests waiting to be scheduled.", m, registry=reg
        )
        self.p_success = Counter(
            "vllm_omni:requests_success",
            "Total requests by completion reason (stop / length / abort / ...).",
            ["model_name", "finished_reason"],
            registry=reg,
        )
        self.p_e2e = Histogram(
            "vllm_omni:e2e_request_latency_s",
            "Pipeline-global end-to-end request latency in seconds (user arrival to complete response).",
            m,
            buckets=SECONDS_BUCKETS,
            registry=reg,
        )
        self.p_prompt = Counter(
            "vllm_omni:prompt_tokens",
            "Total prompt (input) tokens processed across all pipeline stages.",
            m,
            registry=reg,
        )
        self.p_generation = Counter(
            "vllm_omni:generation_tokens",
            "Total generation (output) tokens produced across all pipeline stages.",
            m,
            registry=reg,
        )
        self.a_ttfp = Histogram(
            "vllm_omni:audio_ttfp_s",
            "Time from request arrival to first audio packet/frame, in seconds.",
            stage_labels,
            buckets=SECONDS_BUCKETS,
            registry=reg,
        )
        self.a_duration = Histogram(
            "vllm_omni:audio_duration_s",
            "Generated audio content duration in seconds (audio_frames / sample_rate).",
            stage_labels,
            buckets=SECONDS_BUCKETS,
            registry=reg,
        )
        self.a_rtf = Histogram(
            "vllm_omni:audio_rtf",
            "Audio real-time factor (stage_gen_time_s / audio_duration_s); streaming TTS requires < 1.",
            stage_labels,
            buckets=RTF_BUCKETS,
            registry=reg,
        )
        self.a_frames = Counter(
            "vllm_omni:audio_frames", "Cumulative audio frame count (samples).", stage_labels, registry=reg
        )
        self.a_underrun = Histogram(
            "vllm_omni:audio_underrun_s",
            "Per-request worst-case player-deficit in seconds.",
            stage_labels,
            buckets=SECONDS_FAST_BUCKETS,
            registry=reg,
        )
        self.a_continuity = Counter(
            "vllm_omni:audio_continuity_ok",
            "Incremented when the request's worst underrun stayed below threshold_ms.",
            [*stage_labels, "threshold_ms"],
            registry=reg,
        )
        self.a_skipped = Counter(
            "vllm_omni:audio_skipped_requests",
            "Silent-loss counter: code2wav returned 200 OK with empty audio.",
            [*stage_labels, "reason"],
            registry=reg,
        )
        hop = ["model_name", "from_stage", "from_replica", "to_stage", "to_replica"]
        self.t_size = Histogram(
            "vllm_omni:transfer_size_bytes",
            "Cross-stage transfer payload size.",
            hop,
            buckets=BYTES_BUCKETS,
            registry=reg,
        )
        self.t_tx = Histogram(
            "vllm_omni:transfer_tx_s",
            "Cross-stage transfer send time.",
            hop,
            buckets=SECONDS_FAST_BUCKETS,
            registry=reg,
        )
        self.t_rx = Histogram(
            "vllm_omni:transfer_rx_s",
            "Cross-stage transfer receive time.",
            hop,
            buckets=SECONDS_FAST_BUCKETS,
            registry=reg,
        )
        self.t_in_flight = Histogram(
            "vllm_omni:transfer_in_flight_s",
            "Cross-stage transfer time in flight.",
            hop,
            buckets=SECONDS_FAST_BUCKETS,
            registry=reg,
        )
        families = self._vllm_families(max_model_len) if log_stats else {}
        self.stages = {
            stage: StageMetrics(reg if log_stats else None, families, model_name, stage) for stage in STAGES
        }

    def _vllm_families(self, max_model_len: int) -> dict[str, Any]:
        reg, labels = self.registry, ["model_name", "stage", "replica"]
        token_buckets = buckets_1_2_5(max_model_len)
        families: dict[str, Any] = {
            "vllm:num_requests_running": Gauge(
                "vllm:num_requests_running",
                "Number of requests in model execution batches.",
                labels,
                registry=reg,
            ),
            "vllm:num_requests_waiting": Gauge(
                "vllm:num_requests_waiting",
                "Number of requests waiting to be processed.",
                labels,
                registry=reg,
            ),
            "vllm:kv_cache_usage_perc": Gauge(
                "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels, registry=reg
            ),
            "vllm:num_preemptions": Counter(
                "vllm:num_preemptions",
                "Cumulative number of preemption from the engine.",
                labels,
                registry=reg,
            ),
            "vllm:prompt_tokens": Counter(
                "vllm:prompt_tokens", "Number of prefill tokens processed.", labels, registry=reg
            ),
            "vllm:generation_tokens": Counter(
                "vllm:generation_tokens", "Number of generation tokens processed.", labels, registry=reg
            ),
            "vllm:request_success": Counter(
                "vllm:request_success",
                "Count of successfully processed requests.",
                [*labels, "finished_reason"],
                registry=reg,
            ),
        }
        histograms = (
            (
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                TTFT_BUCKETS,
            ),
            ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS),
            (
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                LATENCY_BUCKETS,
            ),
            (
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                LATENCY_BUCKETS,
            ),
            (
                "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
                LATENCY_BUCKETS,
            ),
            (
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                LATENCY_BUCKETS,
            ),
            (
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
                LATENCY_BUCKETS,
            ),
            ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets),
            ("vllm:request_generation_tokens", "Number of generation tokens processed.", token_buckets),
        )
        for name, doc, buckets in histograms:
            families[name] = Histogram(name, doc, labels, buckets=buckets, registry=reg)
        return families

    # --- pipeline-level observations (no-ops with --disable-log-stats) ---

    def set_pipeline_queue(self, running: int, waiting: int) -> None:
        if self.log_stats:
            self.p_running.labels(self.model).set(running)
            self.p_waiting.labels(self.model).set(waiting)

    def request_finished(
        self, reason: str, e2e_seconds: float, prompt_tokens: int, generation_tokens: int
    ) -> None:
        if not self.log_stats:
            return
        self.p_success.labels(self.model, reason).inc()
        if reason != "abort":
            self.p_e2e.labels(self.model).observe(e2e_seconds)
        if prompt_tokens > 0:
            self.p_prompt.labels(self.model).inc(prompt_tokens)
        if generation_tokens > 0:
            self.p_generation.labels(self.model).inc(generation_tokens)

    def audio_finished(self, samples: int, seconds: float, generation_seconds: float) -> None:
        """The audio family at finalize, on the stage that makes the audio (code2wav)."""
        if not self.log_stats:
            return
        labels = (self.model, "1", REPLICA)
        if samples <= 0:
            self.a_skipped.labels(*labels, "empty_audio").inc()
            return
        self.a_duration.labels(*labels).observe(seconds)
        self.a_rtf.labels(*labels).observe(generation_seconds / seconds)
        self.a_frames.labels(*labels).inc(samples)

    def audio_first_packet(self, seconds: float) -> None:
        if self.log_stats:
            self.a_ttfp.labels(self.model, "1", REPLICA).observe(seconds)

    def audio_stream_closed(self, underrun_seconds: float) -> None:
        """SSE close: the worst player deficit, and the continuity counter below the threshold."""
        if not self.log_stats:
            return
        labels = (self.model, "1", REPLICA)
        self.a_underrun.labels(*labels).observe(max(underrun_seconds, 0.0))
        if underrun_seconds * 1000.0 < CONTINUITY_THRESHOLD_MS:
            self.a_continuity.labels(*labels, str(CONTINUITY_THRESHOLD_MS)).inc()

    def transfer(self, size_bytes: int, tx_s: float, rx_s: float, in_flight_s: float) -> None:
        if not self.log_stats:
            return
        hop = (self.model, "0", REPLICA, "1", REPLICA)
        self.t_size.labels(*hop).observe(size_bytes)
        self.t_tx.labels(*hop).observe(tx_s)
        self.t_rx.labels(*hop).observe(rx_s)
        self.t_in_flight.labels(*hop).observe(in_flight_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
