"""Load the data-driven bad-input cases: one YAML file per resource/values case, a list for requests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

CASES = Path(__file__).resolve().parents[1] / "badinput" / "cases"


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


REQUEST_KEYS = {
    "name", "row", "path", "method", "raw", "json", "audio_inputs", "content_type", "headers", "status",
    "expect", "body", "xfail",
}  # fmt: skip
CONTRACT = CASES.parents[2] / "docs" / "server-contract.md"
CONTRACT_ROW = re.compile(r"^\|\s*([A-Z]{1,2}\d+)\s*\|", re.MULTILINE)


def contract_rows() -> set[str]:
    """The row IDs of docs/server-contract.md (the first cell of a table row: `| SP4 | ...`)."""
    return set(CONTRACT_ROW.findall(CONTRACT.read_text()))


def _check_request_case(entry: dict[str, Any]) -> None:
    name = entry.get("name", entry)
    unknown = set(entry) - REQUEST_KEYS
    assert not unknown, f"requests.yaml {name}: unknown keys {sorted(unknown)}"
    for key in ("name", "row", "status"):
        _required(entry, key, CASES / "requests.yaml")
    assert ("expect" in entry) != ("body" in entry), f"requests.yaml {name}: give exactly one of expect, body"
    sources = [key for key in ("raw", "json", "audio_inputs") if key in entry]
    assert len(sources) <= 1, f"requests.yaml {name}: more than one body source {sources}"


def request_params() -> list[Any]:
    """pytest params for cases/requests.yaml, each marked with its contract row; entries with `xfail`
    are strict expected failures."""
    params = []
    for entry in yaml.safe_load((CASES / "requests.yaml").read_text()):
        _check_request_case(entry)
        marks = [pytest.mark.contract(entry["row"])]
        if "xfail" in entry:
            marks.append(pytest.mark.xfail(strict=True, reason=entry["xfail"]))
        params.append(pytest.param(entry, id=entry["name"], marks=marks))
    return params
