"""Locust as a bounded subprocess, for the headless tests and the benchmark (the simulator they load
starts with tests.support.simulator)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.simulator import SERVED, kill_group

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
BIN = Path(sys.executable).parent
MODEL = SERVED


def locust_cmd(host: str, report_dir: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--host",
        host,
        "--report-dir",
        str(report_dir),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *extra,
    ]


def run_bounded(cmd: list[str], timeout: float, log_path: Path, env: dict[str, str] | None = None) -> int:
    """Run to completion in its own process group; on timeout kill the group and fail loudly."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise AssertionError(
                f"{cmd[0]} ran past {timeout} s and was killed:\n{log_path.read_text()[-3000:]}"
            ) from None
