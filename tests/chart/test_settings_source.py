"""One source for every setting: charts/higgs-audio/values.schema.json.

values.yaml (defaults and comments) and the HiggsDeployment CRD's pass-through fields are generated
from the schema by hack/gen_settings.py (`make docs`); these tests fail when a generated file is stale
or edited by hand, and check the copies against the schema field by field: names, types,
descriptions, defaults, enums and limits, and the operator's pass-through table
(operator/higgs_operator/values.py) against both.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from higgs_operator.values import PASS_THROUGH

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "higgs-audio"
CRD = REPO / "charts" / "higgs-operator" / "crds" / "higgsdeployments.audio.higgs.dev.yaml"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SPEC = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
    "spec"
]
OVERLAY = yaml.safe_load((REPO / "hack" / "crd-overlay.yaml").read_text())

# Spec fields the operator interprets itself (not chart values).
OPERATOR_FIELDS = {"replicas", "autoscaling", "hfToken", "apiKey", "degradedAfterSeconds"}
# Chart values the operator sets from the resource's identity and its own fields.
OPERATOR_OWNED = {
    "fullnameOverride",
    "replicaCount",
    "autoscaling",
    "tests",
    "hfToken",
    "apiKey",
    "checksums",
}
# Chart values a HiggsDeployment does not expose (edge and monitoring objects the operator does not
# apply; the pods' ServiceAccount keeps the chart's defaults). A new chart value fails
# test_every_chart_value_is_passed_owned_or_listed until it is mapped or added here.
NOT_EXPOSED = {"httpRoute", "ingress", "serviceMonitor", "serviceAccount", "nameOverride"}
# Release-wide metadata and free-form manifests: the operator owns the metadata of what it applies (pods
# take podLabels/podAnnotations) and applies only the kinds it knows, never arbitrary objects.
NOT_EXPOSED |= {"commonLabels", "commonAnnotations", "extraObjects"}
# Monitoring objects around the release (a Grafana dashboard ConfigMap, a PrometheusRule): the platform's,
# installed once with Helm, not per HiggsDeployment.
NOT_EXPOSED |= {"grafanaDashboard", "prometheusRule"}


def _gen_settings() -> Any:
    spec = importlib.util.spec_from_file_location("gen_settings", REPO / "hack" / "gen_settings.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk(node: dict[str, Any], path: str = ""):
    """(path, node) of every schema property, depth first; `[]` marks array items."""
    for name, child in node.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        yield here, child
        yield from _walk(child, here)
        items = child.get("items")
        if isinstance(items, dict):
            yield f"{here}[]", items
            yield from _walk(items, f"{here}[]")


def _is_branch(node: dict[str, Any]) -> bool:
    return node.get("type") == "object" and "properties" in node


def _types(node: dict[str, Any]) -> set[str]:
    if "anyOf" in node:
        return {t for b in node["anyOf"] for t in _types(b)}
    kind = node.get("type", [])
    return set(kind) if isinstance(kind, list) else {kind}


# --- generated files ---------------------------------------------------------------------------


def test_generated_settings_are_current() -> None:
    """values.yaml and the CRD's pass-through block equal what hack/gen_settings.py writes."""
    gen = _gen_settings()
    for path, text in gen.wanted().items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO)} differs from hack/gen_settings.py's output: edit values.schema.json "
            "(or hack/crd-overlay.yaml), then run `make docs`"
        )


# --- the schema is complete --------------------------------------------------------------------


def test_every_schema_property_has_a_description() -> None:
    missing = [p for p, node in _walk(SCHEMA) if "[]" not in p and not node.get("description")]
    assert not missing, f"values.schema.json properties without a description: {missing}"


def test_every_schema_leaf_has_a_default_and_values_yaml_holds_them() -> None:
    leaves = [p for p, node in _walk(SCHEMA) if "[]" not in p and p != "global" and not _is_branch(node)]
    without = [p for p in leaves if "default" not in _schema_node(p)]
    assert not without, f"values.schema.json leaves without a `default`: {without}"
    assert _gen_settings().schema_defaults(SCHEMA) == VALUES
    branch_defaults = [p for p, node in _walk(SCHEMA) if _is_branch(node) and "default" in node]
    assert not branch_defaults, f"an object's default is its children's, not its own: {branch_defaults}"


def test_values_yaml_comments_are_the_schema_descriptions() -> None:
    """Each value's `# --` comment in values.yaml is its schema description (wrapped)."""
    text = (CHART / "values.yaml").read_text()
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    seen = 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# -- "):
            comment = [stripped[5:]]
            continue
        if stripped.startswith("#    ") and comment:
            comment.append(stripped[5:])
            continue
        match = re.match(r"( *)([A-Za-z][\w.-]*):", line)
        if not match or stripped.startswith("- "):
            comment = []
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        path = ".".join(k for _, k in stack)
        node = _schema_node(path)
        if node is not None and comment:
            assert " ".join(comment) == " ".join(node["description"].split()), path
            seen += 1
        elif node is not None:
            pytest.fail(f"values.yaml: {path} has no `# --` comment")
        comment = []
    assert seen > 100


