"""Helpers of the vLLM-Omni contract tests: model directories, deploy configs and parsers (the
emulation itself starts with tests.support.simulator.launch_omni).

The deploy YAML and the model directories are written here, with the keys docs/server-contract-omni.md
names (OS8, OS11, OS14); the expected lengths are computed from the contract's own arithmetic (a
request that stops after F frames runs F + 10 talker steps; one cut after T steps decodes T - 8
frames), not imported from the simulator.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import httpx
import yaml

RATE = 24000
SAMPLES_PER_FRAME = 960
FRAME_BYTES = SAMPLES_PER_FRAME * 2
MODEL_NAME = "higgs-audio-v2-generation-3B-base"  # the model directory's name: a Higgs model id (OR4)
HUB_MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
FAST = ["--sim-profile", "raw", "--sim-slowdown", "0.2"]  # raw H100 steps x 0.2: ~0.7 ms per step


def text_frames(text: str) -> int:
    """About 15 characters per second of speech at 25 frames per second, at least 10 frames."""
    return max(10, math.ceil(len(text) / 15 * 25))


def capped_frames(text: str, max_tokens: int) -> int:
    """Frames of a request capped at ``max_tokens`` talker steps (F + 10 steps when it stops)."""
    frames = text_frames(text)
    if frames + 10 <= max_tokens:
        return frames
    return min(frames, max_tokens - 8) if max_tokens > 10 else 0


def write_deploy(
    path: Path,
    *,
    async_chunk: bool = False,
    max_num_seqs: int = 4,
    max_tokens: int = 1024,
    seed: int = 42,
    max_model_len: int = 4096,
) -> Path:
    """A deploy config with the shape of vllm_omni/deploy/higgs_audio_v2.yaml (OS14's keys)."""
    config: dict[str, Any] = {
        "async_chunk": async_chunk,
        "connectors": {
            "shm_hop": {
                "name": "SharedMemoryConnector",
                "extra": {"codec_streaming": True, "codec_chunk_frames": 25},
            }
        },
        "stages": [
            {
                "stage_id": 0,
                "max_num_seqs": max_num_seqs,
                "gpu_memory_utilization": 0.6,
                "enforce_eager": True,
                "max_model_len": max_model_len,
                "devices": "0",
                "output_connectors": {"to_stage_1": "shm_hop"},
                "default_sampling_params": {
                    "temperature": 1.0,
                    "top_p": 0.95,
                    "top_k": 50,
                    "max_tokens": max_tokens,
                    "seed": seed,
                },
            },
            {
                "stage_id": 1,
                "max_num_seqs": 4,
                "gpu_memory_utilization": 0.25,
                "enforce_eager": True,
                "max_model_len": 65536,
                "devices": "0",
                "input_connectors": {"from_stage_0": "shm_hop"},
                "default_sampling_params": {"temperature": 0.0, "top_k": -1, "max_tokens": 65536},
            },
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_model(root: Path, layout: str = "native", codec_weights: bool = True) -> Path:
    """A model directory named like the Hub repo, and its codec directory.

    ``native``: transformers' ``higgs_audio_v2`` layout; ``architecture``: only the architecture
    names the pipeline; ``boson``: Boson's original ``higgs_audio`` layout (no pipeline, OS8)."""
    codec = root / f"codec-{layout}"
    codec.mkdir(parents=True, exist_ok=True)
    (codec / "config.json").write_text(json.dumps({"model_type": "higgs_audio_v2_tokenizer"}))
    if codec_weights:
        (codec / "model.pth").write_bytes(b"placeholder weights")
    model = root / f"model-{layout}" / MODEL_NAME
    model.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "native": {"model_type": "higgs_audio_v2", "architectures": ["HiggsAudioV2ForConditionalGeneration"]},
        "architecture": {"model_type": "custom", "architectures": ["HiggsAudioV2ForConditionalGeneration"]},
        "boson": {"model_type": "higgs_audio", "architectures": ["HiggsAudioModel"]},
    }[layout]
    config["audio_tokenizer_id"] = str(codec)
    (model / "config.json").write_text(json.dumps(config))
    return model


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of an SSE body: (event name, parsed data), checking the framing."""
    assert text.endswith("\n\n"), text[-200:]
    events: list[tuple[str, dict[str, Any]]] = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block[
            :120
        ]
        events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


def wav_data(body: bytes) -> tuple[int, bytes]:
    """(sample rate, PCM) of a single complete 44-byte-header WAV file, checking its sizes."""
    assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt ", body[:16]
    (riff_size,) = struct.unpack("<I", body[4:8])
    _, fmt_tag, channels, rate, _, _, bits = struct.unpack("<IHHIIHH", body[16:36])
    assert (fmt_tag, channels, bits) == (1, 1, 16)
    assert body[36:40] == b"data"
    (size,) = struct.unpack("<I", body[40:44])
    assert riff_size == 36 + size and len(body) == 44 + size
    return rate, body[44:]


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    """OX1: the OpenAI wrapper, exactly its four keys, code = the status."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["param"] is None and error["code"] == status
    return dict(error)
