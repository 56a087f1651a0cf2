"""Step figures describe their level (issue #13): throughput by chunk arrival in the level's measured
window whichever request the audio belongs to, latency from requests sent after the warm-up, holds
long enough for the prompts, the first and last levels whole; and the ergonomics: the help lists our
options, the report directory's default."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from higgs_load.collector import Collector
from higgs_load.metrics import SLO, Step, min_step_hold_s, summarize_steps, with_warmup
from higgs_load.options import add_options
from higgs_load.records import RequestRecord
from higgs_load.run_config import REPORTS_DIR, build_config, default_report_dir, longest_request_s
from tests.support.locust import LOCUSTFILE, locust_cmd, run_bounded
from tests.support.simulator import start_sim

SR = 24_000


def _rec(t: float, chunks: list[tuple[float, float]], ttfa: float = 0.1) -> RequestRecord:
    """A successful stream sent at `t` whose audio arrives as (seconds after t, audio seconds)."""
    r = RequestRecord(kind="stream", t_start=t, ok=True, streamed=True, ttfa_s=ttfa)
    r.chunks = [(dt, int(a * SR)) for dt, a in chunks]
    r.audio_s = sum(a for _, a in chunks)
    r.duration_s = max(dt for dt, _ in chunks)
    return r


def test_a_step_counts_all_audio_arriving_in_its_window_and_times_requests_after_its_warmup():
    # A request of the first level (sent at 8) delivers 1 s of audio at 9 and 1 s at 12 (inside the
    # second level's window); a request sent during the second level's warm-up (10-13) is slow (TTFA
    # 2 s) and is left out of the second level's latency; one sent at 14 runs on past the level's end.
    first = _rec(8.0, [(1.0, 1.0), (4.0, 1.0)])
    ramp = _rec(11.0, [(2.0, 1.0)], ttfa=2.0)
    steady = _rec(14.0, [(0.2, 1.0), (3.0, 1.0), (8.0, 1.0)], ttfa=0.2)
    steps = [with_warmup(Step(1, 1.0, 10.0), 1 / 3), with_warmup(Step(2, 10.0, 19.0), 1 / 3)]
    rows = summarize_steps([first, ramp, steady], steps, SLO())
    level2 = rows[1]
    assert level2["t_measure"] == pytest.approx(13.0)
    # window [13, 19): ramp's chunk at 13 and steady's at 14.2 and 17 count; first's at 12 fell in the
    # warm-up, steady's at 22 after the level.
    assert level2["audio_seconds_in_window"] == pytest.approx(3.0, abs=1e-3)
    assert level2["audio_throughput"] == pytest.approx(3.0 / 6.0, abs=1e-3)
    assert level2["requests"] == 1 and level2["ttfa_p99_ms"] == pytest.approx(200.0)
    # Without a warm-up the window is the whole level and the first level's request counts in it.
    whole = summarize_steps([first, ramp, steady], [Step(2, 10.0, 19.0)], SLO())[0]
    assert whole["audio_seconds_in_window"] == pytest.approx(4.0, abs=1e-3)
    assert whole["requests"] == 2


def test_min_hold_outlasts_one_request_as_warmup_and_measures_two():
    assert min_step_hold_s(10.0) == pytest.approx(30.0)
    assert min_step_hold_s(10.0, 0.5) == pytest.approx(40.0)  # 2 requests in the measured half
    assert min_step_hold_s(10.0, 0.1) == pytest.approx(100.0)  # warm-up of one request
    with pytest.raises(ValueError, match="fraction"):
        min_step_hold_s(10.0, 1.0)


def _options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(_Plain(parser))
    o = parser.parse_args(list(argv))
    o.num_users, o.run_time, o.spawn_rate = 1, None, None
    return o


class _Plain:
    """add_options' parser with Locust's extras (env_var) dropped: a plain argparse parser."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument_group(self, *_a, **_kw):
        return self

    def add_argument(self, flag, **kw):
        kw.pop("env_var", None)
        return self.parser.add_argument(flag, **kw)


