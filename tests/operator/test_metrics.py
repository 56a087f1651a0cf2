"""Parsing the server's Prometheus text: Boson's fork (vLLM 0.8, V1 engine); later vLLM's name of the
KV-cache gauge is read too."""

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
