"""Autoscaling decisions: ratio to target, tolerance, stabilization windows, bounded steps, bounds."""

import pytest

from higgs_operator.metrics import PodSample
from higgs_operator.scaling import AutoscalingPolicy, Recommendation, decide


def pods(*waiting: float, running: float = 0.0) -> list[PodSample]:
    return [PodSample(waiting=w, running=running, kv_cache=None) for w in waiting]


POLICY = AutoscalingPolicy(
    min_replicas=1,
    max_replicas=8,
    target_waiting=2.0,
    scale_up_stabilization_s=0,
    scale_down_stabilization_s=60,
    max_scale_up_step=4,
    max_scale_down_step=1,
)


@pytest.mark.parametrize(
    ("current", "samples", "failed", "expected", "reason_part"),
    [
        (1, pods(8), 0, 4, "-> 4"),  # 8 waiting / target 2 -> 4 replicas
        (2, pods(2, 2), 0, 2, "within 10%"),  # exactly on target
        (2, pods(2.1, 2.1), 0, 2, "within 10%"),  # 5% over: tolerance keeps 2
        (2, pods(3, 3), 0, 3, "-> 3"),  # 50% over
        (1, pods(40), 0, 5, "step bounded to +4"),  # wants 8 (max), bounded to +4
        (1, pods(400), 0, 5, "step bounded"),  # clamped to max 8 then bounded
        (6, pods(40, 40, 40, 40, 40, 40), 0, 8, "capped at maxReplicas 8"),  # wants 120: the max says why
        (4, [], 3, 4, "no metrics"),  # all scrapes failed: hold
        (3, pods(0), 2, 3, "scale-down held"),  # some failed: never scale down
        (12, [], 0, 8, "outside"),  # above max: clamp even without metrics
        (0, [], 0, 1, "outside"),  # below min
    ],
)
def test_decision_table(current, samples, failed, expected, reason_part):
    d = decide(POLICY, current, samples, failed, (), now=1000.0)
    assert d.replicas == expected
    assert reason_part in d.reason


def test_streams_target_and_max_of_metrics():
    policy = AutoscalingPolicy(
        min_replicas=1, max_replicas=10, target_waiting=4, target_streams=2, max_scale_up_step=10
    )
    d = decide(policy, 2, pods(0, 0, running=4), 0, (), now=0.0)  # streams 8 total / 2 -> 4; waiting says 0
    assert d.replicas == 4
    assert "streams" in d.reason and d.signal == "streams"


BOTH = AutoscalingPolicy(
    min_replicas=1, max_replicas=10, target_waiting=2, target_streams=4, max_scale_up_step=10
)


@pytest.mark.parametrize(
    ("policy", "current", "samples", "expected", "signal"),
    [
        # streams alone: 3 pods x 6 streams = 18 / 4 -> 5
        (
            AutoscalingPolicy(1, 10, target_streams=4, max_scale_up_step=10),
            3,
            pods(0, 0, 0, running=6),
            5,
            "streams",
        ),
        # both set, no queue yet: the streams ask for more (18 / 4 -> 5) than the queue (0)
        (BOTH, 3, pods(0, 0, 0, running=6), 5, "streams"),
        # both set, a long queue: the queue asks for more (3 x 8 / 2 -> 12, capped at 10) than the streams
        (BOTH, 3, pods(8, 8, 8, running=4), 10, "waiting"),
        # both within tolerance: keep, and the first listed (streams) is the one that decided
        (BOTH, 2, pods(2, 2, running=4), 2, "streams"),
        # above maxReplicas while the signals ask to keep: the bound moves it
        (
            AutoscalingPolicy(1, 3, target_streams=4, max_scale_down_step=10),
            5,
            pods(*[0] * 5, running=4),
            3,
            "max",
        ),
        # below minReplicas, no load: the bound moves it up
        (AutoscalingPolicy(2, 4, target_streams=4), 1, pods(0, running=0), 2, "min"),
    ],
)
def test_the_decision_names_the_signal_that_decided(policy, current, samples, expected, signal):
    d = decide(policy, current, samples, 0, (), now=0.0)
    assert (d.replicas, d.signal) == (expected, signal), d.reason


