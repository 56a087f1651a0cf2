"""Soak: the operator autoscales a HiggsDeployment between 1 and 3 replicas under a load that varies over
time; no request is lost, and the operator's and the load generator's memory stay flat.

Run by `make soak` only (marker `soak`). Length: $SOAK_SECONDS of load (default 600, at most 780 so the
whole test stays within 15 minutes). Figures are printed: requests, failures, replica range, RSS."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import kubetest
from tests.support.faults import StreamResult, stream_chat
from tests.support.higgsdeployment import create_token, get_hd, hd_body, wait_available
from tests.support.operator import HubProcess, OperatorProcess

LOAD_SECONDS = min(float(os.environ.get("SOAK_SECONDS", "600")), 780.0)
pytestmark = [pytest.mark.soak, pytest.mark.cluster, pytest.mark.timeout(900)]

MAX_WORKERS = 8
RSS_GROWTH_LIMIT = 0.20
SAMPLE_EVERY_S = 5.0
# Concurrency over one period of the load: low, rising, peak, falling (repeats over LOAD_SECONDS).
PROFILE = [1, 2, 4, 8, 8, 4, 2, 1]
PERIOD_S = 120.0
SPEC = {
    "maxNumSeqs": 2,  # a small batch, so a few clients queue requests and drive the autoscaler
    "extraArgs": ["--sim-startup-seconds", "1"],
    "autoscaling": {
        "minReplicas": 1,
        "maxReplicas": 3,
        "targetWaitingRequestsPerReplica": 1,
        "scaleUpStabilizationSeconds": 0,
        "scaleDownStabilizationSeconds": 15,
        "pollSeconds": 1,
    },
    # A scale-down must not drop requests: stay in the endpoints a moment, then drain on SIGTERM.
    "lifecycle": {"preStopSleepSeconds": 2},
    "terminationGracePeriodSeconds": 30,
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def concurrency_at(elapsed: float) -> int:
    return PROFILE[int((elapsed % PERIOD_S) / PERIOD_S * len(PROFILE))]


def growth(samples: list[int]) -> tuple[float, float, float]:
    third = max(1, len(samples) // 3)
    first, last = statistics.mean(samples[:third]), statistics.mean(samples[-third:])
    return first, last, (last - first) / first


def test_soak_autoscaling_no_lost_requests_flat_memory(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess
) -> None:
    assert operator.proc is not None
    create_token(cluster, namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(hd_body("soak", hub, **SPEC)))
    wait_available(cluster, namespace, "soak", timeout=120)
    url = kubetest.routed_service_url(cluster, namespace, "soak", backends=1)

    results: list[StreamResult] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + LOAD_SECONDS

    def worker(index: int) -> None:
        # One client per simulated listener, as a load generator keeps its connections.
        with httpx.Client() as client:
            while (now := time.monotonic()) < stop_at:
                if index >= concurrency_at(now - start):
                    time.sleep(0.5)
                    continue
                result = StreamResult()
                stream_chat(url, result, max_tokens=300, read_timeout=60, client=client)
                with lock:
                    results.append(result)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(MAX_WORKERS)]
    for w in workers:
        w.start()
    op_rss: list[int] = []
    gen_rss: list[int] = []
    replicas: list[int] = []
    while time.monotonic() < stop_at:
        op_rss.append(rss_kib(operator.proc.pid))
        gen_rss.append(rss_kib(os.getpid()))
        replicas.append(cluster.apps.read_namespaced_deployment("soak", namespace).spec.replicas)
        assert operator.proc.poll() is None, f"operator died:\n{operator.log()[-3000:]}"
        time.sleep(SAMPLE_EVERY_S)
    for w in workers:
        w.join(90)
    assert not any(w.is_alive() for w in workers), "a load worker hangs"

    failed = [r.error for r in results if not r.done or not r.frames]
    op_first, op_last, op_growth = growth(op_rss)
    gen_first, gen_last, gen_growth = growth(gen_rss)
    status = get_hd(cluster, namespace, "soak").get("status") or {}
    print(
        f"\n[soak] {LOAD_SECONDS:.0f} s of load: {len(results)} streamed requests, {len(failed)} failed; "
        f"replicas min {min(replicas)} max {max(replicas)} (last scaling: {status.get('lastScaling')})\n"
        f"[soak] operator RSS first third {op_first / 1024:.1f} MiB, last third {op_last / 1024:.1f} MiB "
        f"({op_growth:+.1%}); load generator RSS {gen_first / 1024:.1f} -> {gen_last / 1024:.1f} MiB "
        f"({gen_growth:+.1%}); {len(op_rss)} samples"
    )
    assert results and not failed, f"{len(failed)} of {len(results)} requests lost: {failed[:5]}"
    assert min(replicas) >= 1 and max(replicas) <= 3, replicas
    if LOAD_SECONDS >= PERIOD_S:  # one full period of the profile: it must have scaled up
        assert max(replicas) >= 2, f"never scaled up: {replicas}"
    assert op_growth < RSS_GROWTH_LIMIT, f"operator RSS grew {op_growth:.1%}"
    assert gen_growth < RSS_GROWTH_LIMIT, f"load generator RSS grew {gen_growth:.1%}"
