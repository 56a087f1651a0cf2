"""Kubeconfig files with the certificates embedded, so each file works on its own (kubectl, helm, clients)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from .certs import Pki

CLUSTER_NAME = "higgs-local"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_kubeconfig(server: str, pki: Pki, stem: str, user: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki.cert(stem)),
                    "client-key-data": _b64(pki.key(stem)),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, pki: Pki, stem: str, user: str) -> None:
    """Write atomically (readers never see half a file) and readable by the owner only (it holds a key)."""
    text = yaml.safe_dump(render_kubeconfig(server, pki, stem, user), sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)
