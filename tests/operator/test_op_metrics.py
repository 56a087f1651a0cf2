"""The operator's own metrics: the agreed names and labels, values after calls, series removed on
forget, the /metrics endpoint and its CLI flag, and the chart's metrics port and ServiceMonitor."""

from __future__ import annotations

import socket

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from higgs_operator import op_metrics
from higgs_operator.cli import main
from higgs_operator.op_metrics import OperatorMetrics
from tests.support.chart import REPO_ROOT, run_helm
from tests.support.ports import free_port

OPERATOR_CHART = REPO_ROOT / "charts" / "higgs-operator"


def value(m: OperatorMetrics, sample: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(sample, labels)


def test_values_after_calls_under_the_agreed_names():
    m = OperatorMetrics()
    m.record_reconcile(0.2, ok=True)
    m.record_reconcile(0.3, ok=False)
    m.record_error("scrape", 2)
    m.record_error("apply")
    m.record_scaling("ns", "tts", "streams", "up")
    m.record_scaling("ns", "tts", "streams", "up")
    m.record_scaling("ns", "tts", "max", "down")
    m.set_replicas("ns", "tts", desired=3, ready=2)
    m.set_max_replicas("ns", "tts", 4)
    m.set_signals("ns", "tts", {"waiting": 0.5, "streams": 6.0, "kvcache": 0.25})
    m.record_token_rotation("ns", "tts")
    assert value(m, "higgs_operator_reconciles_total", result="success") == 1
    assert value(m, "higgs_operator_reconciles_total", result="error") == 1
    assert value(m, "higgs_operator_reconcile_duration_seconds_count") == 2
    assert value(m, "higgs_operator_reconcile_duration_seconds_sum") == pytest.approx(0.5)
    assert value(m, "higgs_operator_errors_total", kind="scrape") == 2
    assert value(m, "higgs_operator_errors_total", kind="apply") == 1
    assert value(m, "higgs_operator_errors_total", kind="status") == 0  # present from the start
    decisions = "higgs_operator_scaling_decisions_total"
    assert value(m, decisions, namespace="ns", name="tts", signal="streams", direction="up") == 2
    assert value(m, decisions, namespace="ns", name="tts", signal="max", direction="down") == 1
    assert value(m, "higgs_operator_replicas", namespace="ns", name="tts", state="desired") == 3
    assert value(m, "higgs_operator_replicas", namespace="ns", name="tts", state="ready") == 2
    assert value(m, "higgs_operator_autoscaling_max_replicas", namespace="ns", name="tts") == 4
    assert value(m, "higgs_operator_scaling_signal", namespace="ns", name="tts", signal="streams") == 6
    assert value(m, "higgs_operator_scaling_signal", namespace="ns", name="tts", signal="kvcache") == 0.25
    assert value(m, "higgs_operator_token_rotations_total", namespace="ns", name="tts") == 1


def test_forget_removes_every_series_of_that_resource_only():
    m = OperatorMetrics()
    for name in ("gone", "kept"):
        m.record_scaling("ns", name, "waiting", "up")
        m.set_replicas("ns", name, 2, 2)
        m.set_max_replicas("ns", name, 4)
        m.set_signals("ns", name, {"waiting": 1.0, "streams": 2.0})
        m.record_token_rotation("ns", name)
    m.record_reconcile(0.1, ok=True)
    m.forget("ns", "gone")
    text = _exposition(m)
    assert 'name="gone"' not in text
    kept = [line for line in text.splitlines() if 'name="kept"' in line and "_created{" not in line]
    assert len(kept) == 7, kept  # decision, desired, ready, max, 2 signals, rotation
    assert value(m, "higgs_operator_reconciles_total", result="success") == 1  # not per resource


def test_none_removes_a_gauge_series():
    m = OperatorMetrics()
    m.set_max_replicas("ns", "a", 3)
    m.set_signals("ns", "a", {"waiting": 1.0, "streams": 2.0, "kvcache": 0.5})
    m.set_max_replicas("ns", "a", None)  # autoscaling turned off: absent, not a stale value
    m.set_signals("ns", "a", {"streams": 1.0})  # no KV-cache gauge on the server: its series goes
    assert value(m, "higgs_operator_autoscaling_max_replicas", namespace="ns", name="a") is None
    assert value(m, "higgs_operator_scaling_signal", namespace="ns", name="a", signal="kvcache") is None
    assert value(m, "higgs_operator_scaling_signal", namespace="ns", name="a", signal="streams") == 1
    m.set_max_replicas("ns", "never-set", None)  # removing what was never set is no error


def test_unknown_labels_are_refused_by_name():
    m = OperatorMetrics()
    with pytest.raises(ValueError, match="'queue'"):
        m.record_scaling("ns", "a", "queue", "up")
    with pytest.raises(ValueError, match="'sideways'"):
        m.record_scaling("ns", "a", "streams", "sideways")
    with pytest.raises(ValueError, match="'helm'"):
        m.record_error("helm")


def test_counting_errors_counts_only_the_given_type_and_reraises():
    m = OperatorMetrics()
    with pytest.raises(KeyError), m.counting_errors("status", KeyError):
        raise KeyError("x")
    with pytest.raises(ValueError), m.counting_errors("status", KeyError):
        raise ValueError("not counted")
    with m.counting_errors("status", KeyError):
        pass
    assert value(m, "higgs_operator_errors_total", kind="status") == 1


def test_families_and_types_are_the_agreed_interface():
    m = OperatorMetrics()
    families = {
        f.name: f.type
        for f in text_string_to_metric_families(_exposition(m))
        if not f.name.endswith("_created")  # prometheus_client's creation timestamps of counters
    }
    assert families == {
        "higgs_operator_reconciles": "counter",
        "higgs_operator_reconcile_duration_seconds": "histogram",
        "higgs_operator_errors": "counter",
        "higgs_operator_scaling_decisions": "counter",
        "higgs_operator_replicas": "gauge",
        "higgs_operator_autoscaling_max_replicas": "gauge",
        "higgs_operator_scaling_signal": "gauge",
        "higgs_operator_token_rotations": "counter",
    }


def test_serve_answers_on_loopback():
    m = OperatorMetrics()
    m.record_scaling("ns", "a", "streams", "up")
    server = op_metrics.serve(free_port(), "127.0.0.1", m)
    try:
        host, port = server.server_address[:2]
        resp = httpx.get(f"http://{host}:{port}/metrics", timeout=2)
        assert resp.status_code == 200
        assert (
            'higgs_operator_scaling_decisions_total{direction="up",name="a",namespace="ns",signal="streams"} 1.0'
            in (resp.text)
        )
    finally:
        server.shutdown()
        server.server_close()


def _chart_dir(tmp_path):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    kubeconfig = tmp_path / "kubeconfig"  # parses, never contacted: --kube-version is given
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return kubeconfig


def test_cli_refuses_a_metrics_port_out_of_range(tmp_path, capsys, monkeypatch):
    _chart_dir(tmp_path)
    monkeypatch.setenv("HELM", "/bin/true")
    assert main(["run", "-A", "--chart", str(tmp_path), "--metrics-port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "--metrics-port 70000" in err and "0 turns metrics off" in err


def test_cli_says_when_the_metrics_port_is_taken(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(_chart_dir(tmp_path)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HELM", "/bin/true")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["run", "-A", "--chart", str(tmp_path), "--kube-version", "1.35.0"]
        code = main([*args, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "pick another --metrics-port" in err


# --- the operator chart ------------------------------------------------------------------------------
def render_operator_chart(*args: str) -> list[dict]:
    proc = run_helm(
        "template", "op", str(OPERATOR_CHART), "-n", "higgs-system", "--kube-version", "1.35.0", *args
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_chart_exposes_the_metrics_port_and_no_servicemonitor_by_default():
    docs = render_operator_chart()
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert "--metrics-port=9102" in container["args"] and "--metrics-host=$(POD_IP)" in container["args"]
    assert {"name": "metrics", "containerPort": 9102} in container["ports"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert {"name": "metrics", "port": 9102, "targetPort": "metrics"} in service["spec"]["ports"]
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    off = render_operator_chart("--set", "metricsPort=0")
    container = next(d for d in off if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=0" in container["args"] and [p["name"] for p in container["ports"]] == ["health"]


def test_chart_servicemonitor_with_labels_interval_relabelings():
    docs = render_operator_chart(
        "--set", "serviceMonitor.enabled=true",
        "--set", "serviceMonitor.labels.release=kube-prometheus-stack",
        "--set", "serviceMonitor.interval=15s",
        "--set", "serviceMonitor.relabelings[0].targetLabel=cluster",
        "--set", "serviceMonitor.relabelings[0].replacement=eu-1",
    )  # fmt: skip
    (sm,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["higgs-system"]}
    (endpoint,) = sm["spec"]["endpoints"]
    # honorLabels: the series' own namespace/name labels (the HiggsDeployment's) are kept, not renamed.
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "honorLabels": True,
        "interval": "15s",
        "relabelings": [{"targetLabel": "cluster", "replacement": "eu-1"}],
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--set", "serviceMonitor.enabled=true", "--set", "metricsPort=0"),
            "serviceMonitor.enabled needs metricsPort > 0",
        ),
        (("--set", "serviceMonitor.interval=soon"), "interval"),
        (("--set", "metricsPort=70000"), "metricsPort"),
    ],
)
def test_chart_refuses_bad_metrics_values(args, expected):
    proc = run_helm("template", "op", str(OPERATOR_CHART), *args)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr


def _exposition(m: OperatorMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(m.registry).decode()
