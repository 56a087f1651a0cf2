"""`higgs-load-report`: recompute a load-test report from its raw JSONL, with (new) SLOs and gates.

    higgs-load-report reports/loadtest-20250101-120000/raw.jsonl --slo-ttfa-ms 500 --fail-on 'ttfa_p99_ms<=800'

The step timeline (user levels and their windows) is not in the raw records; it is read from the
run's own summary.json (`--summary`, by default the one next to the raw file) when present, else the
whole run counts as one level. Exit codes match the locustfile: 0 ok, 2 bad input, 3 a gate missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from higgs_load.metrics import SLO, Step
from higgs_load.records import RequestRecord, read_jsonl
from higgs_load.report import SUMMARY_JSON, build_summary, write_report
from higgs_load.thresholds import EXIT_THRESHOLD_MISSED, evaluate, parse_gates

EXIT_BAD_INPUT = 2
# Run facts copied from the original summary (they are not derivable from the records).
_CARRIED = (
    "shape",
    "arrivals_dropped",
    "host",
    "started",
    "stopped",
    "prebuffer_ms",
    "mix",
    "step_hold_s",
    "step_warmup",
)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _replicas(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="higgs-load-report",
        description="Recompute summary.json, summary.md and plots from a load test's raw.jsonl.",
    )
    p.add_argument("raw", type=Path, help="raw per-request JSONL written by the locustfile")
    p.add_argument("--out-dir", type=Path, default=None, help="report directory (default: the raw file's)")
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="the run's summary.json, for its step timeline (default: OUT_DIR or the raw file's dir)",
    )
    p.add_argument("--slo-ttfa-ms", type=_non_negative, default=None, help="SLO: time to first audio, ms")
    p.add_argument("--slo-rtf", type=_non_negative, default=None, help="SLO: real-time factor (wall / audio)")
    p.add_argument(
        "--slo-underrun-s", type=_non_negative, default=None, help="SLO: allowed stall s per stream"
    )
    p.add_argument(
        "--prebuffer-ms",
        type=_non_negative,
        default=None,
        help="count underruns at this pre-buffer (ms of audio before playback; default: the run's "
        "--prebuffer-ms from its summary.json, else the records' own counts)",
    )
    p.add_argument("--min-good-share", type=_non_negative, default=0.95, help="sweep: share meeting SLOs")
    p.add_argument("--replicas", type=_replicas, default=1, help="serving replicas (per-replica capacity)")
    p.add_argument("--fail-on", default="", help="gates, e.g. 'ttfa_p99_ms<=800,error_rate<=0.01' (exit 3)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def load_run_facts(path: Path | None) -> tuple[list[Step], dict]:
    """Steps and carried run facts from an earlier summary.json; ([], {}) when there is none."""
    if path is None or not path.exists():
        return [], {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        steps = [
            Step(int(s["users"]), float(s["t_begin"]), float(s["t_end"]), _float_or_none(s.get("t_measure")))
            for s in data.get("steps", [])
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a load-test summary.json ({exc})") from exc
    return steps, {k: data[k] for k in _CARRIED if k in data}


def recompute(
    records: Sequence[RequestRecord],
    slo: SLO,
    steps: Sequence[Step],
    facts: dict,
    *,
    min_good_share: float = 0.95,
    replicas: int = 1,
    raw_path: Path | None = None,
    prebuffer_ms: float | None = None,
) -> dict:
    extra = {k: v for k, v in facts.items() if k != "prebuffer_ms"}
    if raw_path is not None:
        extra["raw_records"] = str(raw_path)
    if prebuffer_ms is None:
        prebuffer_ms = facts.get("prebuffer_ms")
    return build_summary(
        records,
        slo,
        steps,
        min_good_share=min_good_share,
        replicas=replicas,
        extra=extra,
        prebuffer_s=None if prebuffer_ms is None else prebuffer_ms / 1000,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_dir: Path = args.out_dir or args.raw.parent
    summary_path = args.summary or (out_dir / SUMMARY_JSON if (out_dir / SUMMARY_JSON).exists() else None)
    if summary_path is None and (args.raw.parent / SUMMARY_JSON).exists():
        summary_path = args.raw.parent / SUMMARY_JSON
    try:
        if not args.raw.is_file():
            raise ValueError(f"raw records file {args.raw} does not exist")
        if args.summary is not None and not args.summary.is_file():
            raise ValueError(f"--summary {args.summary} does not exist")
        gates = parse_gates(args.fail_on)
        records = list(read_jsonl(args.raw))
        steps, facts = load_run_facts(summary_path)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"higgs-load-report: error: {exc}\n")
        return EXIT_BAD_INPUT
    slo = SLO(args.slo_ttfa_ms, args.slo_rtf, args.slo_underrun_s)
    summary = recompute(
        records,
        slo,
        steps,
        facts,
        min_good_share=args.min_good_share,
        replicas=args.replicas,
        raw_path=args.raw,
        prebuffer_ms=args.prebuffer_ms,
    )
    code = 0
    if gates:
        passed, lines = evaluate(gates, summary)
        summary["gates"], summary["gates_passed"] = lines, passed
        code = 0 if passed else EXIT_THRESHOLD_MISSED
        for line in lines:
            print(f"threshold {line}")
    paths = write_report(out_dir, summary, records, raw_out=None, plots=not args.no_plots)
    print(f"{len(records)} records -> {', '.join(str(p) for p in paths)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
