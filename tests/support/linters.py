"""Manifest linters (kube-score, kubesec, checkov) over rendered charts, and the README tables answering them.

Each tool runs once over one multi-document file of renders (checkov once over a folder of them) and its
output becomes `Finding`s named `Kind/name`, the name without the release's `<release>-` prefix. The chart's
README answers accepted findings in its `## Linter findings` table; `compare` says what is unanswered or stale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TOOLS_BIN = Path(os.environ.get("HIGGS_CACHE", Path.home() / ".cache" / "higgs-k8s")) / "bin"
INSTALL = "bash hack/install-tools.sh linters"
LINTERS = ("kube-score", "kubesec", "checkov")
SECTION = "## Linter findings"
TABLE_HEADER = ("tool", "check", "objects", "answer")
TIMEOUT_S = 180
# Kinds whose pods the linters judge; kubesec scores no Job, so it gets the Job's pod as a Pod.
WORKLOADS = ("Deployment", "Job", "Pod")
KUBESEC_AS_POD = ("Job",)
# checkov, offline: no guideline download from its vendor's API, no update check against PyPI.
CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}


@dataclass(frozen=True)
class Finding:
    tool: str
    check: str
    obj: str  # Kind/name, without the release prefix
    case: str  # the render (its namespace) that showed it
    detail: str


@dataclass(frozen=True)
class Answer:
    tool: str
    check: str
    obj: str
    line: int  # 1-based line of the README row


class LinterError(AssertionError):
    """A linter could not run or gave output this module cannot read."""


def linter_binary(tool: str) -> str | None:
    """The project's copy ($HIGGS_CACHE/bin, hack/install-linters.sh), else one on PATH."""
    own = TOOLS_BIN / tool
    return str(own) if own.exists() else shutil.which(tool)


def object_name(kind: str, name: str, release: str) -> str:
    return f"{kind}/{name.removeprefix(release + '-')}"


def write_renders(objects: Iterable[dict[str, Any]], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))


def _run(cmd: list[str], ok_codes: tuple[int, ...], env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, **(env or {})}
        )
    except subprocess.TimeoutExpired as exc:
        raise LinterError(f"{cmd[0]} ran past {TIMEOUT_S} s: {' '.join(cmd)}") from exc
    if proc.returncode not in ok_codes:
        raise LinterError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def _json(out: str, tool: str) -> Any:
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise LinterError(f"{tool} printed no JSON ({exc}); its output began: {out[:500]!r}") from exc


def _missing(objects: list[dict[str, Any]], reported: set[tuple[str, str, str]], tool: str) -> None:
    # A workload the tool skipped would pass unseen.
    wanted = {
        (o["metadata"]["namespace"], o["kind"], o["metadata"]["name"])
        for o in objects
        if o["kind"] in WORKLOADS
    }
    if wanted - reported:
        raise LinterError(f"{tool} returned no report for {sorted(wanted - reported)}")


def kube_score(binary: str, renders: Path, objects: list[dict[str, Any]], release: str) -> list[Finding]:
    """Every check graded below 10 (critical 1, warning 5, almost OK 7)."""
    # Exit 1: some check is critical.
    report = _json(_run([binary, "score", "--output-format", "json", str(renders)], (0, 1)), "kube-score")
    findings = []
    reported = set()
    for scored in report:
        meta, kind = scored["object_meta"], scored["type_meta"]["kind"]
        reported.add((meta.get("namespace", ""), kind, meta["name"]))
        for check in scored["checks"]:
            if check["skipped"] or check["grade"] >= 10:
                continue
            comments = check.get("comments") or []
            detail = "; ".join(f"{c.get('path') or '-'}: {c.get('summary')}" for c in comments)
            obj = object_name(kind, meta["name"], release)
            findings.append(
                Finding("kube-score", check["check"]["id"], obj, meta.get("namespace", ""), detail)
            )
    _missing(objects, reported, "kube-score")
    return findings


