"""The contract pages stay specifications with tests: every row cites its source and is tested.

Two pages: docs/server-contract.md (Boson's fork, the default server) and docs/server-contract-omni.md
(vLLM-Omni, emulated by ``python -m higgs_sim.omni``).

A test declares the rows it checks with ``@pytest.mark.contract("SP7", "SP6")`` (a marker registered in
pyproject.toml); a module may set ``pytestmark = pytest.mark.contract(...)``. Rows are found by
reading the test files' source for those calls: tests/contract/test_*.py, plus the start-up
engineer's tests/simulator/test_sim_startup.py and test_sim_flags.py (they cover S1-S6 and L1-L5).
A row the simulator does not reproduce is listed in NOT_REPRODUCED with the reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTRACT_DIR = REPO / "tests" / "contract"


@dataclass(frozen=True)
class Page:
    """One server's contract page, the tests that drive it, and the rows it excuses."""

    path: Path
    test_files: tuple[Path, ...]
    tested_sections: tuple[str, ...]  # every row of these needs a test (or an excuse)
    fault_sections: tuple[str, ...]  # known faults and simulator differences: tested or excused
    citation: re.Pattern[str]
    not_reproduced: dict[str, str]
    uncited_sections: tuple[str, ...] = ()  # rows whose last cell is a reason or row references


BOSON = Page(
    path=REPO / "docs" / "server-contract.md",
    test_files=(
        *sorted(p for p in CONTRACT_DIR.glob("test_*.py") if p.name != "test_contract_omni.py"),
        REPO / "tests" / "simulator" / "test_sim_startup.py",
        REPO / "tests" / "simulator" / "test_sim_flags.py",
    ),
    tested_sections=("Endpoints", "Speech", "Chat", "Errors", "Metrics", "Command line", "Start-up"),
    fault_sections=("Known faults", "Where the simulator"),
    # A source cell cites a pinned file (F/H + path), a GitHub issue, or a named library's code.
    citation=re.compile(
        r"(^|[\s,(])[FH] `?[\w./-]+"
        r"|issue #\d+"
        r"|\b(huggingface_hub|transformers|FastAPI|Starlette|vLLM|pydantic|soundfile|libsndfile|pydub)\b"
    ),
    not_reproduced={
        "M3": "the simulator reports no usage statistics to anyone: there is nothing to switch off",
        "K1": "generation length comes from the text (X2); no fault flag runs a request to max_tokens",
        "K3": "the preset loop's busy spin is deliberately not reproduced (X7)",
        "X11": "a note about the openai client library's typed delta, not a server behaviour to drive",
        "L6": "the simulator has no GPUs to count (it accepts and ignores -tp); the chart's refusal of a "
        "tensor-parallel size other than gpuCount is tested in tests/chart/test_chart_parity.py",
    },
    uncited_sections=("Where the simulator",),
)
OMNI = Page(
    path=REPO / "docs" / "server-contract-omni.md",
    test_files=(CONTRACT_DIR / "test_contract_omni.py",),
    tested_sections=("Start-up", "Endpoints", "Speech request", "Speech responses", "Errors", "Metrics"),
    fault_sections=("Where the simulator",),
    # M/I + path (vLLM-Omni at the pinned commit or a stored version), or a GitHub issue.
    citation=re.compile(r"(^|[\s,(])[MI] `?[\w./-]+|issue #\d+"),
    not_reproduced={
        "OS5": "the container image and its ENTRYPOINT: nothing for a simulator process to reproduce",
        "OS9": "which processor files the model directory needs is UNCONFIRMED, so they are not checked",
        "OS12": "the voice-clone encoder is not loaded (no network, no weights); only logged",
        "OS13": "a transformers version requirement of the real image, nothing a simulator can show",
        "OP5": "with one chunk per response the last-chunk rule cannot be told apart",
        "XO3": "timing is a calibration choice; the engine's timing model has its own tests and bench",
        "XO10": "which vllm:* families exist at vLLM 0.25 is UNCONFIRMED; the emulated set is checked by OM1",
        "XO11": "flag precedence over the deploy YAML is UNCONFIRMED upstream; OS3/OS14 tests cover ours",
    },
    uncited_sections=("What differs", "Where the simulator"),
)
PAGES = {"boson": BOSON, "omni": OMNI}
ROW_ID = re.compile(r"^[A-Z]{1,2}\d+$|^O[A-Z]\d+$|^XO\d+$")


