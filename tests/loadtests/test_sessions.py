"""--shape sessions (higgs_load.sessions): the session plan, the Erlang arithmetic and the window it is
measured over (pure), and one short headless run: sessions of several turns arrive open loop and the
offered Erlangs match the streams measured in flight."""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics

import pytest

from higgs_load.records import RequestRecord
from higgs_load.sessions import (
    Draw,
    SessionConfig,
    arrival_times,
    erlangs,
    in_flight_profile,
    parse_draw,
    session_config,
    session_markdown,
    session_summary,
)
from tests.support.locust import locust_cmd, run_bounded
from tests.support.simulator import start_sim


def _cfg(turns: str = "3", think: str = "2", rate: float = 1.0, cap: int = 10) -> SessionConfig:
    o = argparse.Namespace(session_rate=rate, session_turns=turns, think_time=think, max_sessions=cap)
    return session_config(o)


def test_turns_and_think_time_parse_fixed_and_drawn_values():
    assert parse_draw("--session-turns", "3", ("geo",), integer=True) == Draw("fixed", 3.0)
    assert parse_draw("--session-turns", "geo:2.5", ("geo",), integer=True) == Draw("geo", 2.5)
    assert parse_draw("--think-time", "exp:1.5", ("exp",), integer=False) == Draw("exp", 1.5)
    assert parse_draw("--think-time", "0", ("exp",), integer=False) == Draw("fixed", 0.0)
    for bad in ("0", "2.5", "geo:0.5", "poisson:3", "x"):
        with pytest.raises(ValueError, match="--session-turns"):
            parse_draw("--session-turns", bad, ("geo",), integer=True)
    with pytest.raises(ValueError, match="--think-time"):
        parse_draw("--think-time", "-1", ("exp",), integer=False)
    with pytest.raises(ValueError, match="--session-rate"):
        _cfg(rate=0)
    with pytest.raises(ValueError, match="--max-sessions"):
        _cfg(cap=0)


def test_a_session_plan_has_its_turns_and_a_pause_before_each_later_turn():
    rng = random.Random(1)
    fixed = [_cfg("3", "0.5").draw(rng) for _ in range(50)]
    assert {s.turns for s in fixed} == {3} and {s.think_s for s in fixed} == {(0.5, 0.5)}
    drawn = [_cfg("geo:3", "exp:2").draw(rng) for _ in range(20000)]
    assert min(s.turns for s in drawn) == 1 and max(s.turns for s in drawn) > 10
    assert statistics.fmean(s.turns for s in drawn) == pytest.approx(3.0, rel=0.03)
    assert all(len(s.think_s) == s.turns - 1 for s in drawn)
    thinks = [t for s in drawn for t in s.think_s]
    assert statistics.fmean(thinks) == pytest.approx(2.0, rel=0.03)
    # geometric: P(1 turn) = 1/mean
    assert sum(s.turns == 1 for s in drawn) / len(drawn) == pytest.approx(1 / 3, abs=0.015)


def test_arrivals_are_poisson_at_the_rate_and_split_over_dispatchers():
    times = list(zip(range(20000), arrival_times(4.0, 100.0, random.Random(2)), strict=False))
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(times)]
    assert statistics.fmean(gaps) == pytest.approx(0.25, rel=0.03)
    assert statistics.stdev(gaps) == pytest.approx(0.25, rel=0.05)  # exponential: sd = mean
    assert _cfg(rate=6.0, cap=10).share(4) == (1.5, 3)  # caps round up: 4 x 3 >= 10
    assert _cfg(rate=6.0, cap=10).share(1) == (6.0, 10)


def test_erlangs_and_the_time_weighted_profile_of_streams_in_flight():
    assert erlangs(2.0, 3.0) == 6.0
    # 0-10 s: one stream 0-10, a second 2-4, a third 3-4: level 1 for 8 s, 2 for 1 s, 3 for 1 s
    mean, p95, top = in_flight_profile([(0, 10), (2, 4), (3, 4)], 0, 10)
    assert mean == pytest.approx((8 * 1 + 1 * 2 + 1 * 3) / 10)
    assert p95 == 3 and top == 3  # 90% of the time at 2 or less: p95 is 3
    mean, p95, _ = in_flight_profile([(0, 10), (2, 3)], 0, 20)
    assert mean == pytest.approx(11 / 20) and p95 == 1
    assert in_flight_profile([], 5, 5) == (0.0, None, 0)


