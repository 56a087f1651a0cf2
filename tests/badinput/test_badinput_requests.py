"""Malformed requests to the OpenAI-compatible server get the error docs/server-contract.md says Boson's
server gives (a specific message naming the field where the simulator can), and the server stays healthy
and keeps serving. Cases: cases/requests.yaml, each naming its contract row (complements
tests/contract/ and tests/simulator/test_sim_api.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.cases import contract_rows, request_params
from tests.support.simulator import Sim, launch, wav_b64

MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
CHAT = "/v1/chat/completions"
API_KEY = "badinput-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ERROR_KEYS = {"object", "message", "type", "param", "code"}
ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError"}  # ER1, ER2


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    args = ["--model", MODEL, "--api-key", API_KEY, "--sim-startup-seconds", "0"]
    s = launch(args, tmp_path_factory.mktemp("sim"))
    s.wait_healthy()
    yield s
    s.stop()


def _body(case: dict[str, Any]) -> bytes | None:
    if "raw" in case:
        return case["raw"].encode()
    if "audio_inputs" in case:
        parts: list[dict[str, Any]] = [
            {"type": "input_audio", "input_audio": {"data": wav_b64(0.2), "format": "wav"}}
            for _ in range(case["audio_inputs"])
        ]
        parts.append({"type": "text", "text": "hi"})
        return json.dumps({"messages": [{"role": "user", "content": parts}]}).encode()
    if "json" in case:
        return json.dumps(case["json"]).encode()
    return None


def _headers(case: dict[str, Any]) -> dict[str, str]:
    headers = {**AUTH, "Content-Type": case.get("content_type", "application/json")}
    headers.update(case.get("headers", {}))
    return {name: value for name, value in headers.items() if value is not None}


def _check_error_response(case: dict[str, Any], resp: httpx.Response) -> None:
    """ER1/ER2: a top-level ErrorResponse, not OpenAI's {"error": {...}} wrapper."""
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    error = resp.json()
    assert isinstance(error, dict) and set(error) == ERROR_KEYS, error
    assert error["object"] == "error" and error["param"] is None, error
    assert (error["code"], error["type"]) == (case["status"], ERROR_TYPES[case["status"]]), error
    assert case["expect"] in error["message"], error


def _still_serving(sim: Sim) -> None:
    assert httpx.get(f"{sim.url}/health", timeout=5).status_code == 200
    ok = httpx.post(
        sim.url + CHAT,
        json={"messages": [{"role": "user", "content": "still there?"}], "max_tokens": 20},
        headers=AUTH,
        timeout=30,
    )
    assert ok.status_code == 200, ok.text[:500]
    assert ok.json()["choices"][0]["message"]["audio"]["data"], "no audio after the bad request"


@pytest.mark.parametrize("case", request_params())
def test_malformed_request_gets_the_contract_error_and_server_survives(
    sim: Sim, case: dict[str, Any]
) -> None:
    assert case["row"] in contract_rows(), f"{case['name']}: no row {case['row']} in docs/server-contract.md"
    resp = httpx.request(
        case.get("method", "POST"),
        sim.url + case.get("path", CHAT),
        content=_body(case),
        headers=_headers(case),
        timeout=30,
    )
    assert resp.status_code == case["status"], f"{case['name']}: {resp.status_code} {resp.text[:300]}"
    assert "Traceback" not in resp.text
    if "body" in case:  # FastAPI's / the middleware's own bodies (ER3)
        assert resp.json() == case["body"]
    else:
        _check_error_response(case, resp)
    _still_serving(sim)
