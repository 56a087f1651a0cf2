"""Headless Locust runs (real subprocesses) against the simulator: report figures, fault classes,
threshold exit codes, and a distributed run (master + 2 workers)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from higgs_load.body_reader import KERNEL_STAMPS
from higgs_load.report import PLOTS
from tests.support.locust import locust_cmd, run_bounded
from tests.support.simulator import kill_group, start_sim

pytestmark = pytest.mark.timeout(120)
RUN_S = 8
RUN_TIMEOUT_S = 45
FAST = ("--headless", "--mix", "stream=1", "--prompt-lengths", "short")
COMMON = (*FAST, "--no-plots")


def raw_records(report_dir: Path) -> list[dict]:
    lines = (report_dir / "raw.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def recompute(raw: list[dict], ttfa_slo_ms: float) -> dict:
    """The report's headline figures, computed here independently of higgs_load.metrics."""
    ok = [r for r in raw if r["ok"]]
    start = min(r["t_start"] for r in raw)
    end = max(r["t_start"] + (r["duration_s"] or 0.0) for r in raw)
    wall = end - start
    ttfa = [r["ttfa_s"] * 1000 for r in ok]
    rtf = [r["duration_s"] / r["audio_s"] for r in ok]
    good = [r for r in ok if r["ttfa_s"] * 1000 <= ttfa_slo_ms]
    return {
        "requests": len(raw),
        "audio_throughput": sum(r["audio_s"] for r in ok) / wall,
        "ttfa_p50_ms": float(np.percentile(ttfa, 50)),
        "ttfa_p99_ms": float(np.percentile(ttfa, 99)),
        "rtf_p50": float(np.percentile(rtf, 50)),
        "rtf_p90": float(np.percentile(rtf, 90)),
        "error_rate": (len(raw) - len(ok)) / len(raw),
        "goodput": len(good) / wall,
    }


