"""The references in docs/ are generated from the sources (hack/gen_docs.py) and must match them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_docs_match_the_sources() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "hack" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"docs are stale; run `make docs`:\n{proc.stdout}{proc.stderr}"


def test_crd_reference_covers_every_spec_field_and_rule() -> None:
    import yaml

    crd = yaml.safe_load(
        (REPO / "charts/higgs-operator/crds/higgsdeployments.audio.higgs.dev.yaml").read_text()
    )
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    doc = (REPO / "docs" / "crd-reference.md").read_text()
    for field in spec["properties"]:
        assert f"`spec.{field}`" in doc, f"spec.{field} missing from docs/crd-reference.md"
    for rule in spec.get("x-kubernetes-validations", []):
        assert rule["message"] in doc
