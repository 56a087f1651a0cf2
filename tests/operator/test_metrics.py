"""Parsing the server's Prometheus text: Boson's fork (vLLM 0.8, V1 engine); later vLLM's name of the
KV-cache gauge is read too; vLLM-Omni's pipeline gauges (OM1) and per-stage vLLM gauges (OM2)."""

import pytest

from higgs_operator.metrics import MetricsParseError, parse_pod_metrics

MODEL = 'model_name="higgs-audio-v2-generation-3B-base"'

# GET /metrics of Boson's fork as its V1 engine writes it (contract M1, F vllm/v1/metrics/loggers.py:
# labels {model_name, engine}, prometheus_client text format: counters with _total and _created,
# histograms with _bucket/_count/_sum), after the process metrics of the default registry.
FORK_V1 = f"""# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{{generation="0"}} 12345.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2e+10
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{{block_size="16",cache_dtype="auto",engine="0",gpu_memory_utilization="0.8"}} 1.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",{MODEL}}} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",{MODEL}}} 5.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{{engine="0",{MODEL}}} 0.42
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{engine="0",{MODEL}}} 2.0
# HELP vllm:num_preemptions_created Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_created gauge
vllm:num_preemptions_created{{engine="0",{MODEL}}} 1.7961253842108157e+09
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{engine="0",{MODEL}}} 98765.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{{engine="0",finished_reason="stop",{MODEL}}} 7.0
vllm:request_success_total{{engine="0",finished_reason="length",{MODEL}}} 1.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.01",{MODEL}}} 0.0
vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.1",{MODEL}}} 1.0
vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",{MODEL}}} 1.0
vllm:time_to_first_token_seconds_count{{engine="0",{MODEL}}} 1.0
vllm:time_to_first_token_seconds_sum{{engine="0",{MODEL}}} 0.05
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="1.0",{MODEL}}} 0.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="10.0",{MODEL}}} 8.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="+Inf",{MODEL}}} 8.0
vllm:e2e_request_latency_seconds_count{{engine="0",{MODEL}}} 8.0
vllm:e2e_request_latency_seconds_sum{{engine="0",{MODEL}}} 31.5
"""


ENGINE_0, ENGINE_1 = 'engine="0"', 'engine="1"'


def two_engines(text: str) -> str:
    """The same families with a second engine (data parallel): every vllm sample twice."""
    lines = []
    for line in text.splitlines():
        lines.append(line)
        if line.startswith("vllm:") and 'engine="0"' in line and "_info" not in line:
            name, value = line.rsplit(" ", 1)
            lines.append(name.replace(ENGINE_0, ENGINE_1) + f" {float(value) * 2}")
    return "\n".join(lines) + "\n"


# The KV-cache gauge under later vLLM's name (read too; no supported server exposes it, see
# higgs_operator.metrics).
LATER_KV_NAME = """# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="higgs"} 1.0
vllm:num_requests_waiting{engine="1",model_name="higgs"} 2.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="higgs"} 4.0
vllm:num_requests_running{engine="1",model_name="higgs"} 4.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="higgs"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="higgs"} 0.4
"""


def test_fork_v1_metrics_with_model_name_and_engine_labels():
    s = parse_pod_metrics(FORK_V1)
    assert (s.waiting, s.running, s.kv_cache) == (5.0, 3.0, 0.42)


def test_fork_v1_metrics_of_two_engines_summed_and_averaged():
    s = parse_pod_metrics(two_engines(FORK_V1))
    assert (s.waiting, s.running) == (15.0, 9.0)  # queues add up over engines
    assert s.kv_cache == pytest.approx((0.42 + 0.84) / 2)  # cache usage is each engine's share


def test_later_kv_cache_gauge_name_is_read_too():
    s = parse_pod_metrics(LATER_KV_NAME)
    assert (s.waiting, s.running) == (3.0, 8.0)
    assert s.kv_cache == pytest.approx(0.3)


def test_without_a_cache_gauge_the_cache_is_unknown():
    text = "\n".join(line for line in FORK_V1.splitlines() if "gpu_cache" not in line) + "\n"
    assert parse_pod_metrics(text).kv_cache is None


def test_missing_gauges_named():
    with pytest.raises(MetricsParseError, match="vllm:num_requests_running"):
        parse_pod_metrics("# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 1\n")


def test_garbage_rejected():
    with pytest.raises(MetricsParseError):
        parse_pod_metrics("this is {not prometheus")


# --- vLLM-Omni (docs/server-contract-omni.md OM1-OM3) ---------------------------------------------------
OMNI_MODEL = 'model_name="higgs-audio-v2-generation-3B-base"'


def staged(stage: str) -> str:
    return f'{OMNI_MODEL},replica="0",stage="{stage}"'