def test_a_hold_too_short_for_the_prompts_is_refused_naming_step_hold_and_the_minimum():
    o = _options("--shape", "step", "--levels", "1,2", "--prompt-lengths", "short", "--step-hold", "5")
    cfg_short = build_config(_options("--prompt-lengths", "short"))
    minimum = int(-(-min_step_hold_s(cfg_short.longest_request_s) // 1))
    with pytest.raises(ValueError, match=rf"--step-hold 5 is too short.*at least {minimum} s"):
        build_config(o)
    # Default: the minimum itself; --max-tokens caps the requests (25 audio tokens per second).
    cfg = build_config(_options("--shape", "step", "--levels", "1,2", "--prompt-lengths", "short"))
    assert cfg.plan.hold_s == minimum and cfg.longest_request_s == pytest.approx(48 / 15)
    capped = build_config(_options("--shape", "sweep", "--max-tokens", "40", "--step-hold", "5"))
    assert capped.longest_request_s == pytest.approx(1.6) and capped.plan.hold_s == 5.0
    assert longest_request_s(cfg.prompts, 25) == pytest.approx(1.0)


def test_report_dir_defaults_to_a_new_directory_under_reports_in_the_working_directory():
    cfg = build_config(_options())
    assert cfg.report_dir.parent == REPORTS_DIR == Path("reports")  # relative: the working directory
    assert cfg.report_dir.name.startswith("loadtest-") and cfg.raw_out == cfg.report_dir / "raw.jsonl"
    assert default_report_dir(0.0) == Path("reports/loadtest-19700101-000000")
    assert build_config(_options("--report-dir", "out")).report_dir == Path("out")


def test_the_levels_noted_before_test_start_survive_its_reset():
    # Locust ticks the shape (the first level) before it fires test_start (the collector's reset).
    c = Collector()
    c.begin_levels()
    c.note_level(1)
    c.reset(None)
    c.note_level(2)
    c.end_levels()
    steps = c.step_list(t_stop=c.t_levels_end + 30)  # the drain after the plan is not the last level's
    assert [s.users for s in steps] == [1, 2] and steps[-1].t_end == c.t_levels_end


def test_script_help_lists_the_load_test_options_with_locusts_groups(tmp_path):
    out = subprocess.run(
        [sys.executable, str(LOCUSTFILE), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    for line in ("Common options:", "Web UI options:", "Higgs Audio load test:", "--step-hold", "--mix"):
        assert line in out.stdout, line


def _sim_audio_between(trace: Path, begin: float, end: float) -> float:
    """The simulator's own count: audio seconds it handed to the transport in [begin, end)."""
    total = 0
    for line in trace.read_text().splitlines():
        sent_before = 0
        for t, frames in json.loads(line)["sent"]:
            if begin <= t < end:
                total += frames - sent_before
            sent_before = frames
    return total / 25


def test_step_levels_report_what_the_simulator_delivered_and_rise_then_flatten(tmp_path):
    # Two sequences at a time: 1 user is below capacity, 2 at it, 6 above (requests queue). Requests
    # of 40 tokens (1.6 s of audio at most), so a 5 s hold describes each level.
    sim = start_sim(tmp_path, "--max-num-seqs", "2", "--sim-startup-seconds", "0")
    try:
        cmd = locust_cmd(sim.url, tmp_path, "--headless", "--shape", "step", "--levels", "1,2,6")
        cmd += ["--step-hold", "5", "--mix", "stream=1", "--prompt-lengths", "short", "--max-tokens", "40"]
        cmd += ["--no-plots"]
        assert run_bounded(cmd, 60, tmp_path / "locust.log") == 0, (tmp_path / "locust.log").read_text()[
            -3000:
        ]
    finally:
        sim.stop()
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = summary["steps"]
    assert [r["users"] for r in rows] == [1, 2, 6]
    assert rows[0]["t_begin"] - summary["started"] < 0.2  # the first level from the run's start
    assert rows[-1]["t_end"] - rows[-1]["t_begin"] == pytest.approx(5.0, abs=1.1)  # the last level whole
    assert sim.trace_path is not None
    for row in rows:
        delivered = _sim_audio_between(sim.trace_path, row["t_measure"], row["t_end"])
        assert delivered > 0
        assert row["audio_seconds_in_window"] == pytest.approx(delivered, rel=0.03), row
    t1, t2, t6 = (r["audio_throughput"] for r in rows)
    assert t2 > 1.3 * t1, (t1, t2)  # rises below capacity
    assert t6 == pytest.approx(t2, rel=0.15), (t2, t6)  # flat above it, not falling
