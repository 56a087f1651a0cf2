"""`higgs-operator run` refuses bad input with a message naming it (no stack trace, no hang)."""

import pytest

from higgs_operator.cli import main


def test_missing_chart(tmp_path, capsys):
    assert main(["run", "--all-namespaces", "--chart", str(tmp_path / "nope")]) == 2
    assert "--chart" in capsys.readouterr().err


def test_no_helm(tmp_path, capsys, monkeypatch):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("HELM", raising=False)
    assert main(["run", "--all-namespaces", "--chart", str(tmp_path)]) == 2
    assert "helm not found" in capsys.readouterr().err


def test_bad_periods(tmp_path, capsys, monkeypatch):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    monkeypatch.setenv("HELM", "/bin/true")
    assert main(["run", "-A", "--chart", str(tmp_path), "--resync-seconds", "0"]) == 2
    assert "--resync-seconds" in capsys.readouterr().err


def test_namespace_and_all_namespaces_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["run", "-A", "-n", "x"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("kube_version", [[], ["--kube-version", "1.35.0"]])
def test_no_kubeconfig(tmp_path, capsys, monkeypatch, kube_version):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    monkeypatch.setenv("HELM", "/bin/true")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["run", "-A", "--chart", str(tmp_path), *kube_version]) == 2
    err = capsys.readouterr().err
    assert "no usable Kubernetes client configuration" in err and "missing-kubeconfig" in err


def test_unreachable_api_server_for_kube_version(tmp_path, capsys, monkeypatch):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    monkeypatch.setenv("HELM", "/bin/true")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["run", "-A", "--chart", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot read the API server's version" in err and "--kube-version" in err


def _start(tmp_path, monkeypatch, *extra: str) -> dict:
    """main() up to kopf.operator, with a fake API client and server version; returns the memo's config."""
    import kopf

    from higgs_operator import kube

    (tmp_path / "Chart.yaml").write_text("name: x\n")
    monkeypatch.setenv("HELM", "/bin/true")
    monkeypatch.setattr(kube, "api_client", lambda: object())
    versions = iter(["1.33.1", "1.34.0"])
    monkeypatch.setattr(kube, "server_version", lambda api: next(versions))
    seen: dict = {}

    async def operator(**kwargs):
        seen["config"] = kwargs["memo"].config

    monkeypatch.setattr(kopf, "operator", operator)
    # No metrics endpoint: this is about the config, and a port left listening would outlive the test.
    assert main(["run", "-A", "--chart", str(tmp_path), "--metrics-port", "0", *extra]) == 0
    return seen


def test_kube_version_comes_from_the_api_server_and_is_read_again(tmp_path, monkeypatch):
    """No --kube-version (the operator chart's default): the API server's version, re-read after
    --kube-version-seconds, so a control-plane upgrade reaches the renders without a restart."""
    import time

    config = _start(tmp_path, monkeypatch, "--kube-version-seconds", "0.05")["config"]
    assert config.render_kube_version() == "1.33.1"
    time.sleep(0.1)
    assert config.render_kube_version() == "1.34.0"


def test_kube_version_override_is_used_as_given(tmp_path, monkeypatch):
    config = _start(tmp_path, monkeypatch, "--kube-version", "1.31.0")["config"]
    assert config.kube_version == "1.31.0" and config.render_kube_version() == "1.31.0"


def test_bad_kube_version_period(tmp_path, capsys, monkeypatch):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    monkeypatch.setenv("HELM", "/bin/true")
    assert main(["run", "-A", "--chart", str(tmp_path), "--kube-version-seconds", "0"]) == 2
    assert "--kube-version-seconds" in capsys.readouterr().err