def kubesec_input(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workloads, a Job as the Pod it runs (same name and namespace)."""
    out = []
    for o in objects:
        if o["kind"] in KUBESEC_AS_POD:
            template = o["spec"]["template"]
            meta = {**template.get("metadata", {}), "name": o["metadata"]["name"]}
            meta["namespace"] = o["metadata"]["namespace"]
            out.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
        elif o["kind"] in WORKLOADS:
            out.append(o)
    return out


def kubesec(binary: str, objects: list[dict[str, Any]], workdir: Path, release: str) -> list[Finding]:
    """Critical rules (negative points) and advice (points not earned), for each workload."""
    docs = kubesec_input(objects)
    # The kind each fed object really is (a Job fed as its Pod).
    real_kind = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["kind"]
        for o in objects
        if o["kind"] in WORKLOADS
    }
    renders = workdir / "kubesec.yaml"
    write_renders(docs, renders)
    # Schema validation is kubernetes_validate's job (tests/chart/test_chart_render.py); kubesec would
    # fetch schemas from the network, so it gets one that accepts any object of each kind.
    stubs = workdir / "kubesec-schemas"
    stubs.mkdir(exist_ok=True)
    for kind in {d["kind"].lower() for d in docs}:
        (stubs / f"{kind}.json").write_text('{"type": "object"}')
    location = f"{stubs}/{{{{ .ResourceKind }}}}.json"
    # Exit 2 (--exit-code): some object scored a critical rule.
    out = _run([binary, "scan", "--schema-location", location, str(renders)], (0, 2))
    findings = []
    reported = set()
    for report in _json(out, "kubesec"):
        kind_name, namespace = report["object"].rsplit(".", 1)
        name = kind_name.split("/", 1)[1]
        scoring = report.get("scoring") or {}
        if not report.get("valid") or not scoring:
            raise LinterError(f"kubesec did not score {report['object']}: {report.get('message')}")
        kind = real_kind.get((namespace, name), kind_name.split("/", 1)[0])
        reported.add((namespace, kind, name))
        for severity in ("critical", "advise"):
            for rule in scoring.get(severity) or []:
                detail = f"{severity}: {rule.get('reason', '')}"
                findings.append(
                    Finding("kubesec", rule["id"], object_name(kind, name, release), namespace, detail)
                )
    _missing(objects, reported, "kubesec")
    return findings


def checkov(binary: str, folder: Path) -> dict[str, Any]:
    """One run over every chart's renders (checkov's start-up costs seconds); failed checks only."""
    cmd = [binary, "-d", str(folder), "--framework", "kubernetes", "-o", "json", "--quiet", "--skip-download"]
    # Exit 1: some check failed.
    report = _json(_run(cmd, (0, 1), env=CHECKOV_ENV), "checkov")
    reports = report if isinstance(report, list) else [report]
    kube = [r for r in reports if r.get("check_type") == "kubernetes"]
    if len(kube) != 1:
        raise LinterError(f"checkov gave no kubernetes report: {[r.get('check_type') for r in reports]}")
    summary = kube[0].get("summary", {})
    if summary.get("parsing_errors"):
        raise LinterError(f"checkov could not parse some renders: {summary}")
    return dict(kube[0])


def checkov_findings(
    report: dict[str, Any], file_name: str, objects: list[dict[str, Any]], release: str
) -> list[Finding]:
    """Failed checks of one render file. A resource `Pod.<ns>.<name>.<labels>` is a workload's pod template."""
    by_id = {f"{o['kind']}.{o['metadata']['namespace']}.{o['metadata']['name']}": o for o in objects}
    templates = {
        f"Pod.{o['metadata']['namespace']}.{o['metadata']['name']}.": o
        for o in objects
        if o["kind"] in WORKLOADS and o["kind"] != "Pod"
    }
    findings = []
    for failed in report.get("results", {}).get("failed_checks", []):
        if Path(failed["file_path"]).name != file_name:
            continue
        resource = failed["resource"]
        owner = by_id.get(resource) or next((o for p, o in templates.items() if resource.startswith(p)), None)
        if owner is None:
            raise LinterError(f"checkov named {resource!r}, which is no rendered object of {file_name}")
        obj = object_name(owner["kind"], owner["metadata"]["name"], release)
        keys = ", ".join(failed.get("check_result", {}).get("evaluated_keys") or [])
        detail = f"{failed['check_name']}" + (f" ({keys})" if keys else "")
        findings.append(Finding("checkov", failed["check_id"], obj, owner["metadata"]["namespace"], detail))
    return findings


