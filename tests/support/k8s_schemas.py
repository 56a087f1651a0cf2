"""Rendered objects against kubernetes-validate's strict schemas, for several Kubernetes versions.

The same schemas and validator class as `kubernetes_validate.validate(obj, version, strict=True)`,
each loaded once: that function re-reads a 1.5 MB definitions file on every call (about 13 ms an
object), too slow for every object of three charts' cases times six versions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv
from referencing import Registry, Resource


def _schema_dir(version: str) -> str:
    minor = kv.major_minor(version.removeprefix("v"))
    shipped = [kv.major_minor(v) for v in kv.all_versions()]
    if minor not in shipped:
        raise AssertionError(
            f"kubernetes-validate {kubernetes_validate.__version__} ships no schemas for Kubernetes "
            f"{minor} (it has {shipped[0]} to {shipped[-1]}): upgrade it or change K8S_VERSIONS "
            "in tests/support/chart.py"
        )
    return f"v{minor}.0-local-strict"


@functools.cache
def _registry(schema_dir: str) -> Registry:
    definitions = kv.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", schema_dir)
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    """None when kubernetes-validate has no schema for the kind (a custom resource)."""
    schema_dir = _schema_dir(version)
    # kubernetes-validate's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json", version
        )
    except FileNotFoundError:
        return None
    return jsonschema.validators.Draft202012Validator(schema, registry=_registry(schema_dir))


def api_group(obj: Mapping[str, Any]) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.rpartition("/")[0]


def schema_error(obj: Mapping[str, Any], version: str) -> str | None:
    """Why `obj` is invalid for Kubernetes `version` (strict: unknown fields refused), or None if valid."""
    validator = _validator(version, obj["kind"], obj["apiVersion"])
    if validator is None:
        return f"kubernetes-validate has no schema for {obj['apiVersion']} {obj['kind']}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return None
    path = ".".join(str(p) for p in error.absolute_path) or "(the object)"
    return f"{path}: {error.message}"


def failures(
    chart: str,
    case: str,
    objects: Iterable[Mapping[str, Any]],
    versions: Iterable[str],
    skip_groups: Iterable[str] = (),
) -> list[str]:
    """One line per (object, version) that does not validate, naming chart, case, object and version.
    Objects of `skip_groups` (custom resources, checked against their CRDs elsewhere) are left out."""
    skip = set(skip_groups)
    out = []
    for obj in objects:
        if api_group(obj) in skip:
            continue
        for version in versions:
            if (why := schema_error(obj, version)) is not None:
                where = f"{obj['kind']}/{obj['metadata']['name']}"
                out.append(f"{chart} {case}: {where} is invalid for Kubernetes {version}: {why}")
    return out
