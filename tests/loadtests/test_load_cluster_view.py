"""--higgsdeployment against a real HiggsDeployment: Locust samples its status and events while the operator
scales it 1 -> 2, and the report shows the operator's view (higgs_load.cluster_view, autoscale_view)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import kubetest
from tests.support.higgsdeployment import create_token, hd_body, wait_available
from tests.support.locust import locust_cmd, run_bounded

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

HOLD_S = 5  # each capacity level; 1, 2, 4, 8 streams: about 20 s of load


@pytest.mark.localstack(
    "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it; "
    "Locust runs on this host and loads the Service's ClusterIP (the node agent's loopback proxy)"
)
def test_the_report_shows_the_operators_scale_up_and_refuses_a_per_replica_figure(
    cluster: kubetest.Cluster, operator, hub, namespace: str, tmp_path: Path
):
    create_token(cluster, namespace)
    # One stream at a time per replica (maxNumSeqs 1): at 4 streams 3 wait, and the operator asks for 2.
    # Scale-down waits 120 s, past the run, so the count only rises.
    spec = {
        "maxNumSeqs": 1,
        "extraArgs": ["--sim-startup-seconds", "1", "--sim-slowdown", "3"],
        "autoscaling": {
            "minReplicas": 1,
            "maxReplicas": 2,
            "targetWaitingRequestsPerReplica": 1,
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": 120,
            "pollSeconds": 1,
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hd_body("view", hub, **spec)))
    wait_available(cluster, namespace, "view")
    url = kubetest.routed_service_url(cluster, namespace, "view", backends=1)
    cmd = locust_cmd(url, tmp_path, "--headless", "--shape", "capacity")
    cmd += ["--step-hold", str(HOLD_S), "--capacity-min-requests", "2", "--capacity-max-streams", "8"]
    cmd += ["--mix", "stream=1", "--prompt-lengths", "short", "--slo-ttfa-ms", "30000", "--no-plots"]
    cmd += ["--higgsdeployment", f"{namespace}/view", "--run-time", "90s"]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    rc = run_bounded(cmd, 120, tmp_path / "locust.log", env=env)
    log = (tmp_path / "locust.log").read_text()
    assert rc == 0, log[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    c = summary["cluster"]
    assert c["higgsdeployment"] == f"{namespace}/view" and not c["errors"], c["errors"]
    # The replica timeline: about one sample a second, ready 1 then 2, in time order.
    assert len(c["samples"]) >= 3 * HOLD_S, len(c["samples"])
    ready = [s["ready"] for s in c["samples"]]
    assert ready[0] == 1 and ready[-1] == 2, ready
    assert ready == sorted(ready), ready
    assert (c["replicas_min"], c["replicas_max"], c["replicas_changed"]) == (1, 2, True)
    t_rel = [s["t_rel"] for s in c["samples"]]
    assert t_rel == sorted(t_rel) and -2 < t_rel[0] < 3, t_rel[:3]
    # One scale-up, after a load step, decided and then Ready within plausible times.
    (up,) = c["scale_ups"]
    assert (up["from"], up["to"]) == (1, 2), up
    assert up["step_users"] in (2, 4, 8), up
    assert 0 <= up["step_to_decision_s"] <= 3 * HOLD_S, up
    assert up["step_to_ready_s"] is not None, up
    assert up["step_to_decision_s"] <= up["step_to_ready_s"] <= up["step_to_decision_s"] + 30, up
    assert up["requests_before_ready"] > 0 and up["ttfa_before_ready_ms"]["p50"] > 0, up
    assert c["ttfa_after_ready_ms"] is not None
    # The operator's Scaled event, inside the run.
    scaled = [e for e in c["events"] if e["reason"] == "Scaled" and e["kind"] == "HiggsDeployment"]
    assert scaled and "1 -> 2" in scaled[0]["message"], c["events"]
    assert 0 <= scaled[0]["t_rel"] <= summary["stopped"] - summary["started"] + 2, scaled
    # The capacity figure is not per replica: the count changed.
    cap = summary["capacity_search"]
    assert cap["per_unit"] is None and cap["replicas"] is None, cap
    assert "the replica count changed during the run (1 to 2)" in cap["refused_per_replica"]
    md = (tmp_path / "summary.md").read_text()
    assert f"## The operator's view ({namespace}/view)" in md
    assert "Replicas (ready) during the run: 1 to 2" in md
    assert "| 1 -> 2 |" in md and "Scaled" in md
    assert "no per-replica figure" in md and "real-time streams per replica" not in md