def contract_rows(page: Page) -> dict[str, tuple[str, list[str]]]:
    """Row ID -> (section title, the row's cells), from every table of the page."""
    rows: dict[str, tuple[str, list[str]]] = {}
    section = ""
    for line in page.path.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].split(":")[0].strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if ROW_ID.match(cells[0]):
            assert cells[0] not in rows, f"row {cells[0]} appears twice"
            rows[cells[0]] = (section, cells)
    return rows


def declared_rows(path: Path) -> dict[str, list[str]]:
    """Row ID -> the tests in ``path`` that declare it, from ``pytest.mark.contract(...)`` calls."""
    if not path.exists():
        return {}
    tree = ast.parse(path.read_text(), str(path))
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            owner = f"{path.name}::{node.name}"
            calls = [d for d in node.decorator_list if isinstance(d, ast.Call)]
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            owner = f"{path.name} (module)"
            calls = [n for n in ast.walk(node.value) if isinstance(n, ast.Call)]
        else:
            continue
        for call in calls:
            if isinstance(call.func, ast.Attribute) and call.func.attr == "contract":
                for arg in call.args:
                    assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), (
                        f"{owner}: contract() takes row IDs as string literals"
                    )
                    found.setdefault(arg.value, []).append(owner)
    return found


def all_declared(page: Page) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for path in page.test_files:
        for row, owners in declared_rows(path).items():
            merged.setdefault(row, []).extend(owners)
    return merged


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_contract_has_its_sections(name: str) -> None:
    page = PAGES[name]
    sections = {section for section, _ in contract_rows(page).values()}
    for wanted in page.tested_sections:
        assert any(s.startswith(wanted) for s in sections), (wanted, sections)
    assert len(contract_rows(page)) > 30


def _all_rows() -> list[tuple[str, str]]:
    return [(name, row) for name, page in sorted(PAGES.items()) for row in sorted(contract_rows(page))]


@pytest.mark.parametrize(("name", "row"), _all_rows())
def test_every_row_cites_its_source(name: str, row: str) -> None:
    page = PAGES[name]
    section, cells = contract_rows(page)[row]
    # The last cell is the source: a `|` in a code span (`<|eot_id|>`) splits cells in the middle.
    source = cells[-1]
    assert len(cells) >= 3 and cells[1], f"{row}: no behaviour"
    if section.startswith(page.uncited_sections):
        assert len(source) >= 2, f"{row}: a difference needs its reason or the rows it sums up"
    else:
        assert page.citation.search(source), f"{row}: no citation in {source!r}"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_row_of_the_tested_sections_has_a_test(name: str) -> None:
    page = PAGES[name]
    declared = all_declared(page)
    missing = [
        row
        for row, (section, _) in contract_rows(page).items()
        if section.startswith(page.tested_sections) and row not in declared and row not in page.not_reproduced
    ]
    assert not missing, f"rows with no test declaring them (@pytest.mark.contract): {missing}"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_known_faults_and_differences_are_tested_or_excused(name: str) -> None:
    page = PAGES[name]
    declared = all_declared(page)
    open_rows = [
        row
        for row, (section, _) in contract_rows(page).items()
        if section.startswith(page.fault_sections) and row not in declared and row not in page.not_reproduced
    ]
    assert not open_rows, f"fault/difference rows neither tested nor excused: {open_rows}"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_declarations_name_real_rows_and_excuses_are_current(name: str) -> None:
    page = PAGES[name]
    declared = all_declared(page)
    rows = contract_rows(page)
    unknown = {row: owners for row, owners in declared.items() if row not in rows}
    assert not unknown, f"tests declare rows the page does not have: {unknown}"
    stale = [row for row in page.not_reproduced if row in declared or row not in rows]
    assert not stale, f"not_reproduced lists rows that are tested or gone: {stale}"
    assert all(len(reason) > 20 for reason in page.not_reproduced.values())


def test_the_marker_is_registered() -> None:
    import tomllib

    markers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("contract") for m in markers)
