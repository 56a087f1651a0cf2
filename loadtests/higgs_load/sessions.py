"""Sessions (`--shape sessions`): call-centre style open-loop arrivals, and their Erlang figures.

Sessions arrive as a Poisson process at `--session-rate` per second (all dispatchers together). Each
session makes `--session-turns` requests in a row (a fixed number `3`, or `geo:3`: geometric with mean
3, at least 1), waiting `--think-time` between a turn's end and the next turn (fixed `2`, or `exp:2`:
exponential with mean 2 s). Arrival times come from the clock, never from responses: a session
arrives whether or not the server has served the previous ones (open loop). The only bound is
`--max-sessions`, a safety cap on sessions in flight; an arrival that finds it full is refused and
counted (`sessions_capped`, and a warning in the log), never silently dropped.

Offered load, in Erlangs: A = lambda x H, lambda the session arrival rate (per second), H the mean
time a session holds a stream (seconds; the sum of its turns' durations, request sent to last byte:
think time holds none). One Erlang is one stream held all the time. Both are measured (from the
records: lambda over the report's window, H over the completed sessions); arrivals refused by the
cap count in the offered load (`offered_erlangs`), not in the carried one (`carried_erlangs`). By
Little's law the carried load equals the time-average number of streams in flight, which the
report measures beside it (`concurrency_mean`, and the time-weighted p95 `concurrency_p95`): a gap
between them means records are missing. The same for whole sessions (arrival to last byte of the
last turn): `sessions_offered_erlangs` beside `sessions_in_flight_mean`. Pure: no Locust, no gevent; the dispatcher is higgs_load.session_users.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from higgs_load.records import RequestRecord

DEFAULT_MAX_SESSIONS = 500


@dataclass(frozen=True)
class Draw:
    """A number drawn per session or per pause: `fixed` (the mean itself), `geo` (geometric on
    1, 2, ... with that mean) or `exp` (exponential with that mean)."""

    dist: str
    mean: float

    def sample(self, rng: random.Random) -> float:
        if self.dist == "fixed":
            return self.mean
        if self.dist == "exp":
            return rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0
        # geometric on {1, 2, ...}: P(k) = (1-p)^(k-1) p, mean 1/p
        p = 1.0 / self.mean
        if p >= 1.0:
            return 1.0
        u = 1.0 - rng.random()  # (0, 1]
        return float(1 + int(math.log(u) / math.log(1.0 - p)))


def parse_draw(flag: str, spec: str, allowed: tuple[str, ...], *, integer: bool) -> Draw:
    """'3' -> fixed 3; 'geo:3' / 'exp:2' -> that distribution with that mean (ValueError names the flag)."""
    text = str(spec).strip()
    dist, _, value = text.rpartition(":")
    dist = dist or "fixed"
    try:
        mean = float(value)
    except ValueError:
        raise ValueError(f"{flag} must be N or {'/'.join(a + ':N' for a in allowed)}, got {spec!r}") from None
    if dist not in ("fixed", *allowed):
        raise ValueError(f"{flag}: unknown distribution {dist!r} (use {', '.join(allowed)}), got {spec!r}")
    if integer and (mean < 1 or (dist == "fixed" and mean != int(mean))):
        raise ValueError(f"{flag} must be a whole number >= 1 (or a mean >= 1), got {spec!r}")
    if not integer and mean < 0:
        raise ValueError(f"{flag} must be >= 0 s, got {spec!r}")
    return Draw(dist, mean)


@dataclass(frozen=True)
class Session:
    """One session's plan: its turns, and the pause before each turn after the first."""

    turns: int
    think_s: tuple[float, ...]  # len == turns - 1


@dataclass(frozen=True)
class SessionConfig:
    rate_per_s: float  # session arrivals per second, all dispatchers together
    turns: Draw
    think: Draw
    max_sessions: int  # sessions in flight, all dispatchers together

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError(f"--session-rate must be > 0 sessions/s, got {self.rate_per_s}")
        if self.max_sessions < 1:
            raise ValueError(f"--max-sessions must be >= 1, got {self.max_sessions}")

    @property
    def mean_turns(self) -> float:
        return self.turns.mean

    def draw(self, rng: random.Random) -> Session:
        n = max(1, int(self.turns.sample(rng)))
        return Session(n, tuple(self.think.sample(rng) for _ in range(n - 1)))

    def share(self, dispatchers: int) -> tuple[float, int]:
        """One of `dispatchers`' share: (its arrival rate, its cap). Poisson streams of rate R/N add up
        to one of rate R; the caps add up to at least --max-sessions."""
        n = max(1, dispatchers)
        return self.rate_per_s / n, max(1, math.ceil(self.max_sessions / n))


