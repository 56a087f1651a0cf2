"""Malformed chart values files are refused by helm's schema validation with a message naming the value.

Complements tests/chart/test_chart_schema.py (which covers other values); the cases here are data files
under cases/values/, rendered with `helm template -f <file>` exactly as a user would pass them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import chart as ck
from tests.support.cases import Case, file_cases

VALUES_CASES = file_cases("values", "values")


@pytest.mark.parametrize("case", VALUES_CASES, ids=[c.name for c in VALUES_CASES])
def test_malformed_values_file_is_refused_naming_the_value(case: Case, tmp_path: Path) -> None:
    values_file = tmp_path / f"{case.name}.yaml"
    values_file.write_text(yaml.safe_dump(case.document))
    proc = ck.template(files=[values_file])
    assert proc.returncode != 0, f"{case.name}: helm accepted {case.document}"
    assert case.expect in proc.stderr, (
        f"{case.name}: helm's error does not name {case.expect}:\n{proc.stderr}"
    )
    assert "panic" not in proc.stderr.lower() and "goroutine" not in proc.stderr, proc.stderr


def test_the_same_values_minus_the_fault_are_accepted() -> None:
    """The cases fail because of their one bad value: the local example values render fine."""
    proc = ck.template(files=[ck.EXAMPLES / "values-local.yaml"])
    assert proc.returncode == 0, proc.stderr


def test_values_cases_do_not_duplicate_the_chart_schema_tests() -> None:
    from tests.support.chart import BAD_VALUES

    theirs = [values for values, _ in BAD_VALUES]
    dup = [c.name for c in VALUES_CASES if c.document in theirs]
    assert not dup, f"already covered by tests/chart/test_chart_schema.py: {dup}"
