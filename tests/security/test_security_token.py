"""The Hugging Face token never leaves its Secret: after a full operator reconcile (pods serving, model
download run with the token) and a rotation, the token's value (plain or base64) is in no log and in no
object of the namespace but Secrets. Complements tests/operator (which checks the operator log, events
and a few kinds): here every listable namespaced kind, the pods' logs on the node agent, and the control
plane's logs."""

from __future__ import annotations

import base64
import json
import secrets
import time

import pytest
import yaml

from tests.support import kubetest
from tests.support.higgsdeployment import OWNER_LABEL, create_token, get_hd, hd_body, wait_available
from tests.support.operator import REPO, HubProcess, OperatorProcess

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.localstack(
        "reads the local stack's pod and control-plane logs on this host for the token; "
        "the fake Hugging Face hub runs on this host's 127.0.0.1, where the serving pods must reach it"
    ),
    pytest.mark.timeout(300),
]

CLUSTER_STATE = REPO / ".cache" / "cluster"
ALLOWED_KINDS = {"secrets"}  # the token's home (and the operator's mirrored copies)


def _namespaced_objects(cluster: kubetest.Cluster, namespace: str) -> dict[str, str]:
    """kind -> `kubectl get <kind> -o json` for every listable namespaced kind but Secrets."""
    kinds = cluster.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
    dumps = {}
    for kind in kinds:
        if kind.split(".")[0] in ALLOWED_KINDS:
            continue
        proc = cluster.kubectl("get", kind, "-n", namespace, "-o", "json", check=False)
        if proc.returncode == 0:
            dumps[kind] = proc.stdout
    return dumps


def _logs(namespace: str, operator: OperatorProcess) -> dict[str, str]:
    logs = {"operator log": operator.log()}
    for path in sorted((CLUSTER_STATE / "agent" / "pods").glob(f"{namespace}_*/*.log")):
        logs[f"pod log {path.parent.name}/{path.name}"] = path.read_text(errors="replace")
    for path in sorted((CLUSTER_STATE / "logs").glob("*.log")):
        # Only the part written during this test would matter, but the whole file is cheap to scan.
        logs[f"control-plane log {path.name}"] = path.read_text(errors="replace")
    return logs


def _leaks(texts: dict[str, str], tokens: list[str]) -> list[str]:
    found = []
    for token in tokens:
        for form in (token, base64.b64encode(token.encode()).decode()):
            found += [
                f"{where} contains {'the token' if form == token else 'its base64'}"
                for where, t in texts.items()
                if form in t
            ]
    return found


def test_token_stays_in_its_secret_through_reconcile_and_rotation(
    cluster: kubetest.Cluster, namespace: str, operator: OperatorProcess, hub: HubProcess
) -> None:
    tokens = [f"hf_leakcheck{secrets.token_hex(12)}", f"hf_rotated{secrets.token_hex(12)}"]
    create_token(cluster, namespace, tokens[0])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(hd_body("tok", hub)))
    wait_available(cluster, namespace, "tok", timeout=120)
    uid = get_hd(cluster, namespace, "tok")["metadata"]["uid"]

    def pod_names() -> set[str]:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"{OWNER_LABEL}={uid}").items
        return {p.metadata.name for p in pods if kubetest._pod_ready(p)}

    first = kubetest.wait_for(pod_names, 30, what="a ready serving pod")
    create_token(cluster, namespace, tokens[1])  # rotation: the operator rolls the pods
    kubetest.wait_for(
        lambda: (now := pod_names()) and not now & first, 120, what="pods rolled after rotation"
    )
    wait_available(cluster, namespace, "tok", timeout=60)
    time.sleep(1)  # let the last log lines and events land

    # The token really was in use: the model download got it (as env from the Secret, not inlined).
    pod_spec = cluster.apps.read_namespaced_deployment("tok", namespace).spec.template.spec
    containers = [*(pod_spec.init_containers or []), *pod_spec.containers]
    env = [e for c in containers for e in (c.env or []) if e.name == "HF_TOKEN"]
    assert env and env[0].value_from.secret_key_ref is not None and env[0].value is None

    objects = _namespaced_objects(cluster, namespace)
    assert {"pods", "events", "deployments.apps", "configmaps"} <= set(objects) or {
        "pods",
        "events",
        "deployments.apps",
        "configmaps",
    } <= {k.split(".")[0] for k in objects} | set(objects)
    hd_status = json.dumps(get_hd(cluster, namespace, "tok").get("status", {}))
    logs = _logs(namespace, operator)
    assert any(where.startswith("pod log") for where in logs), "no pod log of the namespace was found"
    leaks = _leaks({**objects, **logs, "HiggsDeployment status": hd_status}, tokens)
    assert not leaks, leaks
