"""The operator renders for the API server's version, read at run time and again when stale."""

from higgs_operator import reconcile
from higgs_operator.kube import ServerVersion
from higgs_operator.reconcile import OperatorConfig, render_children
from higgs_operator.state import ResourceState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_server_version_is_read_again_after_its_ttl() -> None:
    clock, reads = Clock(), iter(["1.34.2", "1.35.0"])
    version = ServerVersion(None, "1.33.0", ttl_s=300, clock=clock, read=lambda api: next(reads))  # type: ignore[arg-type]
    assert version() == "1.33.0"
    clock.now = 299
    assert version() == "1.33.0"
    clock.now = 300
    assert version() == "1.34.2"
    clock.now = 500
    assert version() == "1.34.2"
    clock.now = 601
    assert version() == "1.35.0"


def test_a_failed_re_read_keeps_the_last_version_and_retries(caplog) -> None:
    clock, calls = Clock(), []

    def read(api: object) -> str:
        calls.append(clock.now)
        if len(calls) == 1:
            raise ConnectionError("refused")
        return "1.36.0"

    version = ServerVersion(None, "1.35.0", ttl_s=10, clock=clock, read=read)  # type: ignore[arg-type]
    clock.now = 10
    assert version() == "1.35.0"
    assert "cannot re-read the API server's version" in caplog.text
    clock.now = 11
    assert version() == "1.36.0", "retried at the next call, not after another ttl"


def test_render_uses_the_current_version_and_renders_again_when_it_changes(monkeypatch) -> None:
    rendered: list[str] = []

    def helm_template(chart: str, release: str, namespace: str, values: dict, kube_version: str) -> str:
        rendered.append(kube_version)
        return "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: ns}\n"

    monkeypatch.setattr(reconcile, "helm_template", helm_template)
    current = ["1.34.0"]
    cfg = OperatorConfig(chart="c", operator_namespace="op", kube_version=lambda: current[0])
    body = {
        "apiVersion": "audio.higgs.dev/v1alpha1",
        "kind": "HiggsDeployment",
        "spec": {},
        "metadata": {"name": "x", "namespace": "ns", "uid": "u"},
    }
    st = ResourceState()
    render_children(body, cfg, st, None)
    render_children(body, cfg, st, None)
    assert rendered == ["1.34.0"], "same values and version: the cached render"
    current[0] = "1.35.1"
    render_children(body, cfg, st, None)
    assert rendered == ["1.34.0", "1.35.1"]
    assert (
        OperatorConfig(chart="c", operator_namespace="op", kube_version="1.30.0").render_kube_version()
        == "1.30.0"
    )
