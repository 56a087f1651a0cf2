"""Load the data-driven bad-input cases: one YAML file per resource/values case, a list for requests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

CASES = Path(__file__).resolve().parent / "cases"


@dataclass(frozen=True)
class Case:
    name: str
    document: Any  # the malformed input: a HiggsDeployment spec, a values map, or a request description
    expect: str  # the text the error must contain: it names the offending field


def _required(doc: dict[str, Any], key: str, path: Path) -> Any:
    if key not in doc:
        raise AssertionError(f"{path}: case file lacks the key {key!r}")
    return doc[key]


def file_cases(kind: str, key: str) -> list[Case]:
    """Cases from cases/<kind>/*.yaml, each `{expect: ..., <key>: ...}`."""
    cases = []
    for path in sorted((CASES / kind).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        cases.append(Case(path.stem, _required(doc, key, path), str(_required(doc, "expect", path))))
    return cases


def request_params() -> list[Any]:
    """pytest params for cases/requests.yaml; entries with `xfail` are strict expected failures."""
    params = []
    for entry in yaml.safe_load((CASES / "requests.yaml").read_text()):
        marks = [pytest.mark.xfail(strict=True, reason=entry["xfail"])] if "xfail" in entry else []
        params.append(pytest.param(entry, id=entry["name"], marks=marks))
    return params
