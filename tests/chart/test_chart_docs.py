"""The chart README: its values table matches the schema, its Python example runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.support import chart as ck

README = ck.CHART / "README.md"


def test_values_table_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ck.REPO_ROOT / "hack" / "gen_values_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("chart", ["higgs-audio", "higgs-operator", "higgs-loadtest"])
def test_every_value_of_every_chart_is_described(chart: str) -> None:
    """The schema is the one source of each chart's values table: no value may go undescribed."""
    from hack import gen_values_doc  # the repository root is on the test path (pyproject's pythonpath)

    schema = json.loads((ck.REPO_ROOT / "charts" / chart / "values.schema.json").read_text())
    bare = [".".join(path) for path, node in gen_values_doc.leaves(schema) if not node.get("description")]
    assert not bare, f"charts/{chart}/values.schema.json: values without a description: {bare}"


def test_every_schema_leaf_is_in_the_table() -> None:
    text = README.read_text()
    for path in (
        "modelCache.pvc.size",
        "hfToken.existingSecret",
        "gpuMemoryUtilization",
        "tests.image.repository",
    ):
        assert f"| `{path}` |" in text, path


def test_readme_python_example_saves_audio(simulator_no_key: str, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "no python example in the README"
    code = "\n".join(line[3:] if line.startswith("   ") else line for line in blocks[0].splitlines())
    code = code.replace("http://127.0.0.1:8000/v1", f"{simulator_no_key}/v1")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("speech.wav", "stream.wav"):
        with wave.open(str(tmp_path / name)) as w:
            assert w.getframerate() == 24000 and w.getnframes() > 24000 * 0.3, name


# Every schema property described, values.yaml == the schema's defaults: tests/chart/test_settings_source.py.
