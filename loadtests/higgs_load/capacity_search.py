"""Capacity search (--shape capacity): the largest number of concurrent streams at which the share of
requests meeting every SLO stays at or above a target (DESIGN.md "Load-test metrics": Capacity).

Pure: no Locust, no clock of its own. `CapacitySearch` decides the next level from the results of the
levels run so far (an exponential probe 1, 2, 4, ... up to the first failing level, then bisection
between the last passing and the first failing level); `CapacityController` turns it into a load
shape: it holds each level, judges the requests of the level's steady part, and says how many users
to run at each moment (HiggsShape delegates to it, higgs_load.capacity_shape).

- A level passes when `good / requests >= --slo-target`, over the requests sent after its warm-up (the
  first quarter of its hold) and completed before it ended. With a 0.95 target and a TTFA SLO of X ms,
  a passing level has TTFA p95 <= X ms; with `--slo-rtf 1`, 95 % of its requests ran faster than real
  time (the report gives the measured TTFA p95 and RTF p99 at the level found).
- Search: levels 1, 2, 4, ... until one fails (or `--capacity-max-streams`), then bisection between the
  largest passing and the smallest failing level until they are adjacent; the capacity is the largest
  passing level (0 when level 1 fails). A sharp service model is found exactly, in about 2 log2(N)
  levels.
- Confidence: per level the requests judged, the share, its 95 % Wilson score interval and the margin
  share - target; a verdict is "within noise" when the interval contains the target (hold levels
  longer, or raise `--capacity-min-requests`, to tighten it).
- Per replica: divided by the HiggsDeployment's ready replica count when it held still during the run
  (`--higgsdeployment`); refused when it changed; else `--replicas` as stated; else "per server behind
  --host".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from higgs_load.capacity_spec import autoscaling_spec
from higgs_load.metrics import SLO, summarize
from higgs_load.records import RequestRecord

Z_95 = 1.959964  # two-sided 95 %
WARMUP_SHARE = 0.25  # the first quarter of a level's hold is left out (the ramp, not the level)


def wilson_interval(good: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial share good/total ((0, 1) when there is no request)."""
    if total <= 0:
        return 0.0, 1.0
    p = good / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class LevelResult:
    """One level's judged requests: `good` of `requests` met every SLO."""

    streams: int
    requests: int
    good: int
    figures: dict = field(default_factory=dict, compare=False)  # summarize() of the judged requests

    @property
    def share(self) -> float:
        return self.good / self.requests if self.requests else 0.0

    def passes(self, target: float) -> bool:
        return self.requests > 0 and self.share >= target

    def row(self, target: float) -> dict:
        lo, hi = wilson_interval(self.good, self.requests)
        f = self.figures
        return {
            "streams": self.streams,
            "requests": self.requests,
            "good": self.good,
            "share": self.share,
            "wilson_low": lo,
            "wilson_high": hi,
            "margin": self.share - target,
            "passed": self.passes(target),
            # The verdict is statistically clear when the 95 % interval lies on one side of the target.
            "confident": lo >= target if self.passes(target) else hi < target,
            **{
                k: f.get(k)
                for k in (
                    "ttfa_p50_ms",
                    "ttfa_p99_ms",
                    "rtf_p50",
                    "rtf_p99",
                    "audio_throughput",
                    "streams_with_underrun",
                    "error_rate",
                )
            },
            "ttfa_p95_ms": f.get("ttfa_p95_ms"),
        }


class CapacitySearch:
    """Exponential probe then bisection over integer stream counts in [1, max_streams]."""

    def __init__(self, target: float, max_streams: int = 256) -> None:
        if not 0 < target <= 1:
            raise ValueError(f"--slo-target must be in (0, 1], got {target}")
        if max_streams < 1:
            raise ValueError(f"--capacity-max-streams must be >= 1, got {max_streams}")
        self.target = target
        self.max_streams = max_streams
        self.results: list[LevelResult] = []

    @property
    def passing(self) -> int:
        """The largest level that passed (0: none)."""
        return max((r.streams for r in self.results if r.passes(self.target)), default=0)

    @property
    def failing(self) -> int | None:
        """The smallest level above `passing` that failed (None: none yet)."""
        fails = [r.streams for r in self.results if not r.passes(self.target) and r.streams > self.passing]
        return min(fails, default=None)

    def record(self, result: LevelResult) -> None:
        self.results.append(result)

    def next_level(self) -> int | None:
        """The next level to run, or None when the answer is known."""
        if not self.results:
            return 1
        lo, hi = self.passing, self.failing
        if hi is None:  # still probing upwards (a failing level 1 makes hi 1)
            return None if lo >= self.max_streams else min(lo * 2, self.max_streams)
        if hi - lo <= 1:
            return None
        return (lo + hi) // 2

    @property
    def done(self) -> bool:
        return self.next_level() is None

    def answer(self) -> int:
        """The capacity found so far: the largest passing level below the first failing one."""
        return self.passing


def judge(records: Sequence[RequestRecord], slo: SLO, streams: int, begin: float, end: float) -> LevelResult:
    """The requests of one level: sent after its warm-up (begin) and completed before its end: every
    one was served at this level's load, not the previous one's."""
    recs = [r for r in records if begin <= r.t_start and r.t_end < end]
    good = sum(1 for r in recs if slo.met_by(r))
    figures: dict = {}
    if recs:
        figures = summarize(recs, slo, window=(begin, end))
        ttfa = sorted(r.ttfa_s * 1000 for r in recs if r.ok and r.ttfa_s is not None)
        if ttfa:
            import numpy as np

            figures["ttfa_p95_ms"] = float(np.percentile(ttfa, 95))
    return LevelResult(streams, len(recs), good, figures)


