"""`--fail-on` gates: 'ttfa_p99_ms<=800,error_rate<=0.01' checked against the summary JSON."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

# Summary keys a gate may name (flat numeric figures of metrics.summarize and the capacity result).
GATE_METRICS = (
    "error_rate",
    "audio_throughput",
    "requests_per_s",
    "ttfa_p50_ms",
    "ttfa_p90_ms",
    "ttfa_p99_ms",
    "ttfa_mean_ms",
    "rtf_p50",
    "rtf_p90",
    "rtf_p99",
    "xrt_p50",
    "streams_with_underrun",
    "underrun_free_share",
    "underrun_stall_s",
    "goodput",
    "goodput_share",
    "requests",
    "failures",
    "implausible_length",
    "capacity_users",
    # higgs_load.quality_report: the playback model and the correctness checks
    "min_prebuffer_p50_ms",
    "min_prebuffer_p95_ms",
    "min_prebuffer_p99_ms",
    "audio_too_long",
    "audio_too_short",
    "silence_gap",
    "clipped_audio",
    "truncated_stream",
)
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_GATE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|==|<|>)\s*([-+0-9.eE]+)\s*$")
EXIT_THRESHOLD_MISSED = 3


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    value: float

    def check(self, summary: dict) -> tuple[bool, str]:
        actual = summary.get(self.metric)
        if actual is None:
            return False, f"{self.metric} {self.op} {self.value:g}: not measured (no data)"
        ok = _OPS[self.op](actual, self.value)
        verdict = "ok" if ok else "MISSED"
        return ok, f"{self.metric} {self.op} {self.value:g}: {actual:.6g} {verdict}"


def parse_gates(spec: str | None) -> list[Gate]:
    gates: list[Gate] = []
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        m = _GATE.match(part)
        if not m:
            raise ValueError(f"--fail-on: cannot parse {part.strip()!r}; write e.g. 'ttfa_p99_ms<=800'")
        metric, op, value = m.groups()
        if metric not in GATE_METRICS:
            raise ValueError(f"--fail-on: unknown metric {metric!r}; choose from {', '.join(GATE_METRICS)}")
        try:
            gates.append(Gate(metric, op, float(value)))
        except ValueError as exc:
            raise ValueError(f"--fail-on: {value!r} in {part.strip()!r} is not a number") from exc
    return gates


def evaluate(gates: list[Gate], summary: dict) -> tuple[bool, list[str]]:
    results = [g.check(summary) for g in gates]
    return all(ok for ok, _ in results), [line for _, line in results]
