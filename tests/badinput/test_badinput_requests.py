"""Malformed requests to the OpenAI-compatible server get a clear 4xx OpenAI-style error, and the server
stays healthy and keeps serving. Cases: cases/requests.yaml (complements tests/simulator/test_sim_api.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from casefiles import request_params
from sim_helpers import Sim, launch, wav_b64

MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = launch([MODEL, "--sim-startup-seconds", "0"], tmp_path_factory.mktemp("sim"))
    s.wait_healthy()
    yield s
    s.stop()


def _body(case: dict[str, Any]) -> tuple[bytes, str]:
    content_type = case.get("content_type", "application/json")
    if "raw" in case:
        return case["raw"].encode(), content_type
    if "audio_inputs" in case:
        parts: list[dict[str, Any]] = [
            {"type": "input_audio", "input_audio": {"data": wav_b64(0.2), "format": "wav"}}
            for _ in range(case["audio_inputs"])
        ]
        parts.append({"type": "text", "text": "hi"})
        return json.dumps({"messages": [{"role": "user", "content": parts}]}).encode(), content_type
    return json.dumps(case["json"]).encode(), content_type


def _still_serving(sim: Sim) -> None:
    assert httpx.get(f"{sim.base_url}/health", timeout=5).status_code == 200
    ok = httpx.post(
        sim.base_url + CHAT,
        json={"messages": [{"role": "user", "content": "still there?"}], "max_tokens": 20},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text[:500]
    assert ok.json()["choices"][0]["message"]["audio"]["data"], "no audio after the bad request"


@pytest.mark.parametrize("case", request_params())
def test_malformed_request_gets_openai_4xx_and_server_survives(sim: Sim, case: dict[str, Any]) -> None:
    content, content_type = _body(case)
    resp = httpx.post(
        sim.base_url + case.get("path", CHAT),
        content=content,
        headers={"Content-Type": content_type},
        timeout=30,
    )
    assert resp.status_code == case["status"], f"{case['name']}: {resp.status_code} {resp.text[:300]}"
    error = resp.json()["error"]  # OpenAI shape: {"error": {"message", "type", "param", "code"}}
    assert {"message", "type", "code"} <= error.keys(), error
    assert case["expect"] in error["message"], error
    assert "Traceback" not in resp.text
    _still_serving(sim)
