"""The third-party CRDs hack/install-crds.sh caches under $HIGGS_CACHE/crds/<project>-<version>/:
where a pinned set is, which API groups they define, which of its files hold the CRDs."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from tests.support.kubetest import Cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS = REPO_ROOT / "hack" / "versions.txt"
# hack/lib.sh's HIGGS_CACHE default.
CACHE = (
    Path(
        os.environ.get("HIGGS_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "higgs-k8s"
    )
    / "crds"
)
# API group -> the project whose CRDs define it (hack/install-crds.sh's SETS). kubernetes-validate has no
# schema for these kinds: the server-side dry-run (tests/chart/test_chart_crd_dry_run.py) checks them.
THIRD_PARTY_GROUPS = {
    "gateway.networking.k8s.io": "gateway-api",
    "monitoring.coreos.com": "prometheus-operator",
    "keda.sh": "keda",
}
# The pins (hack/versions.txt names) of the current release of each project, and Gateway API's oldest
# release the chart supports (HTTPRoute v1 is GA since v1.0.0).
CURRENT = ("gateway-api", "prometheus-operator", "keda")
GATEWAY_API_OLDEST = "gateway-api-oldest"
# The one field manager the tests apply these CRDs under, whichever test installs them first.
FIELD_MANAGER = "higgs-k8s-tests"
ESTABLISHED_WAIT_S = 30  # the API server serves a new or changed CRD schema a moment after the apply


def pinned(name: str) -> str:
    for line in VERSIONS.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == name:
            return words[1]
    raise AssertionError(f"no '{name}' line in {VERSIONS}")


def crd_folder(pin: str) -> Path:
    """The cached CRDs of a pin; fails saying how to fetch them when missing or stale."""
    project = pin.removesuffix("-oldest")
    version = pinned(pin)
    folder = CACHE / f"{project}-{version}"
    if not (folder / ".stamp").is_file():
        raise AssertionError(
            f"no {project} {version} CRDs in {folder}: run `bash hack/install-tools.sh crds` (or `make tools`)"
        )
    return folder


@functools.cache
def crd_files(pin: str) -> dict[Path, tuple[str, ...]]:
    """The files of a pin that hold CustomResourceDefinitions only, with those CRDs' names. What else
    upstream ships beside them (Gateway API's safe-upgrades ValidatingAdmissionPolicy, which forbids
    installing v1.0 again) is left out."""
    out = {}
    for path in sorted(crd_folder(pin).glob("*.yaml")):
        docs = [d for d in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader) if d]
        if docs and all(d["kind"] == "CustomResourceDefinition" for d in docs):
            out[path] = tuple(d["metadata"]["name"] for d in docs)
    return out


def install(cluster: Cluster, *pins: str) -> None:
    """Apply the pins' CRDs server-side (left installed, as a real cluster keeps them) and wait until
    they are Established."""
    files = {path: names for pin in pins for path, names in crd_files(pin).items()}
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
        *[arg for path in files for arg in ("-f", str(path))], timeout=120,
    )  # fmt: skip
    refs = [f"crd/{name}" for names in files.values() for name in names]
    cluster.kubectl("wait", "--for=condition=Established", *refs, f"--timeout={ESTABLISHED_WAIT_S}s")
