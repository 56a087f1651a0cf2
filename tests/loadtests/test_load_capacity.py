"""--shape capacity: the search (exponential probe, then bisection) on synthetic service models, its
confidence statement, the per-replica refusal, the operator's view from sampled status, and one short
run on the simulator whose capacity its timing model and batch limit predict."""

from __future__ import annotations

import json

import pytest

from higgs_load.autoscale_view import Sample, cluster_summary, scale_ups
from higgs_load.capacity_report import extra_markdown, extra_plots
from higgs_load.capacity_search import (
    CapacityController,
    CapacitySearch,
    LevelResult,
    capacity_summary,
    per_unit,
    wilson_interval,
)
from higgs_load.capacity_spec import streams_target
from higgs_load.metrics import SLO
from higgs_load.records import RequestRecord
from higgs_sim.timing import FRAMES_PER_SECOND, StepTimeModel
from tests.support.locust import locust_cmd, run_bounded
from tests.support.simulator import start_sim


def _search(capacity: int, max_streams: int = 256, n: int = 100) -> tuple[int, list[int]]:
    s = CapacitySearch(0.95, max_streams)
    order = []
    while (level := s.next_level()) is not None:
        order.append(level)
        s.record(LevelResult(level, n, n if level <= capacity else n // 2))
    return s.answer(), order


@pytest.mark.parametrize("capacity", [0, 1, 2, 3, 5, 7, 8, 13, 64, 100, 255])
def test_the_search_finds_a_sharp_capacity_exactly(capacity):
    found, order = _search(capacity)
    assert found == capacity, order
    assert order[: min(len(order), 3)] == [1, 2, 4][: min(len(order), 3)]
    assert len(order) <= 2 * max(1, capacity).bit_length() + 1  # log steps, not a linear walk


def test_the_search_stops_at_its_ceiling():
    found, order = _search(10_000, max_streams=12)
    assert found == 12 and order == [1, 2, 4, 8, 12]


def test_wilson_interval():
    lo, hi = wilson_interval(95, 100)
    assert 0.887 < lo < 0.889 and 0.978 < hi < 0.980
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def _records(level: int, t0: float, t1: float, limit: int) -> list[RequestRecord]:
    """A service model: `limit` slots; above it every request waits half a request for a slot."""
    out, t = [], t0
    while t < t1:
        for _ in range(level):
            ttfa = 0.3 if level <= limit else 1.2
            out.append(RequestRecord("stream", t, ok=True, duration_s=1.0, ttfa_s=ttfa, audio_s=3.0))
        t += 1.0
    return out


def test_the_controller_holds_judges_and_moves_to_the_next_level():
    ctrl = CapacityController(CapacitySearch(0.95, 64), SLO(ttfa_ms=500, rtf=1.0), hold_s=10, min_requests=5)
    now, records, users = 1000.0, [], ctrl.users_at(1000.0, [])
    while users is not None:
        records += _records(users, now, now + 10, limit=6)
        now += 10
        assert ctrl.users_at(now - 5, records) == users  # still held
        users = ctrl.users_at(now, records)
    assert ctrl.search.answer() == 6
    assert [lv.streams for lv in ctrl.levels] == [1, 2, 4, 8, 6, 7]
    # The first quarter of each level is left out, and requests still in flight are not judged.
    assert ctrl.windows[0][1] == 1000.0 + 2.5


def test_the_summary_states_confidence_and_refuses_per_replica_when_replicas_changed(tmp_path):
    search = CapacitySearch(0.95, 8)
    for lv, good in ((1, 40), (2, 40), (4, 20), (3, 39)):
        search.record(LevelResult(lv, 40, good, {"ttfa_p95_ms": 300.0, "rtf_p99": 0.4}))
    slo = SLO(ttfa_ms=500, rtf=1.0, underrun_s=0.0)
    c = capacity_summary(search, slo, [], replicas_seen=[2, 2], prebuffer_ms=200)
    assert c["streams"] == 3 and c["per_unit"] == 1.5 and c["unit"] == "per replica"
    assert c["sentence"].startswith(
        "1.5 real-time streams per replica at TTFA p95 <= 500 ms, RTF p99 < 1, no underrun with a 200 ms "
        "pre-buffer"
    )
    assert (
        "40 requests" in c["sentence"] and "Wilson" in c["sentence"] and "margin +2.5 points" in c["sentence"]
    )
    changed = capacity_summary(search, slo, [], replicas_seen=[1, 2, 2])
    assert changed["per_unit"] is None and "replica count changed" in changed["sentence"]
    assert per_unit([], None, "http://x:8000")[1] == "per server behind http://x:8000"
    summary = {"capacity_search": c, "slo": {"ttfa_ms": 500, "rtf": 1.0}}
    assert "| 3 | 40 | 97.5 %" in "\n".join(extra_markdown(summary))
    assert [p.name for p in extra_plots(summary, tmp_path)] == ["capacity_curve.png"]


def test_the_operators_view_times_the_scale_up_and_the_ttfa_before_ready(tmp_path):
    t0 = 1000.0
    samples = [Sample(t0 + i, 1 if i < 6 else 2, 1 if i < 9 else 2, 1 if i < 4 else 2) for i in range(12)]
    steps = [(2, t0), (6, t0 + 2)]
    recs = [
        RequestRecord("stream", t0 + i, ok=True, duration_s=1, ttfa_s=2.0 if i < 9 else 0.3, audio_s=2)
        for i in range(12)
    ]
    (up,) = scale_ups(samples, steps, recs)
    assert (up["from"], up["to"], up["step_users"]) == (1, 2, 6)
    assert up["step_to_decision_s"] == 2 and up["step_to_ready_s"] == 7
    assert up["requests_before_ready"] == 7 and up["ttfa_before_ready_ms"]["p50"] == 2000
    events = [{"t": t0 + 4, "type": "Normal", "reason": "Scaled", "message": "1 -> 2"}]
    c = cluster_summary("ns/hd", samples, events, steps, recs, t0)
    assert c["replicas_changed"] and c["ttfa_after_ready_ms"]["p50"] == 300
    summary = {"cluster": c, "started": t0}
    text = "\n".join(extra_markdown(summary))
    assert "| 1 -> 2 | 6 users | 2.0 s | 7.0 s | 7 |" in text and "Scaled" in text
    assert [p.name for p in extra_plots(summary, tmp_path)] == ["replicas.png"]


MAX_NUM_SEQS = 2
SLOWDOWN = 3.0


def predicted_capacity() -> int:
    """What the simulator's model predicts: the largest concurrency whose per-stream decode rate stays
    above real time (the timing model), capped by the batch limit: above it a request waits for a whole
    stream to end, half a request's time on average, which is past the TTFA SLO below."""
    model = StepTimeModel(SLOWDOWN)
    realtime = max(b for b in range(1, 512) if 1 / (model.step_seconds(b, 512) * FRAMES_PER_SECOND) >= 1.0)
    return min(realtime, MAX_NUM_SEQS)


@pytest.mark.timeout(90)
def test_capacity_search_on_the_simulator_finds_the_predicted_capacity(tmp_path):
    # Short prompts at slowdown 3: first audio after 32 steps of ~10 ms (~0.35 s), a stream ~1 s long;
    # a request queued behind the batch limit waits ~0.5 s more: a 500 ms TTFA SLO separates the two.
    predicted = predicted_capacity()
    s = start_sim(
        tmp_path,
        "--max-num-seqs",
        str(MAX_NUM_SEQS),
        "--sim-profile",
        "raw",
        "--sim-slowdown",
        str(SLOWDOWN),
        "--sim-startup-seconds",
        "0",
    )
    try:
        cmd = locust_cmd(s.url, tmp_path, "--headless", "--shape", "capacity", "--step-hold", "4")
        cmd += ["--capacity-min-requests", "3", "--mix", "stream=1", "--prompt-lengths", "short"]
        cmd += ["--slo-ttfa-ms", "500", "--slo-rtf", "1", "--capacity-max-streams", "16"]
        rc = run_bounded(cmd, 60, tmp_path / "locust.log")
    finally:
        s.stop()
    assert rc == 0, (tmp_path / "locust.log").read_text()[-3000:]
    c = json.loads((tmp_path / "summary.json").read_text())["capacity_search"]
    assert abs(c["streams"] - predicted) <= 1, (predicted, c["levels"])
    assert c["complete"] and c["unit"].startswith("per server behind")
    assert [r["streams"] for r in c["levels"]][:2] == [1, 2]
    md = (tmp_path / "summary.md").read_text()
    assert "## Capacity search" in md and "real-time streams per server" in md
    assert (tmp_path / "capacity_curve.png").stat().st_size > 1000
    # The spec to paste, in the summary and the report (higgs_load.capacity_spec).
    target = c["autoscaling"]["targetStreamsPerReplica"]
    assert target == streams_target(c["streams"])
    assert f"```yaml\nautoscaling:\n  targetStreamsPerReplica: {target}  # " in md
