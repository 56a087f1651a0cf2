"""The load-test instrument: TTFA accuracy at 500 streams, and agreement with an independent client.

(a) One Locust process runs 500 concurrent streaming users (short prompts) against one simulator
    (`--max-num-seqs 512 --sim-trace-file`). Each client record is joined with the simulator's trace
    line by request id (the X-Request-Id response header). TTFA measurement error, per request:

        error = client TTFA - server TTFA
              = (client first-audio arrival - client send) - (server first-audio write - server arrival)

    i.e. what the client counts that the server did not: sending the request until it reached the
    server's socket, plus delivery of the first audio bytes until the client's stamp (both clocks are
    this host's). Arrivals are kernel receive timestamps on both sides (higgs_load.body_reader,
    higgs_sim.arrival), so neither process's event-loop lag hides in them; how long requests waited in
    the simulator before its handler ran is printed beside it, as the share a handler-start reference
    would have got wrong. Target: p99 of |error| <= 5 ms once all users run.
(b) tests/support/reference_client.py (asyncio + aiohttp) runs the same concurrency and duration against a fresh
    simulator with the same flags; audio throughput and TTFA p50/p90 are printed beside Locust's.
    Target: within 5%.

Figures are printed as measured; a missed target is reported with its likely reason, and the benchmark
returns 1 (python -m bench marks it failed).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from tests.support.locust import locust_cmd, run_bounded
from tests.support.reference_client import run as reference_run
from tests.support.reference_client import summarize as reference_summary
from tests.support.simulator import start_sim

REPO = Path(__file__).resolve().parents[1]

USERS = 500
SPAWN_RATE = 100  # users/s: the 500 are running 5 s in
DURATION_S = 30
STEADY_AFTER_S = USERS / SPAWN_RATE + 5  # the steady state: every user running, connections open
SIM_FLAGS = ("--max-num-seqs", "512")
TTFA_ERROR_P99_MS = 5.0
AGREEMENT = 0.05


def ttfa_errors_ms(
    raw: list[dict], trace: list[dict], after: float = 0.0
) -> tuple[dict[str, np.ndarray], int]:
    """Per joined request sent `after` seconds or more into the run, in ms: the total error, its two
    parts, and the simulator's queue (arrival to handler start); and the unmatched count."""
    by_id = {t["request_id"]: t for t in trace}
    parts: dict[str, list[float]] = {"total": [], "send": [], "deliver": [], "queue": []}
    unmatched = 0
    first = min((r["t_start"] for r in raw), default=0.0)
    for rec in raw:
        if rec["t_start"] - first < after:
            continue
        srv = by_id.get(rec.get("request_id"))
        if not rec["ok"] or srv is None or srv.get("t_first_audio") is None or rec["ttfa_s"] is None:
            unmatched += rec["ok"]
            continue
        server_ttfa = srv["t_first_audio"] - srv["t_received"]
        parts["total"].append((rec["ttfa_s"] - server_ttfa) * 1000)
        parts["send"].append((srv["t_received"] - rec["t_start"]) * 1000)
        parts["deliver"].append((rec["t_start"] + rec["ttfa_s"] - srv["t_first_audio"]) * 1000)
        parts["queue"].append((srv["t_handler"] - srv["t_received"]) * 1000)
    return {k: np.array(v) for k, v in parts.items()}, unmatched


def _pct(values: np.ndarray, p: float) -> float:
    return float(np.percentile(values, p)) if values.size else float("nan")