def test_schema_defaults_validate_against_the_schema() -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def _schema_node(path: str) -> dict[str, Any] | None:
    node: Any = SCHEMA
    for part in path.split("."):
        name, items = (part[:-2], True) if part.endswith("[]") else (part, False)
        node = (node.get("properties") or {}).get(name)
        if node is None:
            return None
        if items:
            node = node.get("items")
    return node


# --- the CRD against the schema ----------------------------------------------------------------


def test_crd_spec_fields_are_the_pass_through_and_the_operators_own() -> None:
    fields = set(SPEC["properties"])
    assert fields - OPERATOR_FIELDS == set(PASS_THROUGH)
    assert not OPERATOR_FIELDS & set(PASS_THROUGH)


def test_every_pass_through_entry_names_a_chart_value() -> None:
    unknown = [key for key in PASS_THROUGH if key not in SCHEMA["properties"]]
    assert not unknown, f"PASS_THROUGH names values the chart does not have: {unknown}"
    assert len(set(PASS_THROUGH)) == len(PASS_THROUGH)


def test_every_chart_value_is_passed_owned_or_listed() -> None:
    chart_keys = set(SCHEMA["properties"]) - {"global"}
    assert chart_keys - set(PASS_THROUGH) - OPERATOR_OWNED == NOT_EXPOSED
    assert not set(PASS_THROUGH) & OPERATOR_OWNED


def _crd_pairs() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, chart schema node, CRD node) of every pass-through field and its descendants."""
    out = []

    def walk(path: str, chart: dict[str, Any], crd: dict[str, Any]) -> None:
        out.append((path, chart, crd))
        for name, sub in (crd.get("properties") or {}).items():
            chart_sub = (chart.get("properties") or {}).get(name)
            assert chart_sub is not None, f"CRD field spec.{path}.{name} is not a chart value"
            walk(f"{path}.{name}", chart_sub, sub)
        if isinstance(crd.get("items"), dict):
            walk(f"{path}[]", chart.get("items") or {}, crd["items"])
        if isinstance(crd.get("additionalProperties"), dict):
            walk(f"{path}.*", chart.get("additionalProperties") or {}, crd["additionalProperties"])

    for key in PASS_THROUGH:
        walk(key, SCHEMA["properties"][key], SPEC["properties"][key])
    return out


PAIRS = _crd_pairs()


@pytest.mark.parametrize(("path", "chart", "crd"), PAIRS, ids=[p for p, _, _ in PAIRS])
def test_crd_field_matches_the_chart_schema(path: str, chart: dict, crd: dict) -> None:
    """Type, description, default, enum and limits of each mapped CRD field are the chart's."""
    kinds = _types(chart) - {"null"}
    if "type" in crd:
        assert crd["type"] in kinds, f"spec.{path}: CRD type {crd['type']} is not one of the chart's {kinds}"
    elif crd.get("x-kubernetes-int-or-string"):
        assert kinds == {"integer", "string"}, f"spec.{path}: int-or-string, chart takes {kinds}"
    else:
        assert crd.get("x-kubernetes-preserve-unknown-fields"), f"spec.{path}: no type"
    assert bool(crd.get("nullable")) == ("null" in _types(chart)), f"spec.{path}: nullable"
    if chart.get("description"):
        assert crd.get("description") == " ".join(chart["description"].split()), f"spec.{path}: description"
    if "default" in crd and crd["default"] != {}:
        assert crd["default"] == chart.get("default"), f"spec.{path}: CRD default differs from the chart's"
    dropped = (OVERLAY.get("fields") or {}).get(path, {}).get("x-drop", [])
    if "type" in crd:
        branch = next((b for b in chart.get("anyOf", []) if crd["type"] in _types(b)), chart)
        for key in ("enum", "minimum", "maximum", "minLength", "pattern", "minItems"):
            if key in dropped:
                continue
            want = branch.get(key)
            if key == "minimum" and "exclusiveMinimum" in branch:  # draft-07 number -> OpenAPI v3.0 flag
                want = branch["exclusiveMinimum"]
                assert crd.get("exclusiveMinimum") is True, f"spec.{path}: exclusiveMinimum"
            assert crd.get(key) == want, f"spec.{path}: {key} {crd.get(key)} != chart's {want}"


def test_crd_defaults_are_the_declared_ones() -> None:
    """The CRD stores exactly the defaults hack/crd-overlay.yaml lists (each equal to the chart's)."""
    stored = {p for p, _, crd in PAIRS if "default" in crd and crd["default"] != {}}
    assert stored == set(OVERLAY["defaults"])
    assert "default" not in SPEC["properties"]["serverGeneration"]  # absent means fork (leftovers)


# --- templates ---------------------------------------------------------------------------------


def test_hf_token_default_secret_helper_is_the_schema_default() -> None:
    """_helpers.tpl tells a default existingSecret from a chosen one (hfToken.value conflicts)."""
    tpl = (CHART / "templates" / "_helpers.tpl").read_text()
    match = re.search(r'define "higgs-audio.hfTokenDefaultSecret" -}}\n(.*?)\n\{\{- end', tpl)
    assert match, "higgs-audio.hfTokenDefaultSecret is not defined"
    default = SCHEMA["properties"]["hfToken"]["properties"]["existingSecret"]["default"]
    assert match.group(1).strip() == default == VALUES["hfToken"]["existingSecret"]
    assert '"hf-token"' not in tpl  # no other copy of the literal
