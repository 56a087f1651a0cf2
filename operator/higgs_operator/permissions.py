"""Every API permission the operator uses, in one table: charts/higgs-operator's ClusterRole must match it
exactly (tests/operator/test_chart.py compares the two)."""

from __future__ import annotations

from .constants import GROUP, PLURAL
from .render import APPLIABLE_KINDS

# watch events; server-side apply (patch, and create when the object does not exist yet); prune.
CHILD_VERBS = ("create", "delete", "list", "patch", "watch")


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def required_rules() -> dict[tuple[str, str], frozenset[str]]:
    """(apiGroup, resource) -> verbs."""
    rules: dict[tuple[str, str], frozenset[str]] = {
        (GROUP, PLURAL): frozenset({"list", "watch", "patch"}),  # kopf watch + its annotations
        (GROUP, f"{PLURAL}/status"): frozenset({"patch"}),  # status writes
        (GROUP, f"{PLURAL}/finalizers"): frozenset({"update"}),  # blockOwnerDeletion on children
        ("apps", "deployments/scale"): frozenset({"patch"}),  # the autoscaler's write path
        ("", "pods"): frozenset({"list", "watch"}),  # readiness, metrics targets
        ("", "events"): frozenset({"create"}),  # kopf posts events
        ("kopf.dev", "clusterkopfpeerings"): frozenset({"get", "list", "watch", "patch"}),  # peering
        ("kopf.dev", "kopfpeerings"): frozenset({"get", "list", "watch", "patch"}),
        ("apiextensions.k8s.io", "customresourcedefinitions"): frozenset({"list", "watch"}),  # kopf scanning
        ("", "namespaces"): frozenset({"list", "watch"}),  # kopf namespace observation
    }
    for (api_version, _kind), plural in APPLIABLE_KINDS.items():
        rules[(_group(api_version), plural)] = frozenset(CHILD_VERBS)
    # Token Secrets are read one by one (get) besides being applied (mirrors) and watched.
    rules[("", "secrets")] = frozenset({*CHILD_VERBS, "get"})
    return rules
