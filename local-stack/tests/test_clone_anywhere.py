"""The local stack runs from a clone anywhere: a copy of the repository under /tmp in a directory whose
path has a space, with a PRIVATE cluster whose state lives in that copy, installs the operator the way
`make demo` does (hack/demo.py's install_operator) and its pods become Ready. And a broken image
mapping fails that install fast, naming the pod and the node agent's error."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.private_cluster import private_env, processes_of

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.localstack("starts a private local control plane from a copy of this checkout under /tmp"),
    pytest.mark.timeout(240),
]

REPO = Path(__file__).resolve().parents[2]


def copy_tracked_files(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = REPO / name
        if not src.is_file():  # deleted in the work tree, not yet committed
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")  # no pip install: the same interpreter and packages


class Clone:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / ".cache" / "cluster"  # the default place: inside the clone, with its space
        self.env = {
            **private_env(self.state),
            "HIGGS_REPO_ROOT": str(root),
            # The copy's own local stack, not the editable install's (which points at the main checkout).
            "PYTHONPATH": str(root / "local-stack"),
            "HIGGS_POD_IP_OCTET": "43",  # pod IPs apart from the shared cluster's
        }
        self.env.pop("HIGGS_CLUSTER_DIR")  # the default under the clone's root is what is tested

    def localkube(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        python = str(self.root / ".venv" / "bin" / "python")
        return subprocess.run(
            [python, "-m", "localkube.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.root,
        )

    def demo(self) -> ModuleType:
        spec = importlib.util.spec_from_file_location("clone_demo", self.root / "hack" / "demo.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


@pytest.fixture(scope="module")
def clone() -> Iterator[Clone]:
    top = Path(tempfile.mkdtemp(prefix="higgs clone ", dir="/tmp"))
    root = top / "my repo"
    root.mkdir()
    copy_tracked_files(root)
    c = Clone(root)
    try:
        proc = c.localkube("up")
        assert proc.returncode == 0, f"up from {root} failed:\n{proc.stderr}\n{proc.stdout[-3000:]}"
        assert str(c.state) in c.localkube("env", timeout=30).stdout
        yield c
    finally:
        c.localkube("down", timeout=120)
        for pid in processes_of(c.state):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(top, ignore_errors=True)


def test_operator_install_from_a_clone_with_a_space_under_tmp(clone: Clone) -> None:
    demo = clone.demo()
    assert clone.root == demo.REPO
    started = time.monotonic()
    pods = demo.install_operator(clone.root, clone.state / "kubeconfig", timeout=90)
    assert len(pods) == 2, [p.metadata.name for p in pods]
    for pod in pods:
        assert pod.status.pod_ip.startswith("127.43."), pod.status.pod_ip
    print(f"operator Ready from {clone.root} in {time.monotonic() - started:.1f} s")


def test_unmapped_operator_image_fails_fast_naming_pod_and_agent_error(clone: Clone) -> None:
    demo = clone.demo()
    started = time.monotonic()
    with pytest.raises(demo.DemoError) as err:
        demo.install_operator(
            clone.root,
            clone.state / "kubeconfig",
            set_values=("image.repository=localhost/not-in-the-images-file",),
            timeout=120,
        )
    took = time.monotonic() - started
    text = str(err.value)
    assert took < 60, f"took {took:.0f} s:\n{text}"
    assert "ImageNotMapped" in text and "higgs-system/higgs-operator-" in text, text
    assert (
        'image "localhost/not-in-the-images-file:' in text and "is not mapped to a local command" in text
    ), text
    print(f"failed in {took:.1f} s:\n{text}")