def locust_post_counts(json_file: Path) -> tuple[int, int]:
    """(requests, failures) of Locust's own POST rows in its final stats (--json-file, written at
    shutdown; aggregated from the workers in a distributed run)."""
    rows = [r for r in json.loads(json_file.read_text()) if r["method"] == "POST"]
    return sum(r["num_requests"] for r in rows), sum(r["num_failures"] for r in rows)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = start_sim(tmp_path_factory.mktemp("sim"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def single_run(sim, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    cmd = locust_cmd(sim.url, out, *FAST, "-u", "4", "-r", "4", "-t", f"{RUN_S}s")
    cmd += [
        "--slo-ttfa-ms",
        "600",
        "--fail-on",
        "error_rate<=0.0,requests>=4",
        "--json-file",
        str(out / "locust"),
    ]
    rc = run_bounded(cmd, RUN_TIMEOUT_S, out / "locust.log")
    assert rc == 0, (out / "locust.log").read_text()[-3000:]
    return out


def test_report_figures_equal_those_recomputed_from_raw(single_run, sim):
    summary = json.loads((single_run / "summary.json").read_text())
    raw = raw_records(single_run)
    assert len(raw) >= 4 and all(r["ok"] for r in raw)
    expected = recompute(raw, ttfa_slo_ms=600)
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=1e-9), key
    assert summary["gates_passed"] is True
    assert summary["server_api"] == "boson"  # --server-api auto: GET /v1/audio/voices is a bare array
    # Locust's own request counter saw the same requests as the raw records.
    assert locust_post_counts(single_run / "locust.json") == (len(raw), 0)
    # Every client record joins the simulator's trace by X-Request-Id.
    traced = {t["request_id"]: t for t in map(json.loads, sim.trace_path.read_text().splitlines())}
    assert {r["request_id"] for r in raw} <= set(traced)
    # The client's TTFA is the server's own plus the loopback trip: both ends stamp arrivals with the
    # kernel's receive time, so neither process's scheduling shows up in it.
    for r in raw:
        srv = traced[r["request_id"]]
        assert r["ttfa_clock"] == ("kernel" if KERNEL_STAMPS else "process")
        assert -0.001 <= r["ttfa_s"] - (srv["t_first_audio"] - srv["t_received"]) < 0.05
    assert "| requests (ok / failed) |" in (single_run / "summary.md").read_text()
    for png in PLOTS:  # the plots rendered: real PNG files
        assert (single_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_missed_threshold_exits_3(sim, tmp_path):
    cmd = locust_cmd(sim.url, tmp_path, *COMMON, "-u", "2", "-r", "2", "-t", "3s")
    cmd += ["--fail-on", "ttfa_p50_ms<=1"]
    assert run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "locust.log") == 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["gates_passed"] is False and "MISSED" in summary["gates"][0]


FAULTS = {
    # name: (simulator flags, extra locust flags, failure classes allowed, class that must appear)
    "error": (["--sim-error-rate", "1.0"], [], {"http_500"}, "http_500"),
    "truncated": (["--sim-truncate-after-frames", "40"], [], {"truncated_stream"}, "truncated_stream"),
    "silent": (["--sim-silent-audio"], [], {"silent_audio"}, "silent_audio"),
    "stall": (
        ["--sim-stall-after-frames", "32", "--sim-stall-seconds", "5"],
        ["--request-timeout", "1"],
        {"timeout"},
        "timeout",
    ),
    # Requests in flight when the process dies lose their body (truncated); later ones find no server.
    "crash": (
        ["--sim-crash-after-requests", "2"],
        [],
        {"connection_error", "truncated_stream"},
        "connection_error",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_simulator_fault_is_counted_as_its_failure_class(fault, tmp_path):
    sim_flags, locust_flags, allowed, required = FAULTS[fault]
    s = start_sim(tmp_path, *sim_flags)
    try:
        cmd = locust_cmd(s.url, tmp_path, *COMMON, "-u", "2", "-r", "2", "-t", "3s", *locust_flags)
        rc = run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "locust.log")
    finally:
        s.stop()
    assert rc in (0, 1), (tmp_path / "locust.log").read_text()[-3000:]  # 1: Locust saw failures
    raw = raw_records(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    failures = [r for r in raw if not r["ok"]]
    assert failures, f"{fault}: no failure recorded"
    assert {r["error"] for r in failures} <= allowed
    assert required in summary["errors"]
    assert summary["failures"] == len(failures)
    successes = [r for r in raw if r["ok"]]
    if fault == "crash":
        assert len(successes) <= 2  # the simulator served 2 and died
    else:
        assert successes == []  # every request is hit by the fault: none may count as a success


@pytest.mark.parametrize("kind", ["stream", "speech_pcm", "speech_wav"])
def test_an_error_inside_a_200_body_is_a_stream_error(kind, tmp_path):
    """CH8 (an SSE error event) and SP10 (error JSON appended to the speech body): the status is 200,
    the audio before the error is valid, and still the request failed."""
    s = start_sim(tmp_path, "--sim-error-after-frames", "20")
    try:
        cmd = locust_cmd(s.url, tmp_path, "--headless", "--mix", f"{kind}=1", "--prompt-lengths", "short")
        cmd += ["--no-plots", "-u", "2", "-r", "2", "-t", "3s"]
        rc = run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "locust.log")
    finally:
        s.stop()
    assert rc in (0, 1), (tmp_path / "locust.log").read_text()[-3000:]
    raw = raw_records(tmp_path)
    assert raw and all(r["status"] == 200 and r["error"] == "stream_error" for r in raw), raw[:2]
    assert all("simulated engine error" in r["error_detail"] for r in raw)
    assert json.loads((tmp_path / "summary.json").read_text())["errors"] == {"stream_error": len(raw)}


def test_distributed_run_totals_and_figures(sim, single_run, tmp_path):
    from tests.support.locust import BIN, LOCUSTFILE
    from tests.support.ports import free_port

    port = free_port()
    master_cmd = locust_cmd(sim.url, tmp_path, *COMMON, "-u", "4", "-r", "4", "-t", f"{RUN_S}s")
    master_cmd += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
    master_cmd += ["--expect-workers", "2", "--json-file", str(tmp_path / "locust"), "--slo-ttfa-ms", "600"]
    worker_cmd = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1"]
    worker_cmd += ["--master-port", str(port), "--loglevel", "WARNING"]
    workers = []
    try:
        for i in range(2):
            log = (tmp_path / f"worker{i}.log").open("w")
            workers.append(
                subprocess.Popen(worker_cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        rc = run_bounded(master_cmd, RUN_TIMEOUT_S, tmp_path / "master.log")
        for w in workers:
            w.wait(timeout=15)  # workers quit when the master does
    finally:
        for w in workers:
            kill_group(w)
    assert rc == 0, (tmp_path / "master.log").read_text()[-3000:]
    raw = raw_records(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len({r["worker"] for r in raw}) == 2  # both workers sent records
    assert summary["requests"] == len(raw) == locust_post_counts(tmp_path / "locust.json")[0]
    assert summary["error_rate"] == 0.0
    for key, value in recompute(raw, ttfa_slo_ms=600).items():
        assert summary[key] == pytest.approx(value, rel=1e-9), key
    # Same users, same server: figures comparable to the single-process run.
    single = json.loads((single_run / "summary.json").read_text())
    assert summary["ttfa_p50_ms"] == pytest.approx(single["ttfa_p50_ms"], rel=0.5)
    assert summary["audio_throughput"] == pytest.approx(single["audio_throughput"], rel=0.5)
