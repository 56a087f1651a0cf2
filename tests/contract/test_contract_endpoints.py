"""Contract rows E1-E8 (endpoints) and S7-S9 (what the server loads and when it answers)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.contract import (
    MODEL_ID,
    PRESETS,
    SERVED,
    StartSim,
    error_body,
    make_wav,
    sse_events,
    wav_b64,
)
from tests.support.simulator import Sim

CHAT = "/v1/chat/completions"
SPEECH = "/v1/audio/speech"
HELLO = {"messages": [{"role": "user", "content": "Hello."}]}


@pytest.mark.contract("E1")
def test_health_is_an_empty_200(sim: Sim) -> None:
    r = httpx.get(f"{sim.url}/health")
    assert r.status_code == 200 and r.content == b""


@pytest.mark.contract("E2")
def test_models_lists_the_served_name_with_root_and_max_model_len(sim: Sim) -> None:
    body = httpx.get(f"{sim.url}/v1/models").json()
    assert body["object"] == "list" and len(body["data"]) == 1
    card = body["data"][0]
    assert {k: card[k] for k in ("id", "object", "owned_by", "root", "parent", "max_model_len")} == {
        "id": SERVED,
        "object": "model",
        "owned_by": "vllm",
        "root": MODEL_ID,
        "parent": None,
        "max_model_len": 8192,
    }
    assert isinstance(card["created"], int) and card["permission"][0]["object"] == "model_permission"


@pytest.mark.contract("E3", "X6")
def test_version_says_it_is_a_simulator(sim: Sim) -> None:
    body = httpx.get(f"{sim.url}/version").json()
    assert set(body) == {"version", "simulator"} and body["simulator"] is True
    assert re.match(r"^\d+\.\d+\.\d+", body["version"])
    assert "SIMULATOR" in sim.log()


@pytest.mark.contract("E4")
def test_metrics_is_prometheus_text(sim: Sim) -> None:
    r = httpx.get(f"{sim.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc"} <= names


@pytest.mark.contract("E5", "S8", "X7")
def test_voices_are_a_bare_array_in_config_order(sim: Sim, start_sim: StartSim, tmp_path: Path) -> None:
    assert httpx.get(f"{sim.url}/v1/audio/voices").json() == PRESETS  # the image's own, in order
    presets = tmp_path / "presets"
    presets.mkdir()
    custom = start_sim("--voice-presets-dir", str(presets), "--voice-presets-refresh-interval", "1")
    # No config.json: logged, never fatal; the list is empty until the file appears.
    assert httpx.get(f"{custom.url}/v1/audio/voices").json() == []
    assert "Error loading voice presets" in custom.log()
    for name in ("zeta", "alpha", "mid"):
        (presets / f"{name}.wav").write_bytes(make_wav(0.5))
    order = {name: {"transcript": name, "audio_file": f"{name}.wav"} for name in ("zeta", "alpha", "mid")}
    (presets / "config.json").write_text(json.dumps(order))
    started = time.monotonic()
    while httpx.get(f"{custom.url}/v1/audio/voices").json() != ["zeta", "alpha", "mid"]:
        assert time.monotonic() - started < 5, "the presets were not re-read at the refresh interval"
        time.sleep(0.1)


@pytest.mark.contract("E6")
def test_unknown_paths_and_methods_get_fastapis_bodies(sim: Sim) -> None:
    for path in ("/nothing", "/v1/nothing", "/v1/audio/speech/extra"):
        r = httpx.get(sim.url + path)
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found"}), path
    for method, path in (("GET", SPEECH), ("GET", CHAT), ("POST", "/health"), ("POST", "/v1/models")):
        r = httpx.request(method, sim.url + path, json={})
        assert (r.status_code, r.json()) == (405, {"detail": "Method Not Allowed"}), (method, path)


@pytest.mark.contract("E7", "ER3")
def test_the_api_key_guards_v1_only(start_sim: StartSim) -> None:
    sim = start_sim("--api-key", "s3cret")
    url = sim.url
    calls = [("GET", "/v1/models"), ("GET", "/v1/audio/voices"), ("GET", "/v1/nothing"), ("POST", CHAT),
             ("POST", SPEECH)]  # fmt: skip
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        for method, path in calls:
            r = httpx.request(method, url + path, json=HELLO, headers=headers)
            assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"}), (method, path, headers)
    for path in ("/health", "/metrics", "/version"):
        assert httpx.get(url + path).status_code == 200
    auth = {"Authorization": "Bearer s3cret"}
    assert httpx.get(f"{url}/v1/audio/voices", headers=auth).json() == PRESETS
    assert httpx.post(url + CHAT, json=HELLO, headers=auth).status_code == 200
    assert httpx.get(f"{url}/v1/nothing", headers=auth).status_code == 404


@pytest.mark.contract("E8")
def test_x_request_id_comes_back_only_with_the_flag(sim: Sim, start_sim: StartSim) -> None:
    stream = {**HELLO, "stream": True}
    r = httpx.post(sim.url + CHAT, json=stream, headers={"X-Request-Id": "client-1"})
    assert "x-request-id" not in r.headers
    assert sse_events(r.text)[0]["id"] == "chatcmpl-client-1"  # the client's id names the request
    speech = {"model": SERVED, "input": "Hi.", "voice": "belinda"}
    assert "x-request-id" not in httpx.post(sim.url + SPEECH, json=speech).headers

    flagged = start_sim("--enable-request-id-headers")
    r = httpx.post(flagged.url + CHAT, json=stream, headers={"X-Request-Id": "client-2"})
    assert r.headers["x-request-id"] == "client-2" and sse_events(r.text)[0]["id"] == "chatcmpl-client-2"
    r = httpx.post(flagged.url + SPEECH, json=speech)
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert httpx.get(f"{flagged.url}/health", headers={"X-Request-Id": "h"}).headers["x-request-id"] == "h"
    missing = httpx.post(flagged.url + SPEECH, json={"input": "x"})
    assert missing.status_code == 400 and missing.headers["x-request-id"]


@pytest.mark.contract("S7")
def test_fifty_audio_inputs_by_default(sim: Sim) -> None:
    clip = {"type": "input_audio", "input_audio": {"data": wav_b64(0.04), "format": "wav"}}

    def with_clips(n: int) -> dict:
        return {"messages": [{"role": "user", "content": [*[clip] * n, {"type": "text", "text": "Hi."}]}]}

    assert httpx.post(sim.url + CHAT, json=with_clips(50), timeout=30).status_code == 200
    body = error_body(httpx.post(sim.url + CHAT, json=with_clips(51), timeout=30), 400)
    assert "50" in body["message"]


@pytest.mark.contract("S9")
def test_connections_are_refused_until_the_server_is_up(start_sim: StartSim) -> None:
    started = time.monotonic()
    sim = start_sim("--sim-startup-seconds", "1.5", wait=False)
    time.sleep(0.7)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.url}/health", timeout=1)
    sim.wait_healthy()
    assert time.monotonic() - started >= 1.5