def run_locust(tmp: Path) -> tuple[dict, list[dict], list[dict]]:
    sim = start_sim(tmp, *SIM_FLAGS)
    try:
        out = tmp / "locust"
        cmd = locust_cmd(
            sim.url, out, "--headless", "-u", str(USERS), "-r", str(SPAWN_RATE), "-t", f"{DURATION_S}s"
        )
        cmd += ["--mix", "stream=1", "--prompt-lengths", "short", "--no-plots", "--stop-timeout", "0"]
        rc = run_bounded(cmd, DURATION_S + 60, tmp / "locust.log")
    finally:
        sim.stop()
    if rc not in (0, 1):
        raise RuntimeError(f"locust exited {rc}:\n{(tmp / 'locust.log').read_text()[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    raw = [json.loads(x) for x in (out / "raw.jsonl").read_text().splitlines() if x.strip()]
    trace = [json.loads(x) for x in sim.trace_path.read_text().splitlines() if x.strip()]
    return summary, raw, trace


def run_reference(tmp: Path) -> dict:
    sim = start_sim(tmp, *SIM_FLAGS)
    try:
        return reference_summary(
            asyncio.run(reference_run(sim.url, USERS, DURATION_S, spawn_rate=SPAWN_RATE))
        )
    finally:
        sim.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-loadtest-") as d:
        tmp = Path(d)
        summary, raw, trace = run_locust(tmp)
        print(
            f"(a) Locust, 1 process, {USERS} streaming users (ramp {SPAWN_RATE}/s), {DURATION_S} s: "
            f"{summary['requests']} requests, error rate {summary['error_rate']:.3f}"
        )
        clocks = Counter(r.get("ttfa_clock") for r in raw if r["ok"])
        print(f"    first audio stamped by: {dict(clocks)}")
        print("    TTFA error = client TTFA - (server first-audio write - server arrival), ms:")
        print(f"    {'':38} {'n':>6} {'p50':>8} {'p99':>8} {'max':>8} {'p99 |e|':>8}")
        ok_a = True
        for window, after in (
            ("all requests", 0.0),
            (f"steady state (>= {STEADY_AFTER_S:g} s)", STEADY_AFTER_S),
        ):
            parts, unmatched = ttfa_errors_ms(raw, trace, after)
            print(f"    {window} ({unmatched} successful requests not in the server trace)")
            for key, name in (
                ("total", "  total"),
                ("send", "    send -> server socket"),
                ("deliver", "    server write -> client socket"),
                ("queue", "  (simulator: socket -> handler start)"),
            ):
                vals = parts[key]
                worst = vals.max() if vals.size else float("nan")
                print(
                    f"    {name:38} {vals.size:6d} {_pct(vals, 50):8.2f} {_pct(vals, 99):8.2f} {worst:8.2f}"
                    f" {_pct(np.abs(vals), 99):8.2f}"
                )
            if after:
                total = parts["total"]
                ok_a = total.size > 0 and _pct(np.abs(total), 99) <= TTFA_ERROR_P99_MS
        print(
            f"    target (steady state) p99 |error| <= {TTFA_ERROR_P99_MS} ms: {'met' if ok_a else 'MISSED'}"
        )
        if not ok_a:
            print(
                "    reason: see the parts. 'send -> server socket' is the client's time from its clock "
                "reading to the request's arrival (connection set-up, the greenlet resumed late by a busy "
                "process, a garbage collection); 'server write -> client socket' should be loopback "
                "delivery, microseconds. A 'process' first-audio clock (no kernel stamps) adds the "
                "client's own read lag.\n"
            )

        ref = run_reference(tmp)
        print(
            f"(b) same load ({USERS} users, {DURATION_S} s, fresh simulator each): Locust vs reference client"
        )
        print(f"    {'':24} {'Locust':>10} {'reference':>10} {'diff':>8}")
        ok_b = True
        for key, label in (
            ("audio_throughput", "audio-s/s"),
            ("ttfa_p50_ms", "TTFA p50 (ms)"),
            ("ttfa_p90_ms", "TTFA p90 (ms)"),
        ):
            a, b = summary.get(key), ref.get(key)
            diff = (a - b) / b if a is not None and b else float("nan")
            ok_b = ok_b and abs(diff) <= AGREEMENT
            print(f"    {label:24} {a:10.2f} {b:10.2f} {100 * diff:7.1f}%")
        print(
            f"    requests: Locust {summary['requests']}, reference {ref['requests']} ({ref.get('successes')} ok)"
        )
        print(f"    target within {100 * AGREEMENT:.0f}%: {'met' if ok_b else 'MISSED'}")
        if not ok_b:
            print(
                "    reason: the two clients differ in scheduling (gevent greenlets vs asyncio) on a loaded "
                "2-core host, and a 20 s closed loop holds few requests per user"
            )
    return 0 if ok_a and ok_b else 1


if __name__ == "__main__":
    sys.exit(main())