# OM1: vLLM-Omni's own families, prefix vllm_omni:, gauges labelled {model_name} (the whole pipeline).
OMNI_PIPELINE = f"""# HELP vllm_omni:num_requests_running Number of requests currently running across all pipeline stages.
# TYPE vllm_omni:num_requests_running gauge
vllm_omni:num_requests_running{{{OMNI_MODEL}}} 3.0
# HELP vllm_omni:num_requests_waiting Number of requests waiting to be scheduled.
# TYPE vllm_omni:num_requests_waiting gauge
vllm_omni:num_requests_waiting{{{OMNI_MODEL}}} 7.0
# HELP vllm_omni:requests_success_total Total requests by completion reason (stop / length / abort / ...).
# TYPE vllm_omni:requests_success_total counter
vllm_omni:requests_success_total{{finished_reason="stop",{OMNI_MODEL}}} 12.0
# HELP vllm_omni:audio_rtf Audio real-time factor.
# TYPE vllm_omni:audio_rtf histogram
vllm_omni:audio_rtf_bucket{{le="1.0",{staged("1")}}} 4.0
vllm_omni:audio_rtf_bucket{{le="+Inf",{staged("1")}}} 4.0
vllm_omni:audio_rtf_count{{{staged("1")}}} 4.0
vllm_omni:audio_rtf_sum{{{staged("1")}}} 1.2
"""
# OM2: vLLM's families with `engine` replaced by `stage` + `replica`: one series per stage (0 talker,
# 1 code2wav).
OMNI_STAGES = f"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{{staged("0")}}} 4.0
vllm:num_requests_running{{{staged("1")}}} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{{staged("0")}}} 5.0
vllm:num_requests_waiting{{{staged("1")}}} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{{staged("0")}}} 0.3
vllm:kv_cache_usage_perc{{{staged("1")}}} 0.05
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{{finished_reason="stop",{staged("0")}}} 12.0
vllm:request_success_total{{finished_reason="stop",{staged("1")}}} 12.0
"""
# OM3: --disable-log-stats: the vllm_omni:* families stay empty, the vllm:* wrap is not registered.
OMNI_NO_STATS = """# HELP vllm_omni:num_requests_running Number of requests currently running across all pipeline stages.
# TYPE vllm_omni:num_requests_running gauge
# HELP vllm_omni:num_requests_waiting Number of requests waiting to be scheduled.
# TYPE vllm_omni:num_requests_waiting gauge
"""


def test_omni_pipeline_gauges_are_the_queue():
    """OM1 present: the pipeline-wide queue; the KV cache is the talker's (stage 0)."""
    s = parse_pod_metrics(OMNI_PIPELINE + OMNI_STAGES)
    assert (s.waiting, s.running) == (7.0, 3.0)
    assert s.kv_cache == pytest.approx(0.3)


def test_omni_stage_labelled_vllm_gauges_count_stage_0_only():
    """No OM1 samples (families declared but empty): vLLM's gauges of stage 0, not the sum over stages."""
    s = parse_pod_metrics(OMNI_NO_STATS + OMNI_STAGES)
    assert (s.waiting, s.running) == (5.0, 4.0)
    assert s.kv_cache == pytest.approx(0.3)


def test_omni_one_pipeline_gauge_alone_falls_back_to_stage_0():
    body = "\n".join(line for line in OMNI_PIPELINE.splitlines() if "num_requests_running" not in line)
    s = parse_pod_metrics(body + "\n" + OMNI_STAGES)
    assert (s.waiting, s.running) == (5.0, 4.0)


def test_omni_stages_without_stage_0_are_named():
    body = "\n".join(line for line in OMNI_STAGES.splitlines() if 'stage="0"' not in line) + "\n"
    with pytest.raises(MetricsParseError, match='stage="0"'):
        parse_pod_metrics(body)


def test_omni_without_stats_lacks_the_queue():
    """OM3: with --disable-log-stats nothing counts the queue: a scrape failure, as for the fork."""
    with pytest.raises(MetricsParseError, match="vllm:num_requests_waiting"):
        parse_pod_metrics(OMNI_NO_STATS)


def test_the_emulations_metrics_are_read():
    """The registry higgs_sim.omni serves (OM1 + OM2): the pipeline gauges once set, else stage 0's."""
    from prometheus_client import generate_latest

    from higgs_sim.omni.metrics import OmniMetrics

    metrics = OmniMetrics("higgs-audio-v2-generation-3B-base", log_stats=True, max_model_len=4096)
    metrics.stages["0"].set_queue(running=4, waiting=6, kv_fraction=0.25)
    metrics.stages["1"].set_queue(running=1, waiting=9, kv_fraction=0.5)
    s = parse_pod_metrics(generate_latest(metrics.registry).decode())
    assert (s.waiting, s.running, s.kv_cache) == (6.0, 4.0, 0.25)  # no pipeline samples yet: stage 0
    metrics.set_pipeline_queue(running=3, waiting=2)
    s = parse_pod_metrics(generate_latest(metrics.registry).decode())
    assert (s.waiting, s.running, s.kv_cache) == (2.0, 3.0, 0.25)
