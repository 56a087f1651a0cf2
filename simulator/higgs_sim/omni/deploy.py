"""The deploy YAML (``--deploy-config``): the two stages' limits and stage 0's default sampling.

Shape (OS14, ``vllm_omni/deploy/higgs_audio_v2.yaml``): a top-level ``async_chunk`` bool, a
``connectors`` mapping (the shared-memory connector's ``extra.codec_chunk_frames``) and a ``stages``
list; each stage has ``stage_id``, ``max_num_seqs``, ``gpu_memory_utilization``, ``max_model_len``
and ``default_sampling_params`` (``temperature``, ``top_p``, ``top_k``, ``max_tokens``, ``seed``).
What the emulation uses: ``async_chunk`` (OP4 cadence), stage 0's ``max_num_seqs``,
``gpu_memory_utilization`` (its KV-cache budget), ``max_model_len`` and ``max_tokens``/``seed``
(OR2), stage 1's ``max_num_seqs`` (code2wav slots), and ``codec_chunk_frames`` (async_chunk only).
Other keys are accepted and ignored.

Without ``--deploy-config`` the real server picks ``higgs_audio_v2.yaml`` by the model's HF
``model_type`` (OS4); the emulation then reads :data:`PACKAGED_DEPLOY`, with the values OS14 lists.
Overrides (OS3): ``--stage-overrides`` (per-stage JSON, merged over the YAML), ``--async-chunk`` /
``--no-async-chunk`` and ``--gpu-memory-utilization`` ("caller-typed value > deploy YAML").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# OS14's values, in the file the local stack also maps the image's path to (hack/localkube-images.yaml):
# used when --deploy-config is absent, as the real server picks its packaged YAML (OS4).
PACKAGED_DEPLOY = Path(__file__).with_name("higgs_audio_v2.yaml")
DEFAULT_CODEC_CHUNK_FRAMES = 25


class DeployError(Exception):
    """The deploy YAML or an override cannot be used (the real server fails at start: exit 1)."""


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int | None
    seed: int | None


@dataclass(frozen=True)
class Stage:
    stage_id: int
    max_num_seqs: int
    gpu_memory_utilization: float
    max_model_len: int
    sampling: Sampling


@dataclass(frozen=True)
class DeployConfig:
    source: str  # the YAML path, or "built-in defaults (OS14)"
    async_chunk: bool
    codec_chunk_frames: int
    stages: tuple[Stage, ...]

    @property
    def talker(self) -> Stage:
        return self.stages[0]

    @property
    def code2wav(self) -> Stage:
        return self.stages[1]


def _float(value: object, where: str, lo: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < lo
    ):
        raise DeployError(f"{where} must be a number >= {lo:g}, got {value!r}")
    return float(value)


def _int(value: object, where: str, lo: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise DeployError(f"{where} must be an integer >= {lo}, got {value!r}")
    return value


def _stage(raw: object, index: int) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(raw, dict):
        raise DeployError(f"{where} must be a mapping, got {raw!r}")
    params = raw.get("default_sampling_params") or {}
    if not isinstance(params, dict):
        raise DeployError(f"{where}.default_sampling_params must be a mapping, got {params!r}")
    pw = f"{where}.default_sampling_params"
    max_tokens = params.get("max_tokens")
    seed = params.get("seed")
    sampling = Sampling(
        temperature=_float(params.get("temperature", 1.0), f"{pw}.temperature", 0.0),
        top_p=_float(params.get("top_p", 1.0), f"{pw}.top_p", 0.0),
        top_k=_int(params.get("top_k", -1), f"{pw}.top_k", -1),
        max_tokens=None if max_tokens is None else _int(max_tokens, f"{pw}.max_tokens", 1),
        seed=None if seed is None else _int(seed, f"{pw}.seed", 0),
    )
    return Stage(
        stage_id=_int(raw.get("stage_id", index), f"{where}.stage_id", 0),
        max_num_seqs=_int(raw.get("max_num_seqs", 256), f"{where}.max_num_seqs", 1),
        gpu_memory_utilization=_float(
            raw.get("gpu_memory_utilization", 0.9), f"{where}.gpu_memory_utilization", 0.0
        ),
        max_model_len=_int(raw.get("max_model_len", 4096), f"{where}.max_model_len", 1),
        sampling=sampling,
    )


def _apply_overrides(data: dict[str, Any], overrides: str) -> None:
    """``--stage-overrides '{"0": {"max_num_seqs": 8}}'``: merged over each named stage (OS3)."""
    try:
        parsed = json.loads(overrides)
    except json.JSONDecodeError as exc:
        raise DeployError(f"--stage-overrides is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise DeployError(f"--stage-overrides must be a JSON object keyed by stage id, got {overrides!r}")
    stages = {str(s.get("stage_id", i)): s for i, s in enumerate(data["stages"]) if isinstance(s, dict)}
    for key, values in parsed.items():
        if str(key) not in stages:
            raise DeployError(f"--stage-overrides names stage {key!r}, which the deploy config does not have")
        if not isinstance(values, dict):
            raise DeployError(f"--stage-overrides[{key!r}] must be an object, got {values!r}")
        target = stages[str(key)]
        for name, value in values.items():
            if name == "default_sampling_params" and isinstance(value, dict):
                merged = dict(target.get(name) or {})
                merged.update(value)
                target[name] = merged
            else:
                target[name] = value


def load_deploy(
    path: str | None,
    stage_overrides: str | None = None,
    async_chunk: bool | None = None,
    gpu_memory_utilization: float | None = None,
) -> DeployConfig:
    """Read the deploy YAML (or the built-in defaults) and apply the command line's overrides."""
    source = path or "built-in defaults (OS14; the package's higgs_audio_v2.yaml)"
    file = path or str(PACKAGED_DEPLOY)
    try:
        with open(file, encoding="utf-8") as fh:
            data: Any = yaml.safe_load(fh)
    except FileNotFoundError:
        raise DeployError(f"deploy config not found: {file}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"cannot read deploy config {file}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        raise DeployError(f"{source}: a deploy config needs a 'stages' list")
    if stage_overrides:
        _apply_overrides(data, stage_overrides)
    if gpu_memory_utilization is not None:
        # UNCONFIRMED (OS14): whether the one CLI value replaces every stage's; taken as every stage.
        for stage in data["stages"]:
            if isinstance(stage, dict):
                stage["gpu_memory_utilization"] = gpu_memory_utilization
    stages = tuple(_stage(raw, i) for i, raw in enumerate(data["stages"]))
    if [s.stage_id for s in stages[:2]] != [0, 1]:
        raise DeployError(
            f"{source}: the Higgs Audio v2 pipeline needs stage 0 (talker) and stage 1 (code2wav), "
            f"got stage ids {[s.stage_id for s in stages]}"
        )
    chunk_frames = DEFAULT_CODEC_CHUNK_FRAMES
    connectors = data.get("connectors")
    if isinstance(connectors, dict):
        for connector in connectors.values():
            extra = connector.get("extra") if isinstance(connector, dict) else None
            if isinstance(extra, dict) and "codec_chunk_frames" in extra:
                chunk_frames = _int(extra["codec_chunk_frames"], "codec_chunk_frames", 1)
    chunked = data.get("async_chunk", False) if async_chunk is None else async_chunk
    if not isinstance(chunked, bool):
        raise DeployError(f"{source}: async_chunk must be true or false, got {chunked!r}")
    return DeployConfig(source, chunked, chunk_frames, stages)