def session_config(o: argparse.Namespace) -> SessionConfig:
    """The parsed options -> SessionConfig (ValueError names the option)."""
    return SessionConfig(
        rate_per_s=float(o.session_rate),
        turns=parse_draw("--session-turns", o.session_turns, ("geo",), integer=True),
        think=parse_draw("--think-time", o.think_time, ("exp",), integer=False),
        max_sessions=int(o.max_sessions),
    )


def add_session_options(g: Any) -> None:
    """Our session options, in the "Higgs Audio load test" group (higgs_load.options)."""
    g.add_argument(
        "--session-rate", type=float, default=1.0, help="sessions: arrivals per second (all workers)"
    )
    g.add_argument(
        "--session-turns", default="3", help="sessions: requests per session, N or geo:MEAN (geometric)"
    )
    g.add_argument(
        "--think-time", default="2", help="sessions: seconds between a turn's end and the next, S or exp:MEAN"
    )
    g.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        help="sessions: safety cap on sessions in flight (all workers); arrivals over it are refused and "
        "reported as sessions_capped",
    )


def arrival_times(rate_per_s: float, start: float, rng: random.Random) -> Iterator[float]:
    """Poisson arrival times after `start`: exponential gaps of mean 1/rate, fixed in advance."""
    t = start
    while True:
        t += rng.expovariate(rate_per_s)
        yield t


# --- the report --------------------------------------------------------------------------------------


def erlangs(rate_per_s: float, mean_holding_s: float) -> float:
    """Offered traffic in Erlangs: arrivals per second times mean holding time in seconds."""
    return rate_per_s * mean_holding_s


def in_flight_profile(
    intervals: Sequence[tuple[float, float]], begin: float, end: float
) -> tuple[float, float | None, int]:
    """Of a count of intervals in flight over [begin, end]: its time-average, its time-weighted p95
    (the smallest level the count stays at or below for 95% of the time) and its maximum."""
    span = end - begin
    if span <= 0:
        return 0.0, None, 0
    events: list[tuple[float, int]] = []
    for a, b in intervals:
        a, b = max(a, begin), min(b, end)
        if b > a:
            events += [(a, 1), (b, -1)]
    events.sort()
    time_at: dict[int, float] = defaultdict(float)
    level, t_prev = 0, begin
    for t, delta in events:
        time_at[level] += t - t_prev
        level, t_prev = level + delta, t
    time_at[level] += end - t_prev
    mean = sum(n * dt for n, dt in time_at.items()) / span
    acc, p95 = 0.0, 0
    for n in sorted(time_at):
        acc += time_at[n]
        p95 = n
        if acc >= 0.95 * span - 1e-12:
            break
    return mean, float(p95), max((n for n, dt in time_at.items() if dt > 0), default=0)


@dataclass
class _SessionSeen:
    turns_planned: int
    arrived: float
    turns: list[RequestRecord]


def _sessions(records: Sequence[RequestRecord]) -> dict[str, _SessionSeen]:
    out: dict[str, _SessionSeen] = {}
    for r in records:
        if r.session_id is None:
            continue
        s = out.setdefault(r.session_id, _SessionSeen(r.session_turns or 1, r.t_start, []))
        s.turns.append(r)
        if r.session_turn == 1:
            s.arrived = r.t_start  # the first turn is sent at the session's arrival
    return out