def test_signal_when_nothing_decides_or_scrapes_failed():
    assert decide(POLICY, 3, [], 2, (), now=0.0).signal is None  # no metrics: holding, nothing decided
    assert decide(POLICY, 12, [], 0, (), now=0.0).signal == "max"  # no metrics, above max: the bound
    held = decide(POLICY, 3, pods(0), 2, (), now=0.0)  # the queue says 1, two scrapes failed: hold
    assert (held.replicas, held.signal) == (3, "failed_scrapes")


def test_scale_down_waits_for_window():
    history: tuple[Recommendation, ...] = ()
    replicas = 4
    for t in range(0, 60, 5):  # load gone at t=0: the raw recommendation is 1, the window 60 s
        d = decide(POLICY, replicas, pods(0, 0, 0, 0), 0, history, now=1000.0 + t)
        history, replicas = d.history, d.replicas
        assert d.recommendation == 1
        assert replicas == 4, f"scaled down at t={t} inside the window"
    assert "scale-down stabilization" in d.reason
    d = decide(POLICY, 4, pods(0, 0, 0, 0), 0, history, now=1061.0)  # the 4 of t=0 left the window
    assert d.replicas == 3 and "step bounded to -1" in d.reason


def test_scale_up_window_requires_sustained_load():
    policy = AutoscalingPolicy(min_replicas=1, max_replicas=8, target_waiting=2, scale_up_stabilization_s=30)
    d1 = decide(policy, 1, pods(0), 0, (), now=0.0)
    d2 = decide(policy, 1, pods(8), 0, d1.history, now=10.0)  # burst: the window still holds a 1
    assert d2.replicas == 1 and "scale-up stabilization" in d2.reason
    d3 = decide(policy, 1, pods(8), 0, d2.history, now=31.0)  # the low sample left the window
    assert d3.replicas == 4


def test_oscillating_load_does_not_flap():
    history: tuple[Recommendation, ...] = ()
    replicas = 1
    seen = []
    for i in range(40):  # high and idle polls alternate every 5 s for 200 s (< no gap of 60 s idle)
        samples = pods(*([10.0] * replicas)) if i % 2 == 0 else pods(*([0.0] * replicas))
        d = decide(POLICY, replicas, samples, 0, history, now=float(i * 5))
        history, replicas = d.history, d.replicas
        seen.append(replicas)
    assert seen == sorted(seen), f"replicas went down under oscillating load: {seen}"
    assert max(seen) == POLICY.max_replicas


def test_history_pruned_to_longest_window():
    history = tuple(Recommendation(float(t), 2) for t in range(0, 1000, 10))
    d = decide(POLICY, 2, pods(4, 4), 0, history, now=1000.0)
    assert all(r.time >= 1000.0 - 60 for r in d.history)


def test_policy_from_spec_defaults_and_fields():
    p = AutoscalingPolicy.from_spec(
        {
            "minReplicas": 2,
            "maxReplicas": 6,
            "targetWaitingRequestsPerReplica": 3,
            "targetStreamsPerReplica": 6,
            "scaleUpStabilizationSeconds": 5,
            "scaleDownStabilizationSeconds": 20,
            "maxScaleUpStep": 2,
            "maxScaleDownStep": 3,
            "pollSeconds": 2,
        }
    )
    assert (p.min_replicas, p.max_replicas, p.target_waiting, p.target_streams) == (2, 6, 3.0, 6.0)
    assert AutoscalingPolicy.from_spec({"targetWaitingRequestsPerReplica": 1}).target_streams is None
    assert (p.scale_up_stabilization_s, p.scale_down_stabilization_s, p.poll_s) == (5.0, 20.0, 2.0)
    assert (p.max_scale_up_step, p.max_scale_down_step) == (2, 3)
