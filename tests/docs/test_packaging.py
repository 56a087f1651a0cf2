"""Each component's extra holds what its package imports, and the three Dockerfiles install the same way.

An image installs ``'/src[<extra>]'`` from a build context with only its component's package, so an
import whose distribution is not in that extra (directly or through one of its dependencies) fails
in the image, not here: these tests find it without Docker.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# component -> (its package directory, its extra, its Dockerfile)
COMPONENTS = {
    "operator": (REPO / "operator" / "higgs_operator", "operator", REPO / "operator" / "Dockerfile"),
    "simulator": (REPO / "simulator" / "higgs_sim", "sim", REPO / "simulator" / "Dockerfile"),
    "loadtests": (REPO / "loadtests" / "higgs_load", "load", REPO / "loadtests" / "Dockerfile"),
}
OWN_PACKAGES = {"higgs_operator", "higgs_sim", "higgs_load"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower().replace("_", "-")


@cache
def _closure(dist: str) -> frozenset[str]:
    """``dist`` and every distribution it requires, transitively (as installed in this venv)."""
    seen = {dist}
    todo = [dist]
    while todo:
        for req in metadata.requires(todo.pop()) or []:
            parsed = Requirement(req)
            if parsed.marker and not parsed.marker.evaluate({"extra": ""}):
                continue
            name = _name(req)
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return frozenset(seen)


def _third_party_imports(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in OWN_PACKAGES}


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_extra_provides_every_import(component: str) -> None:
    package, extra, _ = COMPONENTS[component]
    declared = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"][extra]]
    provided = set().union(*(_closure(_name(r)) for r in declared))
    owners = metadata.packages_distributions()
    missing = {
        name: owners.get(name, ["?"])
        for name in _third_party_imports(package)
        if not {d.lower().replace("_", "-") for d in owners.get(name, [])} & provided
    }
    assert not missing, (
        f"{package.relative_to(REPO)} imports {missing}, which the [{extra}] extra does not install"
    )


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_dockerfile_installs_its_extra_like_the_others(component: str) -> None:
    package, extra, dockerfile = COMPONENTS[component]
    text = dockerfile.read_text()
    assert re.search(rf"pip install --no-cache-dir '/src\[{extra}\]'", text), (
        f"{dockerfile} installs [{extra}]"
    )
    assert "COPY pyproject.toml README.md /src/" in text
    assert f"/src/{package.relative_to(REPO)}" in text or f"COPY {package.parent.name} /src/" in text
    # No second, hand-written list of pins: the extra is the only one.
    assert not re.search(r"==\d", text.replace("HELM_VERSION=", "")), f"{dockerfile} pins a package by hand"


def test_dev_extra_is_all_components_plus_tools() -> None:
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert "higgs-k8s[operator,sim,load]" in dev
