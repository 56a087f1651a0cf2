"""Runs ``helm template`` (the one process the operator starts); the command line and what is done with
the output are pure, in :mod:`higgs_operator.render`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import yaml

from .render import RenderError, helm_template_argv

HELM_TIMEOUT_S = 30


def helm_binary() -> str:
    found = os.environ.get("HELM") or shutil.which("helm")
    if not found:
        raise RenderError("helm not found: put it on PATH or set HELM")
    return found


def helm_template(
    chart: str, release: str, namespace: str, values: dict, kube_version: str = "1.35.0"
) -> str:
    """Run ``helm template`` with ``values`` in a temporary file; return the rendered YAML."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="higgs-values-") as fh:
        yaml.safe_dump(values, fh)
        fh.flush()
        cmd = helm_template_argv(helm_binary(), chart, release, namespace, fh.name, kube_version)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HELM_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as err:
            raise RenderError(f"helm template timed out after {HELM_TIMEOUT_S}s") from err
    if proc.returncode != 0:
        raise RenderError(f"helm template {chart} failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout
