"""Every render of the three charts against a real API server with the real third-party CRDs:
`kubectl apply --dry-run=server --validate=strict`, nothing left out. The API server checks what
kubernetes-validate cannot: admission, enums, defaulting, and the custom resources (HTTPRoute,
ServiceMonitor, PrometheusRule, ScaledObject, kopf's peerings) against their CRDs' schemas, unknown
fields refused.

Gateway API first at v1.0.0, the oldest release the chart supports, where an HTTPRoute with
`timeouts` (standard only since v1.2) must be refused; then at the current release, where it must be
accepted. Prometheus Operator's and KEDA's CRDs at their current releases. The CRDs are upstream's
files from hack/install-crds.sh ($HIGGS_CACHE/crds, `make tools`), applied server-side.

They stay installed afterwards, at the current releases: that is what a real cluster runs, and other
tests may create these kinds. In e2e mode (--kubeconfig) the test skips, saying why, where it must not
install them: a user who may not create CRDs, or CRDs of these names that someone else installed (it
would replace them with other versions).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import chart as ck
from tests.support import crds, kubetest
from tests.support.chart import EXAMPLE_FILES, MATRIX
from tests.support.plugin import e2e

pytestmark = pytest.mark.cluster

PROJECT_MANAGERS = "higgs-k8s"  # the field managers of this project's tests: CRDs they applied are ours
SCHEMA_WAIT_S = 30  # the API server serves a changed CRD schema a moment after the update
TIMEOUTS_CASE = "everything-on+httpRoute.timeouts"
GATEWAY_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Render:
    chart: str
    case: str
    release: str  # one per case, so that every case's objects can go to the API server in one call
    objects: list[dict[str, Any]]


def timeouts_values() -> dict[str, Any]:
    values = copy.deepcopy(MATRIX["everything-on"])
    values["httpRoute"]["timeouts"] = {"enabled": True}
    return values


def helm_cases(namespace: str) -> list[tuple[Path, str, str, list[str]]]:
    """(chart, case, release prefix, helm arguments): the render matrix, the examples, the route with
    timeouts, and the other two charts' cases."""
    audio = [*sorted(MATRIX.items()), (TIMEOUTS_CASE, timeouts_values())]
    out = [(ck.CHART, name, "", ck.value_args(values)) for name, values in audio]
    out += [(ck.CHART, f.name, "", ck.value_args(files=[f])) for f in EXAMPLE_FILES]
    out += [(ck.OPERATOR_CHART, case, "op-", args) for case, args in ck.operator_cases(namespace).items()]
    for case, sets in ck.loadtest_cases(serving=namespace).items():
        args = [arg for s in ["host=http://tts-higgs-audio:8000", *sets] for arg in ("--set", s)]
        out.append((ck.LOADTEST_CHART, case, "lt-", args))
    return out


def renders(namespace: str) -> list[Render]:
    def render(job: tuple[Path, str, str, list[str]]) -> Render:
        chart, case, prefix, args = job
        release = (prefix + re.sub(r"[^a-z0-9]+", "-", case.lower().removesuffix(".yaml")))[:40].strip("-")
        return Render(
            chart.name, case, release, ck.render_chart(chart, *args, release=release, namespace=namespace)
        )

    with ThreadPoolExecutor(max_workers=4) as pool:  # helm runs as a subprocess: renders overlap
        out = list(pool.map(render, helm_cases(namespace)))
    releases = [r.release for r in out]
    assert len(set(releases)) == len(releases), f"two cases share a release name: {releases}"
    return out


def has_group(render: Render, group: str) -> bool:
    return any(o["apiVersion"].startswith(group + "/") for o in render.objects)


def dry_run(cluster: kubetest.Cluster, namespace: str, objects: list[dict[str, Any]]):
    return cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=yaml.safe_dump_all(objects), check=False, timeout=120,
    )  # fmt: skip


def assert_accepted(cluster: kubetest.Cluster, namespace: str, cases: list[Render], crd_set: str) -> None:
    """Every object of every case accepted, in one kubectl call (each case its own release, so that
    their objects' names differ)."""
    objects = [o for r in cases for o in r.objects]
    # Pods are admitted only with an existing ServiceAccount: create them for real (throwaway namespace).
    accounts = [o for o in objects if o["kind"] == "ServiceAccount"]
    if accounts:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(accounts))
    proc = dry_run(cluster, namespace, objects)
    if proc.returncode != 0:  # kubectl's errors do not always name the object: find the cases, one by one
        refused = [(r, dry_run(cluster, namespace, r.objects)) for r in cases]
        raise AssertionError(
            "\n".join(
                f"{r.chart} {r.case}: refused with {crd_set}:\n{p.stderr}" for r, p in refused if p.returncode
            )
            or f"refused with {crd_set}, though each case alone passes:\n{proc.stderr}"
        )
    assert proc.stdout.count("(server dry run)") == len(objects), proc.stdout


def route_verdict(cluster: kubetest.Cluster, namespace: str, accepted: bool, crd_set: str) -> str:
    """Wait until the API server judges the HTTPRoute with timeouts as the installed CRD says (it
    serves a changed schema shortly after the update); kubectl's output. Fails if it never does."""
    route = ck.one(ck.render(timeouts_values(), namespace=namespace), "HTTPRoute")
    assert route["spec"]["rules"][0]["timeouts"], "the probe route must carry timeouts"
    last: list[str] = []

    def judged() -> str:  # kubectl's answer once it is the expected one, else "" (not yet)
        proc = dry_run(cluster, namespace, [route])
        last[:] = [proc.stdout + proc.stderr]
        return last[0] if (proc.returncode == 0) == accepted else ""

    verdict = "accepted" if accepted else "refused"
    return kubetest.wait_for(
        judged,
        SCHEMA_WAIT_S,
        describe=lambda: f"last answer: {last[0] if last else '(none)'}",
        what=f"the HTTPRoute with timeouts to be {verdict} with {crd_set}",
    )


# --- installing the CRDs ------------------------------------------------------------------------------
def skip_unless_installable(cluster: kubetest.Cluster, names: list[str]) -> None:
    """e2e mode: only where this user may create CRDs and no one else installed these."""
    can = cluster.kubectl(
        "auth", "can-i", "create", "customresourcedefinitions.apiextensions.k8s.io", check=False
    )
    if can.stdout.strip() != "yes":
        pytest.skip(
            "the third-party CRDs cannot be installed on this cluster: `kubectl auth can-i create "
            f"customresourcedefinitions` answers {(can.stdout + can.stderr).strip()!r}"
        )
    found = cluster.kubectl(
        "get", "crd", *names, "-o", "json", "--ignore-not-found", "--show-managed-fields", check=False
    )  # fmt: skip
    if found.returncode != 0:
        pytest.skip(f"cannot read the CRDs of this cluster to see who installed them: {found.stderr.strip()}")
    items = json.loads(found.stdout)["items"] if found.stdout.strip() else []
    for item in items:
        managers = {
            m["manager"]
            for m in item["metadata"].get("managedFields", [])
            if m.get("subresource") != "status"
        }
        if others := sorted(m for m in managers if not m.startswith(PROJECT_MANAGERS)):
            pytest.skip(
                f"CRD {item['metadata']['name']} is already installed on this cluster by {others}; "
                "this test would replace it with other versions (Gateway API v1.0.0, then the pinned current "
                "releases): run it on a cluster without them"
            )


@pytest.fixture(scope="module")
def install_crds(cluster: kubetest.Cluster, crd: None, request: pytest.FixtureRequest) -> Callable[..., None]:
    """install(pin, ...): apply those pins' CRDs server-side and wait until they are Established.
    `crd`: the operator chart's own CRDs (HiggsDeployment, kopf's peerings)."""
    if e2e(request.config):
        pins = (*crds.CURRENT, crds.GATEWAY_API_OLDEST)
        skip_unless_installable(
            cluster, sorted({n for p in pins for ns in crds.crd_files(p).values() for n in ns})
        )

    return functools.partial(crds.install, cluster)


# --- the tests -------------------------------------------------------------------------------------------
def test_gateway_api_v1_0_refuses_route_timeouts_and_accepts_every_other_route(
    cluster: kubetest.Cluster, namespace: str, install_crds: Callable[..., None]
) -> None:
    install_crds(crds.GATEWAY_API_OLDEST, *[p for p in crds.CURRENT if p != "gateway-api"])
    v1_0 = f"Gateway API {crds.pinned(crds.GATEWAY_API_OLDEST)}"
    refusal = route_verdict(cluster, namespace, accepted=False, crd_set=v1_0)
    assert 'unknown field "spec.rules[0].timeouts"' in refusal, refusal
    with_routes = [r for r in renders(namespace) if has_group(r, GATEWAY_GROUP)]
    assert {r.case for r in with_routes} >= {"everything-on", TIMEOUTS_CASE}
    assert_accepted(cluster, namespace, [r for r in with_routes if r.case != TIMEOUTS_CASE], v1_0)


def test_every_render_passes_strict_server_side_dry_run(
    cluster: kubetest.Cluster, namespace: str, install_crds: Callable[..., None]
) -> None:
    install_crds(*crds.CURRENT)
    current = ", ".join(f"{pin} {crds.pinned(pin)}" for pin in crds.CURRENT)
    route_verdict(cluster, namespace, accepted=True, crd_set=current)
    cases = renders(namespace)
    kinds = {o["kind"] for r in cases for o in r.objects}
    assert {"HTTPRoute", "ServiceMonitor", "ClusterKopfPeering", "KopfPeering"} <= kinds
    assert_accepted(cluster, namespace, cases, current)
