"""The dashboard and the alerts against a real Prometheus on the local stack: Prometheus discovers the
serving pods of a HiggsDeployment through the API server, scrapes them and the operator every second and
evaluates the chart's rules (short `for`). Under a streaming load every dashboard query returns data; a
real fault (the serving processes killed over and over) fires HiggsAudioServerDown."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import yaml
from kubernetes import client

from tests.support import chart, kubetest
from tests.support.dashboard import panel_queries, substitute, variable_queries
from tests.support.faults import StreamResult, pids_listening_on, sigkill, stream_chat
from tests.support.higgsdeployment import create_token, get_hd, hd_body, wait_available
from tests.support.operator import HubProcess, OperatorProcess
from tests.support.prometheus import (
    SERVING_JOB,
    PrometheusProcess,
    operator_job,
    rule_groups,
    serving_pods_job,
)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.localstack(
        "Prometheus runs on this host and scrapes the pods' loopback IPs; the test kills serving processes "
        "found in this host's /proc; the fake Hugging Face hub runs on this host's 127.0.0.1"
    ),
    pytest.mark.timeout(240),
]

NAME = "tts"
# Queries that cannot return data on the local stack, with why (the dashboard keeps them for real
# clusters; here they must still run without error).
NO_DATA_HERE = {
    "kube_pod_container_status_restarts_total": "kube-state-metrics does not run on the local stack",
    "kube_pod_init_container_status_restarts_total": "kube-state-metrics does not run on the local stack",
}
# Rule values for a test: every alert fires after 1-2 s instead of minutes.
FAST_RULES = {
    "serverDown": {"for": "2s"},
    "queueBuilding": {"for": "1s"},
    "kvCacheNearFull": {"for": "1s"},
    "firstAudioSlow": {"for": "1s", "window": "10s"},
    "autoscalerAtMax": {"for": "1s"},
    "crashLooping": {"window": "1m"},
    "modelDownloadFailing": {"window": "1m"},
}


@dataclass
class Observed:
    namespace: str
    prometheus: PrometheusProcess
    operator: OperatorProcess


def _namespace(cluster: kubetest.Cluster) -> str:
    name = f"t-observability-{secrets.token_hex(3)}"
    cluster.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={kubetest.NAMESPACE_LABEL: "true"}))
    )
    kubetest.wait_for(
        lambda: cluster.core.read_namespaced_service_account("default", name),
        30,
        what="ServiceAccount default",
    )
    return name


@pytest.fixture(scope="module")
def observed(
    cluster: kubetest.Cluster,
    operator: OperatorProcess,
    hub: HubProcess,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Observed]:
    """A HiggsDeployment (one sequence slot per replica, autoscaled 1-2 on waiting requests) and a
    Prometheus that scrapes it and the operator, with the chart's rules rendered for it."""
    ns = _namespace(cluster)
    prom: PrometheusProcess | None = None
    failed_before = request.session.testsfailed
    try:
        create_token(cluster, ns)
        autoscaling = {
            "minReplicas": 1,
            "maxReplicas": 2,
            "targetWaitingRequestsPerReplica": 1,
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": 600,  # stays at 2 for the rest of the module
            "pollSeconds": 1,
        }
        body = hd_body(NAME, hub, maxNumSeqs=1, autoscaling=autoscaling)
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))
        wait_available(cluster, ns, NAME, timeout=90)
        # The rules as a user renders them for this HiggsDeployment (README, Alerts).
        values = {"fullnameOverride": NAME, "prometheusRule": {"enabled": True, **FAST_RULES}}
        groups = rule_groups(chart.render(values, release=NAME, namespace=ns))
        jobs = [serving_pods_job(cluster.kubeconfig, [ns]), operator_job(operator.metrics_port)]
        prom = PrometheusProcess(tmp_path_factory.mktemp("prometheus"), jobs, groups)
        prom.start()
        yield Observed(ns, prom, operator)
    finally:
        if prom is not None:
            prom.stop()
            if request.session.testsfailed > failed_before:
                print(f"\n--- prometheus log (last 4000 chars) ---\n{prom.log()[-4000:]}")
        cluster.core.delete_namespace(ns, propagation_policy="Background")


def serving_pod_ips(cluster: kubetest.Cluster, ns: str) -> list[str]:
    pods = cluster.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=server").items
    return [
        p.status.pod_ip
        for p in pods
        if p.status and p.status.pod_ip and p.metadata and p.metadata.deletion_timestamp is None
    ]


def load(url: str, streams: int, stop: threading.Event) -> list[threading.Thread]:
    """`streams` closed-loop streamed chat completions to `url` until `stop` is set."""

    def loop() -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                stream_chat(url, StreamResult(), max_tokens=400, read_timeout=20, client=c)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(streams)]
    for t in threads:
        t.start()
    return threads


