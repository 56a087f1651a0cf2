"""Correctness under load, end to end: a short headless Locust run against a simulator injecting
every `--sim-fault` kind in turn (every 3rd request) reports each under its own error kind, and the
requests the simulator left alone pass every check."""

from __future__ import annotations

import json

import pytest

from higgs_load.metrics import SLO
from higgs_load.records import RequestRecord
from higgs_load.report import build_summary
from tests.support.locust import locust_cmd, run_bounded
from tests.support.simulator import start_sim

pytestmark = pytest.mark.timeout(90)
EVERY = 3
# --sim-fault kind -> the load test's error kind
EXPECTED = {
    "runaway": "audio_too_long",
    "short": "audio_too_short",
    "silence": "silence_gap",
    "clip": "clipped_audio",
    "truncate": "truncated_stream",
}


def test_each_injected_fault_is_reported_under_its_own_kind(tmp_path):
    faults = ",".join(EXPECTED)
    s = start_sim(tmp_path, "--sim-slowdown", "0.3", "--sim-fault", faults, "--sim-fault-every", str(EVERY))
    try:
        cmd = locust_cmd(
            s.url,
            tmp_path,
            "--headless",
            "--mix",
            "stream=1",
            "--prompt-lengths",
            "short",
            "--no-plots",
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "4s",
            "--prebuffer-ms",
            "200",
            "--fail-on",
            "silence_gap<=0",
        )
        rc = run_bounded(cmd, 45, tmp_path / "locust.log")
    finally:
        s.stop()
    log = (tmp_path / "locust.log").read_text()[-3000:]
    assert rc == 3, log  # the silence_gap gate is missed
    assert s.trace_path is not None
    trace = [json.loads(line) for line in s.trace_path.read_text().splitlines()]
    fault_of = {t["request_id"]: t["fault"] for t in trace}
    raw = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] == len(raw) >= 5 * EVERY, summary["requests"]
    for kind in EXPECTED.values():
        assert summary["correctness"][kind] >= 1, (kind, summary["errors"])
        assert summary[kind] == summary["errors"][kind]
    # Per request: the length band is applied at report time, so judge the raw records as the report did.
    records = [RequestRecord.from_dict(r) for r in raw]
    assert build_summary(records, SLO())["errors"] == summary["errors"]
    for rec in records:
        fault = fault_of[rec.request_id]
        # every faulted request fails under its fault's kind; every other one passes
        assert rec.error == (EXPECTED[fault] if fault else None), (fault, rec.error, rec.error_detail)
    assert summary["length_band"]["judged"] is True
    assert summary["prebuffer_ms"] == 200
    assert summary["min_prebuffer_p99_ms"] is not None
    assert any("silence_gap" in g and "MISSED" in g for g in summary["gates"])