# --- the README's answers ----------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    # The answer is the last cell and may itself hold a `|`.
    return [c.strip() for c in line.strip().strip("|").split("|", len(TABLE_HEADER) - 1)]


def parse_answers(readme: Path) -> list[Answer]:
    """Rows of the `## Linter findings` table: | tool | check | objects | answer |; checks and objects
    comma-separated (the row answers each check on each object)."""
    lines = readme.read_text().splitlines()
    try:
        start = lines.index(SECTION)
    except ValueError:
        raise LinterError(
            f"{readme} has no `{SECTION}` section (a table | tool | check | objects | answer |)"
        ) from None
    answers: list[Answer] = []
    header_seen = False
    for number, line in enumerate(lines[start + 1 :], start + 2):
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if tuple(c.lower() for c in cells) == TABLE_HEADER:
            header_seen = True
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        where = f"{readme.name}:{number}"
        if not header_seen or len(cells) != len(TABLE_HEADER):
            raise LinterError(f"{where}: expected a row | tool | check | objects | answer |, got {line!r}")
        tool, check, objects, answer = (c.replace("`", "") for c in cells)
        if tool not in LINTERS:
            raise LinterError(f"{where}: unknown tool {tool!r} (expected one of {', '.join(LINTERS)})")
        if len(answer) < 20:
            raise LinterError(f"{where}: the answer to {tool} {check} is missing or too short to say why")
        for obj in (o.strip() for o in objects.split(",")):
            if "/" not in obj:
                raise LinterError(f"{where}: object {obj!r} is not Kind/name")
            answers += [Answer(tool, c.strip(), obj, number) for c in check.split(",")]
    if not header_seen:
        raise LinterError(f"{readme}: `{SECTION}` has no table | tool | check | objects | answer |")
    seen: dict[tuple[str, str, str], int] = {}
    for a in answers:
        key = (a.tool, a.check, a.obj)
        if key in seen:
            raise LinterError(
                f"{readme.name}:{a.line}: {' '.join(key)} is answered twice (also line {seen[key]})"
            )
        seen[key] = a.line
    return answers


def compare(findings: list[Finding], answers: list[Answer], tool: str, readme: str) -> list[str]:
    """Problems: findings of `tool` no row answers (with the row to add), rows no finding needs (stale)."""
    answers = [a for a in answers if a.tool == tool]
    answered = {(a.check, a.obj) for a in answers}
    open_: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        if (f.check, f.obj) not in answered:
            open_.setdefault((f.check, f.obj), []).append(f)
    problems = []
    for (check, obj), found in sorted(open_.items()):
        cases = ", ".join(sorted({f.case for f in found}))
        details = "; ".join(sorted({f.detail for f in found if f.detail}))
        problems.append(
            f"{tool} {check} on {obj} (renders: {cases}): {details}\n"
            f"  fix the template, or answer it in {readme} under `{SECTION}`:\n"
            f"  | {tool} | {check} | `{obj}` | <why it is right for this chart> |"
        )
    current = {(f.check, f.obj) for f in findings}
    for a in answers:
        if (a.check, a.obj) not in current:
            problems.append(
                f"{readme}:{a.line} answers {tool} {a.check} on {a.obj}, which no render shows any more: "
                "remove it from the row (stale answer)"
            )
    return problems