def answers(prom: PrometheusProcess, expr: str) -> str:
    """'' when `expr` returns at least one finite sample now, else what it returned."""
    result = prom.query(expr)  # raises with Prometheus's error
    values = [float(r["value"][1]) for r in result]
    if any(math.isfinite(v) for v in values):
        return ""
    return f"no finite sample ({len(result)} series: {values[:4]})"


def test_every_dashboard_query_returns_data_under_load(cluster: kubetest.Cluster, observed: Observed):
    ns, prom = observed.namespace, observed.prometheus
    kubetest.wait_for(
        lambda: any(t["labels"].get("job") == SERVING_JOB and t["health"] == "up" for t in prom.targets()),
        20,
        describe=lambda: str(prom.targets()),
        what="Prometheus to scrape a serving pod it discovered through the API server",
    )
    queries = {
        f"{title} / {legend}": substitute(expr, namespace=ns, job=SERVING_JOB)
        for title, legend, expr in panel_queries()
    }
    expect_data = {k: q for k, q in queries.items() if not any(m in q for m in NO_DATA_HERE)}
    assert len(queries) - len(expect_data) == 2, "only the kube-state-metrics panel may stay empty here"
    missing: dict[str, str] = {}

    def all_answer() -> bool:
        missing.clear()
        for key, q in expect_data.items():
            if why := answers(prom, q):
                missing[key] = why
        return not missing

    stop = threading.Event()
    threads = load(f"http://{serving_pod_ips(cluster, ns)[0]}:8000", 4, stop)
    started = time.monotonic()
    try:
        # The load queues (one slot per replica), so the operator scales to its maximum of 2: the
        # scaling panels get their series too.
        kubetest.wait_for(
            all_answer,
            60,
            describe=lambda: "\n".join(f"{k}: {why}\n  {queries[k]}" for k, why in missing.items()),
            interval=2,
            what="every dashboard query to return data",
        )
        print(f"\nevery dashboard query returned data {time.monotonic() - started:.1f} s into the load")
        # Audio is being made: the derived audio seconds per second is above zero, not just present.
        audio = next(q for k, q in queries.items() if k.startswith("Audio seconds per second"))
        assert float(prom.query(f"sum({audio})")[0]["value"][1]) > 0, audio
        for key, q in queries.items():
            if key not in expect_data:
                assert prom.query(q) == [], f"{key}: data without kube-state-metrics?"
        # The panel variables resolve, as Grafana's label_values() asks Prometheus.
        for name, definition in variable_queries().items():
            match, _, label = definition.removeprefix("label_values(").removesuffix(")").rpartition(", ")
            match = substitute(match, namespace=ns, job=SERVING_JOB)
            assert prom.label_values(label, match), f"variable {name}: no values for {definition}"
        # Every rule evaluates against real series without error; the autoscaler is pinned at 2 of 2.
        rules = prom.rules()
        assert len(rules) == 7 and all(r["health"] == "ok" for r in rules), rules
        at_max = kubetest.wait_for(
            lambda: prom.firing("HiggsAudioAutoscalerAtMax"), 15, what="HiggsAudioAutoscalerAtMax to fire"
        )
        assert at_max[0]["labels"]["name"] == NAME and at_max[0]["labels"]["namespace"] == ns
    finally:
        stop.set()
        for t in threads:
            t.join(25)
    assert get_hd(cluster, ns, NAME)["status"].get("desiredReplicas") == 2


def test_server_down_fires_when_every_serving_process_is_killed(
    cluster: kubetest.Cluster, observed: Observed
):
    ns, prom = observed.namespace, observed.prometheus
    kubetest.wait_for(lambda: prom.query(f'up{{namespace="{ns}"}} == 1'), 30, what="a serving pod scraped up")
    assert not prom.firing("HiggsAudioServerDown"), "fires before any fault"
    ips = serving_pod_ips(cluster, ns)
    assert ips, f"no serving pod with an IP in {ns}"
    killed: list[int] = []

    def kill_until_firing() -> list[dict]:
        # Restarted servers are killed again at once: a crash loop with nothing serving.
        for ip in ips:
            pids = pids_listening_on(ip)
            sigkill(pids)
            killed.extend(pids)
        return prom.firing("HiggsAudioServerDown")

    up = f'up{{namespace="{ns}"}}'
    started = time.monotonic()
    firing = kubetest.wait_for(
        kill_until_firing,
        45,
        describe=lambda: f"{up}: {prom.query(up)}\nalerts: {prom.alerts()}",
        interval=0.3,
        what="HiggsAudioServerDown to fire",
    )
    print(
        f"\nHiggsAudioServerDown fired {time.monotonic() - started:.1f} s after the first kill ({len(killed)} kills)"
    )
    assert killed, f"no serving process found for the pod IPs {ips}"
    alert = firing[0]
    assert alert["labels"]["namespace"] == ns and alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == f"No replica of {ns}/{NAME} is serving."
    assert alert["annotations"]["runbook_url"].endswith("README.md#higgsaudioserverdown")
