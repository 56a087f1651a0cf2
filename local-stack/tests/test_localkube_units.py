"""Pieces of the control-plane orchestration that need no cluster: settings, certificates, port and
process discovery, error messages, and the test helpers' failure reports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from localkube import cli
from localkube.certs import ensure_pki
from localkube.cluster import StepError
from localkube.daemons import PidFile, is_ours, is_running, spawn, terminate
from localkube.ports import describe_owner, listeners_on
from localkube.settings import ConfigError, Settings
from tests.support import kubetest

pytestmark = pytest.mark.timeout(60)


def settings_for(tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {"HIGGS_CLUSTER_DIR": str(tmp_path / "state"), "HIGGS_CACHE": str(tmp_path), **extra}
    )


def test_defaults(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    assert (s.apiserver_port, s.nodes, s.gpus_per_node) == (6443, 2, 1)
    assert s.service_cidr == "127.100.0.0/16" and s.first_service_ip == "127.100.0.1"
    assert s.kubeconfig == tmp_path / "state" / "kubeconfig"
    assert s.k8s_bin == tmp_path / "k8s" / s.k8s_version / "bin"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HIGGS_APISERVER_PORT": "abc"}, "HIGGS_APISERVER_PORT='abc' is not a TCP port"),
        ({"HIGGS_ETCD_PORT": "70000"}, "HIGGS_ETCD_PORT='70000' is out of range for a TCP port"),
        ({"HIGGS_FAKE_GPU_NODES": "-1"}, "HIGGS_FAKE_GPU_NODES='-1' is out of range for a node count"),
        ({"HIGGS_SERVICE_CIDR": "127.100.0.1/16"}, "HIGGS_SERVICE_CIDR='127.100.0.1/16' is not a network"),
        (
            {"HIGGS_SCHEDULER_PORT": "6443"},
            "HIGGS_SCHEDULER_PORT=6443 is the same port as HIGGS_APISERVER_PORT",
        ),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_for(tmp_path, **env)


def test_cli_reports_bad_setting_in_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("HIGGS_CLUSTER_DIR", str(tmp_path))
    monkeypatch.setenv("HIGGS_APISERVER_PORT", "sixty")
    assert cli.main(["up"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERROR [settings]: HIGGS_APISERVER_PORT='sixty' is not a TCP port")
    assert "\n" not in err


def test_cli_missing_binaries_says_make_tools(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("HIGGS_CLUSTER_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HIGGS_CACHE", str(tmp_path / "empty-cache"))
    assert cli.main(["up"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR [binaries]: missing ")
    assert str(tmp_path / "empty-cache" / "bin" / "etcd") in err and "make tools" in err


def test_cli_status_without_state(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("HIGGS_CLUSTER_DIR", str(tmp_path / "none"))
    assert cli.main(["status"]) == 3
    assert "no cluster state" in capsys.readouterr().out


def test_env_prints_export_lines(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("HIGGS_CLUSTER_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("HIGGS_CACHE", str(tmp_path / "cache"))
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"export KUBECONFIG={tmp_path / 'c' / 'kubeconfig'}",
        f'export PATH="{tmp_path}/cache/bin:$PATH"',
    ]


def _x509_text(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-text"], capture_output=True, text=True, check=True
    ).stdout


def test_certificates_have_the_names_clients_check(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    pki, changed = ensure_pki(s)
    assert changed
    api = _x509_text(pki.cert("apiserver"))
    for san in (
        "IP Address:127.0.0.1",
        "IP Address:127.100.0.1",
        "DNS:kubernetes.default.svc",
        "DNS:localhost",
    ):
        assert san in api
    assert "TLS Web Server Authentication" in api
    admin = _x509_text(pki.cert("admin"))
    assert "O = system:masters" in admin and "TLS Web Client Authentication" in admin
    assert "CN = system:kube-controller-manager" in _x509_text(pki.cert("controller-manager"))
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(pki.ca_cert),
            str(pki.cert("apiserver")),
            str(pki.cert("admin")),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    assert pki.sa_pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert oct(pki.ca_key.stat().st_mode & 0o777) == "0o600"

    # A file broken by a crash mid-write is made again, the others are kept.
    admin_before = pki.cert("admin").read_bytes()
    pki.cert("scheduler").write_text("")
    assert ensure_pki(s)[1] is True
    assert "CN = system:kube-scheduler" in _x509_text(pki.cert("scheduler"))
    assert pki.cert("admin").read_bytes() == admin_before

    before = pki.cert("apiserver").read_bytes()
    assert ensure_pki(s)[1] is False, "a second run reuses every file"
    moved = settings_for(tmp_path, HIGGS_SERVICE_CIDR="127.102.0.0/16")
    pki2, changed = ensure_pki(moved)
    assert changed and pki2.cert("apiserver").read_bytes() != before
    assert "IP Address:127.102.0.1" in _x509_text(pki2.cert("apiserver"))


def test_listener_owner_is_found() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        found = listeners_on({port})
        assert [(lst.address, lst.pid) for lst in found] == [("127.0.0.1", os.getpid())]
        assert describe_owner(found[0]).startswith(f"pid {os.getpid()} (")
    assert listeners_on({port}) == []


def test_spawned_daemon_is_recognised_by_its_state_dir_and_stopped(tmp_path: Path) -> None:
    marker = f"{tmp_path}/"
    log = tmp_path / "logs" / "sleeper.log"
    # A program that ignores SIGTERM: terminate() must fall back to SIGKILL.
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
        "time.sleep(60)"
    )
    proc = spawn([sys.executable, "-c", code, f"{tmp_path}/x"], log)
    pidfile = PidFile(tmp_path / "run", "sleeper")
    pidfile.write(proc.pid)
    assert pidfile.read() == proc.pid
    kubetest.wait_for(lambda: "up" in log.read_text().splitlines(), 10, what="the daemon to print")
    assert is_ours(proc.pid, marker)
    assert not is_ours(proc.pid, "/somewhere/else/")
    assert not is_ours(os.getpid(), marker)
    assert terminate([proc.pid], grace_s=0.5) == [proc.pid]
    proc.wait(5)
    assert not is_running(proc.pid)


def test_step_error_shows_step_and_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "component.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)))
    text = StepError("kube-apiserver", "did not become ready", log, log_lines=3).render()
    assert text.splitlines()[0] == "ERROR [kube-apiserver]: did not become ready"
    assert f"log: {log}" in text
    assert text.rstrip().endswith("line 37\n    line 38\n    line 39")
    assert "line 36" not in text


def test_wait_for_returns_the_value_and_reports_on_timeout() -> None:
    calls = iter([0, 0, 7])
    assert kubetest.wait_for(lambda: next(calls), 5, interval=0.01) == 7

    def not_found() -> None:
        raise ApiException(status=404, reason="Not Found")

    with pytest.raises(AssertionError) as failed:
        kubetest.wait_for(not_found, 0.2, describe=lambda: "pods: none", interval=0.05, what="pod web")
    message = str(failed.value)
    assert message.startswith("timed out after 0 s waiting for pod web")
    assert "last API error: 404 Not Found" in message and message.endswith("pods: none")
