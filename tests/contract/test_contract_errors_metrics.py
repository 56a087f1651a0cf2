"""Contract rows ER1-ER3 (error bodies), M1-M2 (metrics) and X3 (timing from the H100 table)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from higgs_sim.timing import StepTimeModel
from tests.support.contract import SERVED, StartSim, cadence, error_body, text_frames
from tests.support.simulator import Sim

CHAT = "/v1/chat/completions"
SPEECH = "/v1/audio/speech"
HELLO = [{"role": "user", "content": "Hello there."}]
SAY = {"model": SERVED, "input": "Hello there.", "voice": "belinda"}
JSON = {"Content-Type": "application/json"}


@pytest.mark.contract("ER1", "X4")
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (CHAT, {}, "messages"),  # missing field
        (SPEECH, {"model": SERVED, "voice": "belinda"}, "input"),
        (CHAT, {"messages": "hello"}, "messages"),  # wrong type
        (CHAT, {"messages": HELLO, "stream": "yes"}, "stream"),
        (CHAT, {"messages": HELLO, "max_tokens": 1.5}, "max_tokens"),
        (SPEECH, {**SAY, "input": 42}, "input"),
        (SPEECH, {**SAY, "response_format": "ogg"}, "response_format"),  # bad enum value
        (CHAT, {"messages": HELLO, "audio": {"format": "ogg"}}, "audio.format"),
        (CHAT, {"messages": HELLO, "audio": {"voice": "mabel"}}, "audio.voice"),
        (
            CHAT,
            {"messages": HELLO, "stream": True, "stream_options": {"include_usage": "no"}},
            "include_usage",
        ),
        (CHAT, {"messages": HELLO, "stream_options": {"include_usage": True}}, "stream=True"),
    ],
)
def test_validation_errors_are_top_level_error_responses(sim: Sim, path: str, body: dict, field: str) -> None:
    message = error_body(httpx.post(sim.url + path, json=body), 400, "BadRequestError")["message"]
    assert field in message  # X4: the simulator's own words, naming the field


@pytest.mark.contract("ER1")
def test_invalid_json_is_a_validation_error(sim: Sim) -> None:
    for path in (CHAT, SPEECH):
        for raw in (b"{not json", b"", b"[1, 2", '{"input": "caf\xe9"}'.encode("latin-1")):
            error_body(httpx.post(sim.url + path, content=raw, headers=JSON), 400, "BadRequestError")
    error_body(httpx.post(sim.url + CHAT, content=b"[]", headers=JSON), 400, "BadRequestError")


@pytest.mark.contract("ER2")
def test_handler_errors_share_the_shape(sim: Sim) -> None:
    error_body(httpx.post(sim.url + CHAT, json={"messages": HELLO, "model": "x"}), 404, "NotFoundError")
    error_body(httpx.post(sim.url + SPEECH, json={**SAY, "model": "x"}), 404, "NotFoundError")
    error_body(httpx.post(sim.url + CHAT, json={"messages": HELLO, "top_p": 1.5}), 400, "BadRequestError")
    long = [{"role": "user", "content": "x" * 40000}]
    body = error_body(httpx.post(sim.url + CHAT, json={"messages": long}), 400, "BadRequestError")
    assert "maximum context length is 8192 tokens" in body["message"]


@pytest.mark.contract("ER3")
def test_the_bodies_that_are_not_error_responses(sim: Sim, start_sim: StartSim, tmp_path: Path) -> None:
    r = httpx.post(sim.url + CHAT, content=b"{}", headers={"Content-Type": "text/plain"})
    assert (r.status_code, r.json()) == (
        415,
        {"detail": "Unsupported Media Type: Only 'application/json' is allowed"},
    )
    r = httpx.get(sim.url + "/v2/models")
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
    empty = tmp_path / "none"
    empty.mkdir()
    bare = start_sim("--voice-presets-dir", str(empty))  # no presets: an unexpected exception
    r = httpx.post(bare.url + SPEECH, json=SAY)
    assert (r.status_code, r.text) == (500, "Internal Server Error")


M1_NAMES = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:gpu_cache_usage_perc",
    "vllm:prompt_tokens",  # counters: the parser strips _total from the family name
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:time_to_first_token_seconds",
    "vllm:time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
)


@pytest.mark.contract("M1")
def test_every_series_is_labelled_with_model_name_and_engine(sim: Sim) -> None:
    assert httpx.post(sim.url + CHAT, json={"messages": HELLO, "stream": True}).status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{sim.url}/metrics").text)}
    assert set(M1_NAMES) <= set(families)
    vllm = [f for name, f in families.items() if name.startswith("vllm:")]
    for family in vllm:
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("le", "finished_reason")}
            assert labels == {"model_name": SERVED, "engine": "0"}, (sample.name, sample.labels)
    success = {s.labels["finished_reason"]: s.value for s in families["vllm:request_success"].samples
               if s.name.endswith("_total")}  # fmt: skip
    assert success["stop"] >= 1 and {"stop", "length", "abort"} <= set(success)
    assert families["vllm:prompt_tokens"].type == "counter"
    assert families["vllm:time_per_output_token_seconds"].type == "histogram"


@pytest.mark.contract("M2")
def test_the_metrics_are_the_v1_engines(sim: Sim) -> None:
    names = {f.name for f in text_string_to_metric_families(httpx.get(f"{sim.url}/metrics").text)}
    v0_only = {"vllm:num_requests_swapped", "vllm:cpu_cache_usage_perc", "vllm:time_in_queue_requests",
               "vllm:model_forward_time_milliseconds", "vllm:num_requests_waiting_with_priority"}  # fmt: skip
    assert not names & v0_only
    assert {"vllm:request_queue_time_seconds", "vllm:request_prefill_time_seconds"} <= names


@pytest.mark.contract("X3")
def test_timing_follows_the_h100_table(start_sim: StartSim) -> None:
    slowdown = 3.0
    sim = start_sim(slowdown=str(slowdown))
    text = "Timing comes from a table of decode steps measured on one H100, scaled by a slowdown."
    steps, _, _ = cadence(text_frames(text))
    model = StepTimeModel(slowdown)
    predicted = sum(model.step_seconds(1, 40 + i) for i in range(steps))
    started = time.monotonic()
    r = httpx.post(sim.url + CHAT, json={"messages": [{"role": "user", "content": text}]}, timeout=60)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert 0.9 * predicted <= elapsed <= 1.5 * predicted + 0.2, (elapsed, predicted)