def _synthetic_run(
    rate: float, seconds: float, turn_s: float, cfg: SessionConfig, seed: int = 3
) -> list[RequestRecord]:
    """Sessions of `cfg` arriving at `rate` for `seconds`, each turn taking `turn_s`; what a stop at
    `seconds` would have left: only the turns that ended before it."""
    rng, out = random.Random(seed), []
    for i, at in enumerate(arrival_times(rate, 0.0, rng)):
        if at >= seconds:
            break
        plan, t = cfg.draw(rng), at
        for turn in range(1, plan.turns + 1):
            if turn > 1:
                t += plan.think_s[turn - 2]
            if t + turn_s <= seconds:
                rec = RequestRecord(kind="speech_pcm", t_start=t, ok=True, duration_s=turn_s)
                rec.session_id, rec.session_turn, rec.session_turns = str(i), turn, plan.turns
                out.append(rec)
            t += turn_s
    return out


def test_offered_erlangs_match_streams_in_flight_over_a_steady_window_of_a_cut_run():
    cfg = _cfg("geo:3", "exp:1")
    recs = _synthetic_run(5.0, 600.0, 0.8, cfg)
    s = session_summary(recs, 0.0, 600.0, capped=0)
    assert s["window"].startswith("steady") and s["window_s"][0] > 0 and s["window_s"][1] < 600
    assert s["sessions_completed"] < s["sessions"]  # the stop cut some
    # lambda = 5/s, H = 3 turns x 0.8 s: 12 Erlangs offered; Little's law: as many streams in flight
    assert s["holding_s_mean"] == pytest.approx(2.4, rel=0.08)
    assert s["offered_erlangs"] == pytest.approx(12.0, rel=0.1)
    assert s["concurrency_mean"] == pytest.approx(s["offered_erlangs"], rel=0.05)
    assert s["concurrency_p95"] >= s["concurrency_mean"]
    assert s["sessions_in_flight_mean"] == pytest.approx(s["sessions_offered_erlangs"], rel=0.05)


def test_refused_sessions_count_in_the_offered_load_not_the_carried_one():
    cfg = _cfg("2", "0")
    recs = _synthetic_run(2.0, 100.0, 1.0, cfg)
    s = session_summary(recs, 0.0, 100.0, capped=50)  # 0.5/s more were offered and refused
    assert s["sessions_capped"] == 50
    assert s["offered_erlangs"] == pytest.approx(s["carried_erlangs"] + 0.5 * s["holding_s_mean"])
    md = "\n".join(session_markdown(s))
    assert "50 session arrivals were refused: --max-sessions was full" in md


@pytest.mark.timeout(60)
def test_sessions_of_several_turns_arrive_open_loop_and_offer_what_is_measured(tmp_path):
    # 3 sessions/s for 8 s, 3 short speech turns each 0.2 s apart; a graceful stop lets them end.
    s = start_sim(tmp_path)
    try:
        cmd = locust_cmd(s.url, tmp_path, "--headless", "--shape", "sessions", "--session-rate", "3")
        cmd += ["--session-turns", "3", "--think-time", "0.2", "-t", "8s", "--stop-timeout", "10"]
        cmd += ["--mix", "speech_pcm=1", "--prompt-lengths", "short", "--no-plots"]
        assert run_bounded(cmd, 50, tmp_path / "locust.log") == 0, (tmp_path / "locust.log").read_text()[
            -3000:
        ]
    finally:
        s.stop()
    raw = [json.loads(x) for x in (tmp_path / "raw.jsonl").read_text().splitlines() if x.strip()]
    assert raw and all(r["ok"] for r in raw)
    by_session: dict[str, list[dict]] = {}
    for r in raw:
        by_session.setdefault(r["session_id"], []).append(r)
    # open loop: about 24 arrivals whatever the responses (Poisson: 24 +- 3 sd)
    assert 10 <= len(by_session) <= 40, len(by_session)
    for turns in by_session.values():
        turns.sort(key=lambda r: r["session_turn"])
        assert [r["session_turn"] for r in turns] == [1, 2, 3] and {r["session_turns"] for r in turns} == {3}
        for a, b in itertools.pairwise(turns):  # the next turn after the think time
            assert b["t_start"] - (a["t_start"] + a["duration_s"]) >= 0.19
    # sessions overlap: a later session starts before an earlier one ends
    spans = sorted((t[0]["t_start"], t[-1]["t_start"] + t[-1]["duration_s"]) for t in by_session.values())
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    summary = json.loads((tmp_path / "summary.json").read_text())
    sess = summary["sessions"]
    assert sess["sessions_completed"] == sess["sessions"] == len(by_session) and sess["sessions_capped"] == 0
    assert sess["window"] == "whole run, every session completed"
    assert sess["offered_erlangs"] > 1.0
    assert sess["concurrency_mean"] == pytest.approx(sess["offered_erlangs"], rel=0.02)
    assert sess["concurrency_p95"] >= sess["concurrency_mean"]
    assert "## Sessions" in (tmp_path / "summary.md").read_text()
