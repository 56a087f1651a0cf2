"""The serving chart's NetworkPolicy renders as documented: ingress to the server's `http` port only from
the release namespace, the selected namespaces and the Prometheus namespace; nothing else."""

from __future__ import annotations

from tests.support import chart as ck

SELECTORS = [{"team": "voice"}, {"higgs.dev/clients": "true"}]


def _policy(**network_policy: object) -> dict:
    values = {"networkPolicy": {"enabled": True, **network_policy}}
    return ck.one(ck.render(values), "NetworkPolicy")


def test_ingress_peers_are_same_namespace_selected_namespaces_and_prometheus() -> None:
    policy = _policy(allowedNamespaceSelectors=SELECTORS, prometheusNamespace="monitoring")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert len(spec["ingress"]) == 1, "one rule: every peer to the server port"
    rule = spec["ingress"][0]
    assert rule["from"] == [
        {"podSelector": {}},  # pods of the release namespace (allowSameNamespace default)
        {"namespaceSelector": {"matchLabels": {"team": "voice"}}},
        {"namespaceSelector": {"matchLabels": {"higgs.dev/clients": "true"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]
    # No peer may combine a namespaceSelector with an empty podSelector-less "allow all" shape.
    assert all(peer for peer in rule["from"]), "an empty peer would allow every source"
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_policy_selects_exactly_the_server_pods_and_port_name_exists() -> None:
    objects = ck.render({"networkPolicy": {"enabled": True}})
    policy = ck.one(objects, "NetworkPolicy")
    deployment = ck.one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items(), (selector, pod_labels)
    # The policy must not select the chart's test pods or other workloads of the release.
    for pod in ck.by_kind(objects, "Pod"):
        assert not selector.items() <= pod["metadata"].get("labels", {}).items(), pod["metadata"]["name"]
    server = ck.container(deployment["spec"]["template"]["spec"], "server")
    assert "http" in {p.get("name") for p in server["ports"]}, "the policy's named port is not declared"


def test_same_namespace_can_be_turned_off_leaving_only_chosen_namespaces() -> None:
    policy = _policy(
        allowSameNamespace=False, prometheusNamespace="", allowedNamespaceSelectors=SELECTORS[:1]
    )
    assert policy["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "voice"}}}]


def test_disabled_by_default() -> None:
    assert not ck.by_kind(ck.render(), "NetworkPolicy")
