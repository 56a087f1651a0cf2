"""The Hugging Face token Secret: is it usable, its checksum, and the mirrored copy.

The token value is only ever hashed here; no message built in this module contains it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from .constants import MIRROR_LABEL


@dataclass(frozen=True)
class SecretCheck:
    ready: bool
    reason: str  # SecretFound, SecretNotFound, SecretKeyMissing, SecretValueEmpty, SecretNotReferenced
    message: str
    checksum: str | None = None  # sha256 of the token value when ready


def token_checksum(value: bytes) -> str:
    """sha256 of the token: goes on the pod template so a rotation rolls the pods."""
    return hashlib.sha256(value).hexdigest()


def secret_value(secret: dict, key: str) -> bytes | None:
    """The decoded value of ``key`` (``data`` is base64, ``stringData`` plain), or None if absent."""
    data = secret.get("data") or {}
    if key in data:
        try:
            return base64.b64decode(data[key] or "", validate=True)
        except (binascii.Error, ValueError):
            return None
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key]).encode()
    return None


def check_secret(secret: dict | None, namespace: str, name: str, key: str) -> SecretCheck:
    """Whether ``secret`` (None: not found) holds a non-empty ``key``, with a precise reason."""
    where = f"Secret {namespace}/{name}"
    if secret is None:
        return SecretCheck(False, "SecretNotFound", f"{where} not found")
    value = secret_value(secret, key)
    if value is None:
        keys = sorted({*(secret.get("data") or {}), *(secret.get("stringData") or {})})
        return SecretCheck(False, "SecretKeyMissing", f"{where} has no key {key!r} (keys: {keys})")
    if not value.strip():
        return SecretCheck(False, "SecretValueEmpty", f"{where} key {key!r} is empty")
    return SecretCheck(True, "SecretFound", f"{where} key {key!r} present", token_checksum(value.strip()))


def mirrored_secret(source: dict, source_namespace: str, key: str, name: str, namespace: str) -> dict:
    """The copy of ``source`` put into the resource's namespace (only ``key``; owner refs added later)."""
    value = secret_value(source, key) or b""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MIRROR_LABEL: f"{source_namespace}.{source['metadata']['name']}"[:63]},
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode()},
    }


@dataclass(frozen=True)
class TokenRef:
    """Where the pods read the token from (after mirroring), and where it comes from."""

    name: str
    key: str
    mirror_from: str | None = None  # Secret name in the operator's namespace


def token_ref(spec: dict, owner_name: str) -> TokenRef | None:
    """Read spec.hfToken: a secretRef in the resource's namespace or a mirrorFrom copied into it."""
    hf = spec.get("hfToken") or {}
    if hf.get("mirrorFrom"):
        src = hf["mirrorFrom"]
        return TokenRef(f"{owner_name}-hf-token", src.get("key", "hf_access_token"), src["name"])
    if hf.get("secretRef"):
        ref = hf["secretRef"]
        return TokenRef(ref["name"], ref.get("key", "hf_access_token"))
    return None
