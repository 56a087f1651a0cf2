"""The serving chart's NetworkPolicy renders as documented, and is on by default: ingress to the server's
`http` port only from the release namespace, the named and selected namespaces, the gateway's namespace and
the listed address blocks (one rule), and from the Prometheus namespace (the metrics rule); nothing else."""

from __future__ import annotations

from tests.support import chart as ck

SELECTORS = [{"team": "voice"}, {"higgs.dev/clients": "true"}]


def _policy(**network_policy: object) -> dict:
    values = {"networkPolicy": {"enabled": True, **network_policy}}
    return ck.one(ck.render(values), "NetworkPolicy")


def _ns(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


HTTP = [{"port": "http", "protocol": "TCP"}]


def test_ingress_peers_are_every_source_asked_for_and_prometheus_for_metrics() -> None:
    policy = _policy(
        allowedNamespaces=["clients", "batch"],
        allowedNamespaceSelectors=SELECTORS,
        gatewayNamespace="envoy-gateway-system",
        ipBlocks=[{"cidr": "10.20.0.0/16", "except": ["10.20.5.0/24"]}],
        prometheusNamespace="monitoring",
    )
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    clients, metrics = spec["ingress"]
    assert clients["from"] == [
        {"podSelector": {}},  # pods of the release namespace (allowSameNamespace default)
        _ns("clients"),
        _ns("batch"),
        {"namespaceSelector": {"matchLabels": {"team": "voice"}}},
        {"namespaceSelector": {"matchLabels": {"higgs.dev/clients": "true"}}},
        _ns("envoy-gateway-system"),
        {"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.5.0/24"]}},
    ]
    assert metrics["from"] == [_ns("monitoring")]
    for rule in spec["ingress"]:
        # An empty peer (or an empty `from`) would allow every source.
        assert rule["from"] and all(peer for peer in rule["from"]), rule
        assert rule["ports"] == HTTP


def test_on_by_default_same_namespace_and_monitoring_only() -> None:
    policy = ck.one(ck.render(), "NetworkPolicy")
    assert policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": HTTP},
        {"from": [_ns("monitoring")], "ports": HTTP},
    ]


def test_bad_sources_are_refused_by_the_schema() -> None:
    for bad in (
        {"allowedNamespaces": ["Not_A_Namespace"]},
        {"gatewayNamespace": "UPPER"},
        {"ipBlocks": [{"except": ["10.0.0.0/8"]}]},  # cidr required
        {"ipBlocks": [{"cidr": "10.0.0.0/8", "ports": [80]}]},
    ):
        proc = ck.template({"networkPolicy": {"enabled": True, **bad}})
        assert proc.returncode != 0, bad


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
    assert policy["spec"]["ingress"] == [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "voice"}}}], "ports": HTTP}
    ]


def test_metrics_only_when_no_client_source() -> None:
    policy = _policy(allowSameNamespace=False)
    assert policy["spec"]["ingress"] == [{"from": [_ns("monitoring")], "ports": HTTP}]


def test_can_be_turned_off() -> None:
    assert not ck.by_kind(ck.render({"networkPolicy": {"enabled": False}}), "NetworkPolicy")
