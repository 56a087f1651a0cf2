"""Reliability suite: reuse the chart, simulator and operator test helpers (their folders go on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for helper_dir in ("chart", "simulator", "operator", "cluster"):
    if str(TESTS / helper_dir) not in sys.path:
        sys.path.append(str(TESTS / helper_dir))

from operator_fixtures import hub, operator  # noqa: E402, F401 - the suite's module-scoped fixtures
