"""kube-score, kubesec and checkov over the three charts' renders: every finding is fixed in the chart or
answered in its README's `## Linter findings` table, and every answer still matches a finding.

Renders per chart: the defaults, each of its examples, and the optional parts switched on; each render in
its own namespace (so linters that match objects, e.g. a NetworkPolicy to its pods, keep them apart), all
in one file, each tool run once per chart (checkov once over all three). kube-linter, issue #14's third
tool, is not served by the Go module proxy (hack/install-linters.sh); kubesec takes its place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import EXAMPLE_FILES, EXAMPLES, K8S_VERSION, MATRIX, REPO_ROOT, run_helm, value_args
from tests.support.linters import (
    INSTALL,
    LINTERS,
    SECTION,
    WORKLOADS,
    Answer,
    Finding,
    checkov,
    checkov_findings,
    compare,
    kube_score,
    kubesec,
    linter_binary,
    parse_answers,
    write_renders,
)

LOADTEST_HOST = ["--set", "host=http://higgs-audio.default.svc:8000"]
# chart -> (release, {render name: helm value arguments})
CHARTS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "higgs-audio": (
        "tts",
        {
            "defaults": [],
            **{f.stem: ["-f", str(f)] for f in EXAMPLE_FILES},
            "everything-on": value_args(MATRIX["everything-on"]),
        },
    ),
    "higgs-operator": (
        "op",
        {
            "defaults": [],
            "operator-values-local": ["-f", str(EXAMPLES / "operator-values-local.yaml")],
            "everything-on": ["--set", "watchNamespaces={a,b}", "--set", "serviceMonitor.enabled=true"],
        },
    ),
    "higgs-loadtest": (
        "lt",
        {
            "defaults": LOADTEST_HOST,
            "everything-on": [
                *LOADTEST_HOST,
                *("--set", "persistence.enabled=true", "--set", "workers=3"),
                *("--set", "higgsDeployment=serving/hd"),
            ],
        },
    ),
}
SHORT = {"higgs-audio": "audio", "higgs-operator": "operator", "higgs-loadtest": "loadtest"}


def _render(chart: str) -> list[dict[str, Any]]:
    release, cases = CHARTS[chart]
    objects = []
    for case, args in cases.items():
        namespace = f"{SHORT[chart]}-{case}"
        proc = run_helm(
            "template",
            release,
            str(REPO_ROOT / "charts" / chart),
            "-n",
            namespace,
            "--kube-version",
            K8S_VERSION,
            *args,
        )
        assert proc.returncode == 0, f"helm template {chart} ({case}) failed:\n{proc.stderr}"
        for doc in yaml.safe_load_all(proc.stdout):
            if doc:
                # As `kubectl apply -n` would: objects without a namespace land in the render's.
                doc["metadata"].setdefault("namespace", namespace)
                objects.append(doc)
    return objects


Renders = tuple[Path, dict[str, list[dict[str, Any]]]]


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> Renders:
    folder = tmp_path_factory.mktemp("renders")
    objects = {chart: _render(chart) for chart in CHARTS}
    for chart, objs in objects.items():
        write_renders(objs, folder / f"{chart}.yaml")
    return folder, objects


def _binary(tool: str) -> str:
    binary = linter_binary(tool)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; `make tools` installs it ({INSTALL})")
        pytest.skip(f"{tool} is not installed: run `{INSTALL}` (under CI a missing linter fails)")
    return binary


@pytest.fixture(scope="module")
def checkov_report(renders: Renders) -> dict[str, Any]:
    folder, objects = renders
    report = checkov(_binary("checkov"), folder)
    workloads = sum(o["kind"] in WORKLOADS for objs in objects.values() for o in objs)
    scanned = report["summary"]["resource_count"]
    assert scanned >= workloads, f"checkov scanned {scanned} resources, fewer than the {workloads} workloads"
    return report


def _findings(tool: str, chart: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[Finding]:
    binary = _binary(tool)  # before rendering: a missing linter skips at once
    folder, objects = request.getfixturevalue("renders")
    release = CHARTS[chart][0]
    if tool == "kube-score":
        return kube_score(binary, folder / f"{chart}.yaml", objects[chart], release)
    if tool == "kubesec":
        return kubesec(binary, objects[chart], tmp_path, release)
    report = request.getfixturevalue("checkov_report")
    return checkov_findings(report, f"{chart}.yaml", objects[chart], release)


@pytest.mark.parametrize("tool", LINTERS)
@pytest.mark.parametrize("chart", list(CHARTS))
def test_every_finding_is_fixed_or_answered(
    chart: str, tool: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    readme = REPO_ROOT / "charts" / chart / "README.md"
    answers = parse_answers(readme)
    findings = _findings(tool, chart, request, tmp_path)
    problems = compare(findings, answers, tool, f"charts/{chart}/README.md")
    if problems:
        pytest.fail(
            f"{len(problems)} linter finding(s) to fix or answer:\n" + "\n".join(problems), pytrace=False
        )


# --- the matching itself, on made-up findings (no linter needed) -------------------------------------

ROW = "| kube-score | container-resources | `Deployment/higgs-audio`, `Pod/higgs-audio-test-audio` | The GPU server has no CPU limit: throttling stalls streaming. |"


def _readme(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "README.md"
    table = ["| tool | check | objects | answer |", "| --- | --- | --- | --- |", *rows]
    path.write_text("\n".join(["# Chart", "", SECTION, "", *table, "", "## Values", "| a | b |"]) + "\n")
    return path


def test_rows_parse_into_one_answer_per_check_and_object(tmp_path: Path) -> None:
    answers = parse_answers(
        _readme(tmp_path, ROW, "| kubesec | RunAsUser, RunAsGroup | `Pod/p` | " + "why " * 6 + "|")
    )
    assert answers == [
        Answer("kube-score", "container-resources", "Deployment/higgs-audio", 7),
        Answer("kube-score", "container-resources", "Pod/higgs-audio-test-audio", 7),
        Answer("kubesec", "RunAsUser", "Pod/p", 8),
        Answer("kubesec", "RunAsGroup", "Pod/p", 8),
    ]


def test_unanswered_finding_names_tool_check_object_and_the_row_to_add(tmp_path: Path) -> None:
    found = [
        Finding(
            "kube-score", "container-resources", "Deployment/higgs-audio", "audio-defaults", "server: CPU"
        ),
        Finding(
            "kube-score", "pod-networkpolicy", "Job/higgs-loadtest-master", "loadtest-defaults", "no policy"
        ),
    ]
    problems = compare(found, parse_answers(_readme(tmp_path, ROW)), "kube-score", "charts/x/README.md")
    assert len(problems) == 2, problems
    assert "pod-networkpolicy on Job/higgs-loadtest-master (renders: loadtest-defaults)" in problems[0]
    assert "| kube-score | pod-networkpolicy | `Job/higgs-loadtest-master` |" in problems[0]
    # The second object of the row is answered but no longer found: stale.
    assert "README.md:7 answers kube-score container-resources on Pod/higgs-audio-test-audio" in problems[1]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (
            "| kube-linter | x | `Pod/p` | a long enough answer to pass the check |",
            "unknown tool 'kube-linter'",
        ),
        ("| checkov | CKV_K8S_8 | `Pod/p` | short |", "missing or too short"),
        (
            "| checkov | CKV_K8S_8 | `p` | a long enough answer to pass the check |",
            "object 'p' is not Kind/name",
        ),
        (ROW + "\n" + ROW, "answered twice"),
    ],
)
def test_malformed_rows_are_refused_naming_the_line(tmp_path: Path, row: str, error: str) -> None:
    with pytest.raises(AssertionError, match=error):
        parse_answers(_readme(tmp_path, row))


def test_readme_without_the_section_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Chart\n")
    with pytest.raises(AssertionError, match="no `## Linter findings` section"):
        parse_answers(tmp_path / "README.md")
