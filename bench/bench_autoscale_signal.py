"""Autoscaling on streams vs on the queue (issue #16 item 5): which one scales out before the
time-to-first-audio SLO is missed. `make bench BENCH_ARGS=autoscale`; bounded, about 2.5 minutes.

On the local stack, two HiggsDeployments serve the simulator with a small real-time capacity per
replica: `--max-num-seqs 6` slots, `--sim-slowdown 10` (one decode step about 32 ms, so 6 streams still
run faster than real time and a request's first audio comes after about 1 s). A seventh concurrent
request on one replica waits for a slot, seconds, and misses a TTFA SLO of 2 s. Each deployment gets
the same ramp: one closed-loop user more every 6 s up to 8, through its Service (a new connection per
request, so a new pod gets its share as soon as it is ready). One scales on
`targetStreamsPerReplica` (4: the capacity search's spec for 6 real-time streams per replica,
higgs_load.capacity_spec), the other on `targetWaitingRequestsPerReplica: 1` only. Both poll every
second, maxReplicas 2.

Printed per deployment: the first scale-out (the Deployment's replicas going above 1) and the first
SLO miss (the moment a request had waited the SLO without audio: its start + 2 s), both in seconds
since the load began, and their ratio; then whether the streams signal scaled out before any miss
while the queue signal missed first. The streams signal sees the 5th stream on a 6-slot replica; the
queue signal sees nothing until requests wait, which is when they start missing the SLO.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from higgs_load.capacity_spec import streams_target
from tests.support import kubetest
from tests.support.higgsdeployment import MODEL, create_token, get_hd, hd_body
from tests.support.operator import HubProcess, OperatorProcess

REPO = Path(__file__).resolve().parents[1]
NS = "bench-autoscale"
SLO_TTFA_S = 2.0
MAX_NUM_SEQS = 6  # one replica's real-time capacity, in streams
SLOWDOWN = 10.0
STEP_S = 6.0  # one user more every STEP_S
USERS = 8
TAIL_S = 8.0  # held at USERS after the last step
TEXT = (
    "The train to Berlin leaves from platform nine at half past seven; please have your tickets ready "
    "and mind the gap."
)  # about 7.5 s of speech: a request takes about 6 s at this slowdown
VARIANTS = {
    "streams": {"targetStreamsPerReplica": streams_target(MAX_NUM_SEQS)},
    "queue": {"targetWaitingRequestsPerReplica": 1},
}
COMMON = {"minReplicas": 1, "maxReplicas": 2, "pollSeconds": 1, "scaleDownStabilizationSeconds": 300}


@dataclass
class Request:
    start: float  # seconds since the load began
    ttfa: float | None = None  # seconds to the first audio byte
    end: float | None = None
    error: str | None = None


def _user(url: str, t0: float, stop: threading.Event, out: list[Request]) -> None:
    body = {"model": MODEL, "input": TEXT, "voice": "belinda", "response_format": "pcm"}
    # No keep-alive: every request is a new connection, which the Service spreads over its endpoints.
    with httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while not stop.is_set():
            req = Request(time.monotonic() - t0)
            out.append(req)
            try:
                with client.stream("POST", f"{url}/v1/audio/speech", json=body) as resp:
                    resp.raise_for_status()
                    for chunk in resp.iter_raw():
                        if chunk and req.ttfa is None:
                            req.ttfa = time.monotonic() - t0 - req.start
            except httpx.HTTPError as err:
                req.error = f"{type(err).__name__}: {err}"[:200]
                time.sleep(0.5)
            req.end = time.monotonic() - t0


def _first_miss(requests: list[Request], now: float) -> float | None:
    """When a request had first waited the SLO without audio (its start + SLO), in load seconds."""
    misses = [
        r.start + SLO_TTFA_S
        for r in requests
        if (r.ttfa is not None and r.ttfa > SLO_TTFA_S)
        or (r.ttfa is None and (r.end if r.end is not None else now) - r.start > SLO_TTFA_S)
    ]
    return min(misses, default=None)


def run_variant(cluster: kubetest.Cluster, name: str) -> dict:
    url = kubetest.routed_service_url(cluster, NS, name, backends=1)
    requests: list[Request] = []
    stop = threading.Event()
    scaled: list[float] = []
    t0 = time.monotonic()

    def watch() -> None:
        while not stop.is_set():
            if not scaled and (cluster.apps.read_namespaced_deployment(name, NS).spec.replicas or 0) > 1:
                scaled.append(time.monotonic() - t0)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    users = []
    for i in range(USERS):
        deadline = t0 + i * STEP_S
        time.sleep(max(0.0, deadline - time.monotonic()))
        users.append(threading.Thread(target=_user, args=(url, t0, stop, requests), daemon=True))
        users[-1].start()
    time.sleep(max(0.0, t0 + (USERS - 1) * STEP_S + TAIL_S - time.monotonic()))
    run_s = time.monotonic() - t0
    miss = _first_miss(requests, run_s)  # at the end of the ramp: what came later is not this load
    stop.set()
    for t in users:
        t.join(timeout=30)
    watcher.join(timeout=5)
    status = get_hd(cluster, NS, name).get("status") or {}
    scale_out = scaled[0] if scaled else None
    ttfas = sorted(r.ttfa for r in requests if r.ttfa is not None)
    return {
        "spec": {"autoscaling": {**VARIANTS[name], **COMMON}},
        "scale_out_s": _r(scale_out),
        "first_slo_miss_s": _r(miss),
        "scale_out_over_miss": _r(scale_out / miss) if scale_out is not None and miss else None,
        "scaled_before_miss": scale_out is not None and (miss is None or scale_out < miss),
        "signal": (status.get("lastScaling") or {}).get("signal"),
        "run_s": _r(run_s),
        "requests": len(requests),
        "errors": sum(1 for r in requests if r.error),
        "ttfa_p50_s": _r(statistics.median(ttfas)) if ttfas else None,
        "ttfa_max_s": _r(ttfas[-1]) if ttfas else None,
        "requests_over_slo": sum(1 for t in ttfas if t > SLO_TTFA_S),
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _line(name: str, r: dict) -> str:
    scale = f"{r['scale_out_s']} s" if r["scale_out_s"] is not None else f"never in {r['run_s']} s"
    miss = f"{r['first_slo_miss_s']} s" if r["first_slo_miss_s"] is not None else f"never in {r['run_s']} s"
    ratio = r["scale_out_over_miss"]
    if ratio is None and r["scale_out_s"] is not None:
        ratio_text = f"< {r['scale_out_s'] / r['run_s']:.2f} (no miss: the run's length as the bound)"
    else:
        ratio_text = "n/a" if ratio is None else f"{ratio:.2f}"
    return (
        f"{name:8s} first scale-out {scale}, first TTFA SLO ({SLO_TTFA_S:g} s) miss {miss}; "
        f"scale-out / miss = {ratio_text}; decided by {r['signal'] or 'nothing'}"
    )


def main() -> int:
    cluster = kubetest.ensure_cluster()
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "charts/higgs-operator/crds")
    )
    cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=120)
    cluster.kubectl("create", "namespace", NS)
    kubetest.wait_for(lambda: cluster.core.read_namespaced_service_account("default", NS), 30)
    create_token(cluster, NS)
    hub = HubProcess()
    op = OperatorProcess(Path("/tmp/bench-autoscale-operator.log"))
    results: dict = {}
    try:
        op.start()
        for name, target in VARIANTS.items():
            body = hd_body(
                name,
                hub,
                maxNumSeqs=MAX_NUM_SEQS,
                extraArgs=["--sim-slowdown", f"{SLOWDOWN:g}", "--sim-startup-seconds", "0"],
                autoscaling={**target, **COMMON},
            )
            cluster.kubectl("apply", "-n", NS, "-f", "-", input=yaml.safe_dump(body))
        for name in VARIANTS:
            kubetest.wait_for_condition(
                cluster.api, f"higgsdeployment/{name}", "Available", namespace=NS, timeout=90
            )
        for name in VARIANTS:
            results[name] = run_variant(cluster, name)
    finally:
        op.stop()
        hub.stop()
        cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
    print(
        yaml.safe_dump(
            {
                "autoscale_signal": {
                    "load": {
                        "users": f"1 more every {STEP_S:g} s up to {USERS}, then {TAIL_S:g} s held",
                        "replica_capacity_streams": MAX_NUM_SEQS,
                        "sim_slowdown": SLOWDOWN,
                        "slo_ttfa_s": SLO_TTFA_S,
                    },
                    **results,
                }
            },
            sort_keys=False,
        )
    )
    for name, r in results.items():
        print(_line(name, r))
    streams, queue = results["streams"], results["queue"]
    streams_ok = streams["scaled_before_miss"]
    queue_missed_first = queue["first_slo_miss_s"] is not None and not queue["scaled_before_miss"]
    print(
        f"verdict: streams scaled out before any SLO miss: {'yes' if streams_ok else 'NO'}; "
        f"queue signal missed the SLO before scaling out: {'yes' if queue_missed_first else 'NO'}"
    )
    return 0 if streams_ok and queue_missed_first else 1


if __name__ == "__main__":
    raise SystemExit(main())