def session_summary(
    records: Sequence[RequestRecord], t_start: float, t_stop: float, *, capped: int = 0
) -> dict[str, Any]:
    """The sessions' figures: offered load in Erlangs (measured arrival rate x measured mean stream
    holding time of the completed sessions) beside the measured concurrency of streams (time-average
    and time-weighted p95 of requests in flight), and of sessions (arrival to last turn's end).

    The window: the whole run when every session completed (a graceful stop, --stop-timeout: the
    run starts and ends empty, so lambda x H equals the time-average exactly, the check of the
    bookkeeping); else, with sessions cut by the stop (their unfinished turns left no record), a steady
    window from t_start plus the longest completed session (warm-up) to t_stop less it. A run too
    short for that window: the whole run, flagged as approximate (`window`)."""
    seen = _sessions(records)
    done = [s for s in seen.values() if len(s.turns) >= s.turns_planned]
    holding = [sum(r.duration_s or 0.0 for r in s.turns) for s in done]
    length = [max(r.t_end for r in s.turns) - s.arrived for s in done]
    longest = max(length, default=0.0)
    last_end = max((r.t_end for r in records if r.session_id is not None), default=t_stop)
    if len(done) == len(seen):
        begin, end, how = t_start, max(t_stop, last_end), "whole run, every session completed"
    elif t_stop - t_start - 2 * longest >= 1.0:
        begin, end, how = t_start + longest, t_stop - longest, "steady: warm-up and cut sessions left out"
    else:
        begin, end, how = (
            t_start,
            t_stop,
            "whole run, approximate: sessions cut, too short for a steady window",
        )
    window = max(end - begin, 1e-9)
    arrived = sum(1 for s in seen.values() if begin <= s.arrived < end)
    rate = arrived / window
    mean_hold = sum(holding) / len(holding) if holding else None
    mean_len = sum(length) / len(length) if length else None
    streams = [(r.t_start, r.t_end) for r in records if r.session_id is not None]
    spans = [(s.arrived, max(r.t_end for r in s.turns)) for s in seen.values()]
    conc_mean, conc_p95, conc_max = in_flight_profile(streams, begin, end)
    sess_mean, sess_p95, _ = in_flight_profile(spans, begin, end)
    run_s = max(t_stop - t_start, 1e-9)
    offered = erlangs(rate, mean_hold) if mean_hold is not None else None
    return {
        "sessions": len(seen),
        "sessions_completed": len(done),
        "sessions_capped": capped,
        "turns": sum(len(s.turns) for s in seen.values()),
        "turns_per_session_mean": (sum(s.turns_planned for s in done) / len(done)) if done else None,
        "window_s": [begin - t_start, end - t_start],
        "window": how,
        "arrival_rate": rate,
        # a refused arrival was offered too: the rate counted over the whole run
        "arrival_rate_offered": rate + capped / run_s,
        "holding_s_mean": mean_hold,
        "session_s_mean": mean_len,
        "offered_erlangs": erlangs(rate + capped / run_s, mean_hold) if mean_hold is not None else None,
        "carried_erlangs": offered,
        "concurrency_mean": conc_mean,
        "concurrency_p95": conc_p95,
        "concurrency_max": conc_max,
        "sessions_in_flight_mean": sess_mean,
        "sessions_in_flight_p95": sess_p95,
        "sessions_offered_erlangs": erlangs(rate, mean_len) if mean_len is not None else None,
    }


def session_markdown(s: dict[str, Any]) -> list[str]:
    """The report's Sessions section (summary.md)."""

    def f(v: Any, d: int = 2) -> str:
        return "n/a" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)

    lines = [
        "",
        "## Sessions",
        "",
        "| metric | value |",
        "|---|---|",
        f"| sessions (completed / capped) | {s['sessions']} ({s['sessions_completed']} / {s['sessions_capped']}) |",
        f"| turns (mean per completed session) | {s['turns']} ({f(s['turns_per_session_mean'])}) |",
        f"| arrival rate (sessions/s) | {f(s['arrival_rate'], 3)} |",
        f"| stream holding time per session, mean (s) | {f(s['holding_s_mean'])} |",
        f"| offered load (Erlangs) | {f(s['offered_erlangs'])} |",
        f"| streams in flight: time-average / p95 / max | {f(s['concurrency_mean'])} / "
        f"{f(s['concurrency_p95'], 0)} / {s['concurrency_max']} |",
        f"| sessions in flight: time-average (lambda x mean session length) | "
        f"{f(s['sessions_in_flight_mean'])} ({f(s['sessions_offered_erlangs'])}) |",
        f"| window (s after start) | {f(s['window_s'][0], 1)} to {f(s['window_s'][1], 1)} ({s['window']}) |",
    ]
    if s["sessions_capped"]:
        lines += [
            "",
            f"**{s['sessions_capped']} session arrivals were refused: --max-sessions was full.** The "
            "offered load counts them; the streams in flight carried only the others.",
        ]
    return lines
