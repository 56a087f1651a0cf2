"""The capacity search prints the autoscaling spec to paste: targetStreamsPerReplica with headroom below
the measured real-time streams per replica, in summary.json and summary.md."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from higgs_load.capacity_report import extra_markdown
from higgs_load.capacity_search import CapacitySearch, LevelResult, capacity_summary
from higgs_load.capacity_spec import autoscaling_spec, streams_target
from higgs_load.metrics import SLO

CRD = Path(__file__).resolve().parents[2] / "charts/higgs-operator/crds/higgsdeployments.audio.higgs.dev.yaml"


@pytest.mark.parametrize(
    ("per_replica", "target"),
    [(10, 8), (8, 6), (5, 4), (2.5, 2), (1.5, 1), (1, 1), (64, 51)],
)
def test_streams_target_is_whole_streams_below_the_capacity(per_replica, target):
    assert streams_target(per_replica) == target


def test_headroom_out_of_range_is_refused_by_name():
    with pytest.raises(ValueError, match="headroom must be in"):
        streams_target(8, 1.5)


def test_the_spec_parses_as_a_higgsdeployment_autoscaling_block_and_states_its_headroom():
    spec = autoscaling_spec(10, "TTFA p95 <= 1500 ms")
    assert yaml.safe_load(spec["yaml"]) == {"autoscaling": {"targetStreamsPerReplica": 8}}
    assert "80 % of the 10 real-time streams per replica measured at TTFA p95 <= 1500 ms" in spec["yaml"]
    assert (spec["targetStreamsPerReplica"], spec["headroom"], spec["why_not"]) == (8, 0.8, None)
    # Every key is a field of the CRD's autoscaling block (a rename there must show here).
    crd = yaml.safe_load(CRD.read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = spec_schema["properties"]["autoscaling"]["properties"]
    assert set(yaml.safe_load(spec["yaml"])["autoscaling"]) <= set(fields)


def test_one_stream_per_replica_says_there_is_less_headroom():
    spec = autoscaling_spec(1, "TTFA p95 <= 1500 ms")
    assert spec["targetStreamsPerReplica"] == 1 and "less than 20 % headroom" in spec["yaml"]


def test_no_spec_without_a_per_replica_capacity():
    assert autoscaling_spec(None, "x")["yaml"] is None
    assert "no level met" in autoscaling_spec(0, "x")["why_not"]


def _search(capacity: int) -> CapacitySearch:
    search = CapacitySearch(0.95, 64)
    while (level := search.next_level()) is not None:
        search.record(LevelResult(level, 40, 40 if level <= capacity else 10, {"ttfa_p95_ms": 300.0}))
    return search


def test_the_capacity_summary_and_report_carry_the_spec():
    slo = SLO(ttfa_ms=500, rtf=1.0)
    c = capacity_summary(_search(10), slo, [], replicas_seen=[2])  # 10 streams on 2 replicas: 5 each
    assert c["autoscaling"]["targetStreamsPerReplica"] == 4
    text = "\n".join(extra_markdown({"capacity_search": c}))
    assert "**Autoscaling spec to paste**" in text
    assert "```yaml\nautoscaling:\n  targetStreamsPerReplica: 4  # 80 % of the 5 real-time streams" in text
    changed = capacity_summary(_search(10), slo, [], replicas_seen=[1, 2])  # no per-replica figure
    assert changed["autoscaling"]["yaml"] is None
    assert "No autoscaling spec: no per-replica capacity" in "\n".join(
        extra_markdown({"capacity_search": changed})
    )
