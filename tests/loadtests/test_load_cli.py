"""higgs-load-report: recompute a report from raw.jsonl with new SLOs and gates; exit codes."""

import json
import shutil
import subprocess
from pathlib import Path

from higgs_load.cli import main
from higgs_load.metrics import SLO, Step
from higgs_load.records import write_jsonl
from higgs_load.report import PLOTS, build_summary, write_report
from higgs_load.thresholds import EXIT_THRESHOLD_MISSED
from tests.support.records import make_records


def _run_dir(tmp_path: Path) -> Path:
    """A finished run's directory: raw.jsonl plus the summary.json the locustfile wrote (2 steps)."""
    records = make_records()
    steps = [Step(1, 1000.0, 1010.0), Step(2, 1010.0, 1021.0)]
    summary = build_summary(records, SLO(ttfa_ms=300), steps, extra={"shape": "step", "host": "h"})
    write_report(tmp_path, summary, records, raw_out=tmp_path / "raw.jsonl", plots=False)
    return tmp_path


def test_recomputes_with_new_slo_and_keeps_the_step_timeline(tmp_path, capsys):
    run = _run_dir(tmp_path)
    assert main([str(run / "raw.jsonl"), "--slo-ttfa-ms", "200", "--no-plots"]) == 0
    data = json.loads((run / "summary.json").read_text())
    records = make_records()
    expected = build_summary(records, SLO(ttfa_ms=200), [Step(1, 1000.0, 1010.0), Step(2, 1010.0, 1021.0)])
    for key in ("requests", "error_rate", "ttfa_p99_ms", "rtf_p50", "goodput", "goodput_share"):
        assert data[key] == expected[key], key
    good = sum(1 for r in records if r.ok and r.ttfa_s * 1000 <= 200)
    assert data["good_requests"] == good
    assert data["slo"]["ttfa_ms"] == 200
    assert [s["users"] for s in data["steps"]] == [1, 2]
    assert data["shape"] == "step" and data["host"] == "h"
    assert "40 records" in capsys.readouterr().out


def test_plots_and_markdown_go_to_out_dir(tmp_path):
    run = _run_dir(tmp_path / "run")
    out = tmp_path / "again"
    assert main([str(run / "raw.jsonl"), "--out-dir", str(out), "--summary", str(run / "summary.json")]) == 0
    for name in ("summary.json", "summary.md", *PLOTS):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "summary.json").read_text())["steps"][1]["users"] == 2


def test_without_a_summary_the_run_is_one_level(tmp_path):
    raw = tmp_path / "only.jsonl"
    write_jsonl(raw, make_records())
    assert main([str(raw), "--no-plots"]) == 0
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["steps"] == [] and data["capacity"] is None and data["requests"] == 40


def test_gates_set_the_exit_code(tmp_path, capsys):
    run = _run_dir(tmp_path)
    raw = str(run / "raw.jsonl")
    assert main([raw, "--no-plots", "--fail-on", "error_rate<=0.01"]) == EXIT_THRESHOLD_MISSED
    assert "MISSED" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["gates_passed"] is False
    assert main([raw, "--no-plots", "--fail-on", "error_rate<=0.2,requests>=40"]) == 0
    assert json.loads((run / "summary.json").read_text())["gates_passed"] is True


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err
    bad = tmp_path / "raw.jsonl"
    bad.write_text('{"kind": "stream", "t_start": 1.0}\n{"nope": 1}\n')
    assert main([str(bad)]) == 2
    assert "raw.jsonl:2" in capsys.readouterr().err
    run = _run_dir(tmp_path / "r")
    assert main([str(run / "raw.jsonl"), "--fail-on", "speed>=3"]) == 2
    assert "unknown metric 'speed'" in capsys.readouterr().err


def test_console_script_is_installed(tmp_path):
    run = _run_dir(tmp_path)
    exe = shutil.which("higgs-load-report", path=str(Path(__file__).parents[2] / ".venv" / "bin"))
    assert exe, "higgs-load-report console script missing from the venv"
    res = subprocess.run(
        [exe, str(run / "raw.jsonl"), "--no-plots", "--fail-on", "failures<=0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == EXIT_THRESHOLD_MISSED, res.stderr
    assert "failures <= 0: 4 MISSED" in res.stdout