@dataclass
class Level:
    streams: int
    begin: float  # unix time the level began


class CapacityController:
    """Drives the search in time: hold each level `hold_s` (longer, up to 3x, until `min_requests`
    were judged), judge it, move to the next level; None when the search is over."""

    def __init__(
        self,
        search: CapacitySearch,
        slo: SLO,
        hold_s: float,
        min_requests: int = 20,
        warmup_share: float = WARMUP_SHARE,
        run_started: float | None = None,
    ) -> None:
        if hold_s <= 0:
            raise ValueError(f"--step-hold must be > 0 s, got {hold_s}")
        self.search = search
        self.slo = slo
        self.hold_s = hold_s
        self.min_requests = min_requests
        self.warmup_share = warmup_share
        self.levels: list[Level] = []
        self.windows: list[tuple[int, float, float]] = []  # (streams, judged from, judged until)
        self.run_started = run_started  # the collector's start time of the run this controller drives

    def users_at(self, now: float, records: Sequence[RequestRecord]) -> int | None:
        """Users to run at unix time `now`, given every record collected so far; None: stop."""
        if not self.levels:
            first = self.search.next_level()
            if first is None:
                return None
            self.levels.append(Level(first, now))
            return first
        level = self.levels[-1]
        held = now - level.begin
        if held < self.hold_s:
            return level.streams
        begin = level.begin + self.warmup_share * self.hold_s
        result = judge(records, self.slo, level.streams, begin, now)
        if result.requests < self.min_requests and held < 3 * self.hold_s:
            return level.streams  # too few requests to judge: hold on
        self.search.record(result)
        self.windows.append((level.streams, begin, now))
        nxt = self.search.next_level()
        if nxt is None:
            return None
        self.levels.append(Level(nxt, now))
        return nxt


def per_unit(
    replicas: Sequence[int], stated: int | None, host: str | None
) -> tuple[int | None, str, str | None]:
    """(divisor, unit words, why not per replica) for the capacity sentence.

    `replicas` are the replica counts the HiggsDeployment reported during the run (empty: not watched);
    `stated` the --replicas given. A figure is per replica only when the count held still.
    """
    if replicas:
        counts = sorted(set(replicas))
        if len(counts) > 1:
            return (
                None,
                "for the whole deployment",
                f"the replica count changed during the run ({counts[0]} to {counts[-1]}): no per-replica "
                "figure; pin the replicas (autoscaling off) to measure capacity",
            )
        n = counts[0]
        return n, "per replica" if n > 0 else "per server", None
    if stated and stated > 1:
        return stated, f"per replica (--replicas {stated}, as stated, not observed)", None
    return 1, f"per server behind {host or '--host'}", None


def capacity_summary(
    search: CapacitySearch,
    slo: SLO,
    windows: Sequence[tuple[int, float, float]],
    *,
    replicas_seen: Sequence[int] = (),
    replicas_stated: int | None = None,
    host: str | None = None,
    complete: bool = True,
    prebuffer_ms: float = 0.0,
) -> dict:
    """The summary's `capacity_search` section: the levels in run order, the answer and its sentence."""
    target = search.target
    rows = [r.row(target) for r in search.results]
    for row, (_s, begin, end) in zip(rows, windows, strict=False):
        row["judged_from"], row["judged_until"] = begin, end
    found = search.answer()
    divisor, unit, refusal = per_unit(replicas_seen, replicas_stated, host)
    at = next((row for row in rows if row["streams"] == found), None)
    conditions = []
    if slo.ttfa_ms is not None:
        conditions.append(f"TTFA p95 <= {slo.ttfa_ms:g} ms")
    if slo.rtf is not None:
        conditions.append(f"RTF p99 < {slo.rtf:g}")
    if slo.underrun_s is not None:
        stall = "no underrun" if slo.underrun_s == 0 else f"underruns <= {slo.underrun_s:g} s"
        conditions.append(f"{stall} with a {prebuffer_ms:g} ms pre-buffer")
    goal = f"{100 * target:g} % of requests meeting every SLO"
    if divisor is None:
        sentence = f"{found} real-time streams {unit} ({goal}); {refusal}"
        per = None
    else:
        per = found / divisor
        sentence = f"{per:g} real-time streams {unit} at {', '.join(conditions) or 'no SLO given'} ({goal})"
    if at is not None:
        sentence += (
            f"; measured there: TTFA p95 {_ms(at['ttfa_p95_ms'])}, RTF p99 {_num(at['rtf_p99'])}, "
            f"{at['requests']} requests, {100 * at['share']:.1f} % good (95 % Wilson interval "
            f"{100 * at['wilson_low']:.1f}-{100 * at['wilson_high']:.1f} %, margin {100 * at['margin']:+.1f} "
            f"points{'' if at['confident'] else ', within the noise of the target'})"
        )
    elif found == 0:
        sentence = f"no level met the target ({goal}, {', '.join(conditions) or 'no SLO given'})"
    if not complete:
        sentence += "; the search did not finish (the run was stopped): a lower bound"
    fail = search.failing
    return {
        "target": target,
        "streams": found,
        "first_failing": fail,
        "per_unit": per,
        "unit": unit,
        "replicas": divisor,
        "refused_per_replica": refusal,
        "complete": complete,
        "levels": rows,
        "prebuffer_ms": prebuffer_ms,
        "sentence": sentence,
        # The spec to paste: streams per replica with headroom (higgs_load.capacity_spec).
        "autoscaling": autoscaling_spec(per, ", ".join(conditions) or "no SLO given"),
    }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
