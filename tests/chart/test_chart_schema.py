"""Bad values make helm fail with a message that names the value (values.schema.json and the
chart's cross-value checks)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import chart as ck
from tests.support.chart import BAD_VALUES


@pytest.mark.parametrize(("values", "names"), BAD_VALUES, ids=[json.dumps(v)[:60] for v, _ in BAD_VALUES])
def test_bad_value_is_refused_naming_it(values: dict[str, Any], names: str) -> None:
    proc = ck.template(values)
    assert proc.returncode != 0, f"{values} was accepted"
    assert names in proc.stderr, f"helm's error does not name {names}:\n{proc.stderr}"


def test_good_edge_values_are_accepted() -> None:
    for values in (
        {"gpuMemoryUtilization": 1},
        {"gpuMemoryUtilization": "0.9"},  # --set gives strings
        {"maxNumSeqs": None},
        {"hfToken": {"existingSecret": "", "value": "t"}},
        {
            "modelCache": {"mode": "existing", "existing": {"hostPath": "/d"}},
            "hfToken": {"existingSecret": ""},
        },
        {"strategy": {"rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0}}},
        {"podDisruptionBudget": {"minAvailable": "50%"}},
    ):
        proc = ck.template(values)
        assert proc.returncode == 0, f"{values} refused:\n{proc.stderr}"


def test_set_flag_string_values_reach_args() -> None:
    proc = ck.run_helm("template", "t", str(ck.CHART), "--set", "gpuMemoryUtilization=0.9")
    assert proc.returncode == 0, proc.stderr
    assert '- "0.9"' in proc.stdout
