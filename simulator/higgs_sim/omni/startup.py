"""What the server checks before it serves: the model's HF config (OS8) and the stage-1 codec (OS11).

The pipeline is found from the model's ``config.json``: ``model_type == "higgs_audio_v2"`` or an
architecture in ``("HiggsAudioV2ForConditionalGeneration",)`` (``pipeline.py:13-50``). Boson's
original layout (``model_type: higgs_audio``, ``HiggsAudioModel``: the chart's pinned revisions)
matches neither, so the real server has no pipeline for it and cannot start (exit 1 here).

A model that is not an existing directory is a Hub repository id: its config is read from the
Hugging Face cache when it is there (``refs/main`` -> ``snapshots/<commit>/``); otherwise the real
server would download it and the emulation logs that nothing is fetched (with ``HF_HUB_OFFLINE=1``
a missing repository stops the start, as huggingface_hub does). The codec (stage 1, OS11) is the
config's ``audio_tokenizer_id`` (default ``bosonai/higgs-audio-v2-tokenizer``): an existing
directory needs ``config.json`` and ``model.pth`` or ``model.safetensors``; a repository id is
looked up in the cache the same way. Nothing else is opened: no weights are read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("higgs_sim.omni.startup")

HIGGS_MODEL_TYPE = "higgs_audio_v2"
HIGGS_ARCHITECTURES = ("HiggsAudioV2ForConditionalGeneration",)
BOSON_MODEL_TYPE = "higgs_audio"  # Boson's original (pre-2026-04-04) Hub layout
DEFAULT_CODEC = "bosonai/higgs-audio-v2-tokenizer"  # configuration.py:90-96
CODEC_WEIGHTS = ("model.pth", "model.safetensors")
# huggingface_hub's validate_repo_id pattern.
REPO_ID = re.compile(r"^(\b[\w\-.]+\b/)?\b[\w\-.]+\b$")
NATIVE_REVISION_HINT = (
    "vLLM-Omni needs the transformers-native Hub revision of the model (model_type 'higgs_audio_v2', "
    "the layout Boson published on 2026-04-04, 'trfms-support'); Boson's original layout "
    "(model_type 'higgs_audio', the chart's pinned revision 10840182...) is only served by Boson's "
    "own vLLM fork"
)


class StartupError(Exception):
    """The server cannot start (exit status 1)."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    directory: str | None  # where config.json was read; None for a repository not in the cache
    config: Mapping[str, Any]


def hub_cache(env: Mapping[str, str]) -> Path:
    """huggingface_hub's cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def cached_snapshot(repo_id: str, env: Mapping[str, str]) -> Path | None:
    """The cached snapshot holding ``config.json``: ``refs/main`` first, then any snapshot (OS11)."""
    repo_dir = hub_cache(env) / ("models--" + repo_id.replace("/", "--"))
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snapshot = repo_dir / "snapshots" / ref.read_text().strip()
        if (snapshot / "config.json").is_file():
            return snapshot
    for config in sorted((repo_dir / "snapshots").glob("*/config.json")):
        return config.parent
    return None


def _offline(env: Mapping[str, str]) -> bool:
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StartupError(
            f"{path.parent} does not appear to have a file named config.json (the model directory must "
            "hold the transformers-native Higgs Audio v2 layout)"
        ) from None
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise StartupError(f"{path} is not a JSON object")
    log.info("opened %s", path)
    return data


def _locate(name: str, what: str, env: Mapping[str, str]) -> Path | None:
    """A directory for ``name`` (local, or the cached snapshot of a repo id); None: would download."""
    if os.path.isdir(name):
        return Path(name)
    if not REPO_ID.match(name) or "--" in name or ".." in name or len(name) > 96:
        raise StartupError(
            f"{what} {name!r} is neither an existing directory nor a Hub repository id: Repo id must be "
            "in the form 'repo_name' or 'namespace/repo_name'"
        )
    snapshot = cached_snapshot(name, env)
    if snapshot is not None:
        log.info("%s %s: using the Hugging Face cache, %s", what, name, snapshot)
        return snapshot
    if _offline(env):
        raise StartupError(
            f"{what} {name!r} is not in the Hugging Face cache ({hub_cache(env)}) and HF_HUB_OFFLINE is set: "
            "cannot download it"
        )
    log.warning(
        "%s %s is not in the Hugging Face cache (%s): the real server would download it now; "
        "[simulator] nothing is fetched",
        what,
        name,
        hub_cache(env),
    )
    return None


def check_pipeline(config: Mapping[str, Any], where: str) -> None:
    """OS8: the Higgs Audio v2 pipeline matches by model_type, else by architecture."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type == HIGGS_MODEL_TYPE or any(a in HIGGS_ARCHITECTURES for a in architectures):
        return
    message = (
        f"no vLLM-Omni pipeline matches this model ({where}: model_type {model_type!r}, architectures "
        f"{list(architectures)}); the Higgs Audio v2 pipeline needs model_type {HIGGS_MODEL_TYPE!r} or "
        f"architecture {HIGGS_ARCHITECTURES[0]}"
    )
    if model_type == BOSON_MODEL_TYPE:
        message += f". {NATIVE_REVISION_HINT}"
    raise StartupError(message)


def load_model(name: str, env: Mapping[str, str]) -> ModelInfo:
    directory = _locate(name, "model", env)
    if directory is None:
        return ModelInfo(name, None, {"model_type": HIGGS_MODEL_TYPE})
    config = _read_config(directory / "config.json")
    check_pipeline(config, str(directory / "config.json"))
    return ModelInfo(name, str(directory), config)


def load_codec(model: ModelInfo, env: Mapping[str, str]) -> str:
    """OS11: stage 1 loads the codec eagerly at start; returns where it was found (or the repo id)."""
    codec = model.config.get("audio_tokenizer_id") or DEFAULT_CODEC
    if not isinstance(codec, str):
        raise StartupError(f"audio_tokenizer_id must be a string, got {codec!r}")
    directory = _locate(codec, "codec (stage 1 audio tokenizer)", env)
    if directory is None:
        return codec
    _read_config(directory / "config.json")
    if not any((directory / weights).is_file() for weights in CODEC_WEIGHTS):
        raise StartupError(
            f"codec directory {directory} has no {' or '.join(CODEC_WEIGHTS)} (stage 1, code2wav, cannot load)"
        )
    return str(directory)
