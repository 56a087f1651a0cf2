"""``GET /v1/models``: vLLM's ModelList, the same card shape in Boson's fork (contract E2) and in
vLLM-Omni (docs/server-contract-omni.md OE5, vLLM's ModelCard of the 0.2x line)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any


def model_permission(created: int) -> dict[str, Any]:
    """vLLM's ModelPermission with its defaults."""
    return {
        "id": f"modelperm-{uuid.uuid4().hex}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


def model_list(served_names: Iterable[str], root: str, max_model_len: int) -> dict[str, Any]:
    """One card per served name; ``root`` is the ``--model`` the server loaded."""
    created = int(time.time())
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": root,
            "parent": None,
            "max_model_len": max_model_len,
            "permission": [model_permission(created)],
        }
        for name in served_names
    ]
    return {"object": "list", "data": data}
