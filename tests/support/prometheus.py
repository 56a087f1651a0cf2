"""A real Prometheus (Debian's package, `make tools`) for the observability tests: it discovers the serving
pods through the Kubernetes API as in a cluster, scrapes them and the operator every second, evaluates
the chart's alert rules, and answers PromQL over its HTTP API on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.ports import free_port
from tests.support.processes import wait_answering

TOOLS_BIN = Path(os.environ.get("HIGGS_CACHE", Path.home() / ".cache" / "higgs-k8s")) / "bin"
SERVING_JOB = "higgs-audio"
OPERATOR_JOB = "higgs-operator"


def tool(name: str) -> Path:
    """prometheus or promtool from $HIGGS_CACHE/bin, with the way to get it when it is missing."""
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} is missing: run `make tools` (hack/install-prometheus.sh)")
    return path


def serving_pods_job(kubeconfig: Path, namespaces: list[str], interval: str = "1s") -> dict[str, Any]:
    """Pod discovery with the relabeling the chart's ServiceMonitor amounts to: the higgs-audio chart's
    server pods (by their labels), their `http` port, and the `namespace`, `pod` and `container` target
    labels that the dashboard and the alert rules select on."""
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": SERVING_JOB,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [
            {"role": "pod", "kubeconfig_file": str(kubeconfig), "namespaces": {"names": namespaces}}
        ],
        "relabel_configs": [
            {
                "source_labels": [
                    f"{meta}label_app_kubernetes_io_name",
                    f"{meta}label_app_kubernetes_io_component",
                ],
                "regex": "higgs-audio;server",
                "action": "keep",
            },
            {"source_labels": [f"{meta}container_port_name"], "regex": "http", "action": "keep"},
            {"source_labels": [f"{meta}phase"], "regex": "Pending|Succeeded|Failed", "action": "drop"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}name"], "target_label": "pod"},
            {"source_labels": [f"{meta}container_name"], "target_label": "container"},
        ],
    }


def operator_job(port: int, interval: str = "1s") -> dict[str, Any]:
    """The operator's /metrics. honor_labels: its series carry the `namespace` of the HiggsDeployment
    they describe (as kube-state-metrics' do), which must not be renamed to exported_namespace."""
    return {
        "job_name": OPERATOR_JOB,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "honor_labels": True,
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
    }


def rule_groups(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `spec.groups` of the PrometheusRule objects a chart rendered: a rules file's content."""
    groups = [g for o in objects if o.get("kind") == "PrometheusRule" for g in o["spec"]["groups"]]
    assert groups, "the render holds no PrometheusRule (prometheusRule.enabled=true?)"
    return groups


class PrometheusProcess:
    """`prometheus` on a free 127.0.0.1 port with the given scrape jobs and rule groups."""

    def __init__(
        self,
        workdir: Path,
        jobs: list[dict[str, Any]],
        groups: list[dict[str, Any]] | None = None,
        evaluation_interval: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": evaluation_interval},
            "scrape_configs": jobs,
        }
        if groups:
            rules = workdir / "rules.yaml"
            rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
            config["rule_files"] = [str(rules)]
        self.config_path = workdir / "prometheus.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        cmd = [
            str(tool("prometheus")),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            wait_answering(
                self.proc, f"{self.url}/-/ready", "prometheus", lambda: self.log()[-3000:], timeout
            )
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _api(self, path: str, params: dict[str, str] | None = None) -> Any:
        resp = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = resp.json()
        if body.get("status") != "success":
            raise AssertionError(
                f"Prometheus /api/v1/{path} {params or ''} failed: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now; AssertionError with Prometheus's message on error."""
        data = self._api("query", {"query": expr})
        assert data["resultType"] == "vector", f"{expr}: a {data['resultType']}, not a vector"
        return list(data["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self._api(f"label/{label}/values", {"match[]": match}))

    def targets(self) -> list[dict[str, Any]]:
        return list(self._api("targets", {"state": "active"})["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self._api("rules")["groups"] for r in g["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._api("alerts")["alerts"])

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts() if a["labels"].get("alertname") == name and a["state"] == "firing"]
