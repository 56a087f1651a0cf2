"""The operator and the fake Hugging Face hub as host processes, for cluster tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from tests.support.processes import wait_answering

REPO = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """`higgs-operator run --all-namespaces` against $KUBECONFIG, with health and metrics endpoints on
    loopback."""

    def __init__(self, log_path: Path, *extra: str) -> None:
        self.log_path = log_path
        self.extra = extra
        self.port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        cmd = [
            sys.executable, "-m", "higgs_operator.cli", "run", "--all-namespaces", "--standalone",
            "--chart", str(REPO / "charts" / "higgs-audio"),
            "--liveness", f"http://127.0.0.1:{self.port}/healthz",
            "--metrics-port", str(self.metrics_port), "--metrics-host", "127.0.0.1",
            "--resync-seconds", "15", "--status-seconds", "1", *self.extra,
        ]  # fmt: skip
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ)
        )
        healthz = f"http://127.0.0.1:{self.port}/healthz"
        wait_answering(self.proc, healthz, "operator", lambda: self.log()[-3000:], timeout, interval=0.3)

    def health(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json()

    def metrics(self) -> str:
        """The operator's own Prometheus text (/metrics)."""
        resp = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2)
        resp.raise_for_status()
        return resp.text

    def sample(self, metric: str, /, **labels: str) -> float | None:
        """The value of the operator's sample ``metric`` with exactly ``labels`` (None: absent)."""
        for family in text_string_to_metric_families(self.metrics()):
            for s in family.samples:
                if s.name == metric and s.labels == labels:
                    return float(s.value)
        return None

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the running process (from /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class HubProcess:
    """The simulator's fake Hugging Face hub on a loopback port (the chart's download goes there)."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "higgs_sim.hub", "--listen", f"127.0.0.1:{self.port}", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        )  # fmt: skip
        try:  # any answer will do: the hub has no health endpoint (its output goes nowhere)
            wait_answering(self.proc, self.url, "fake hub", lambda: "", 20, accept=lambda _: True)
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def speech_load(
    url: str, model: str, text: str, workers: int, stop: threading.Event
) -> list[threading.Thread]:
    """`workers` closed-loop threads posting /v1/audio/speech to `url` until `stop` is set: a queue for
    the autoscaler to see."""

    body = {"model": model, "input": text, "voice": "belinda", "response_format": "pcm"}

    def worker() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"{url}/v1/audio/speech", json=body)
                except httpx.HTTPError:
                    time.sleep(0.2)
                    continue
                if 400 <= r.status_code < 500:  # a refused request makes no queue: say why, stop
                    print(f"speech_load: HTTP {r.status_code} {r.text[:300]}", file=sys.stderr, flush=True)
                    return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    return threads
