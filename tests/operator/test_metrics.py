"""Parsing the server's Prometheus text (both vLLM generations)."""

import pytest
from higgs_operator.metrics import MetricsParseError, parse_pod_metrics

FORK = """# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="higgs"} 3.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="higgs"} 8.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="higgs"} 0.25
"""

CURRENT = """# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="higgs"} 1.0
vllm:num_requests_waiting{engine="1",model_name="higgs"} 2.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="higgs"} 4.0
vllm:num_requests_running{engine="1",model_name="higgs"} 4.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="higgs"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="higgs"} 0.4
"""


def test_fork_metrics():
    s = parse_pod_metrics(FORK)
    assert (s.waiting, s.running, s.kv_cache) == (3.0, 8.0, 0.25)


def test_current_metrics_with_engine_label_summed_and_averaged():
    s = parse_pod_metrics(CURRENT)
    assert (s.waiting, s.running) == (3.0, 8.0)
    assert s.kv_cache == pytest.approx(0.3)


def test_missing_gauges_named():
    with pytest.raises(MetricsParseError, match="vllm:num_requests_running"):
        parse_pod_metrics("# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 1\n")


def test_garbage_rejected():
    with pytest.raises(MetricsParseError):
        parse_pod_metrics("this is {not prometheus")
