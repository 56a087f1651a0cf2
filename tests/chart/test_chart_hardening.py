"""The serving chart's helm test pod is hardened (Pod Security "restricted") whatever the values say, with
requests and limits and a writable /tmp; tests/security/test_security_podsecurity.py admits it for real."""

from __future__ import annotations

import pytest

from tests.support import chart as ck

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _test_pod(values: dict | None = None) -> dict:
    pods = [p for p in ck.by_kind(ck.render(values), "Pod") if p["metadata"]["name"].endswith("-test-audio")]
    assert len(pods) == 1
    return pods[0]["spec"]


@pytest.mark.parametrize(
    "values",
    [
        None,
        {"podSecurityContext": None, "securityContext": None},
        {"securityContext": {"readOnlyRootFilesystem": False, "capabilities": {"add": ["NET_ADMIN"]}}},
    ],
    ids=["defaults", "contexts-null", "contexts-weakened"],
)
def test_helm_test_pod_is_restricted_whatever_the_values(values: dict | None) -> None:
    pod = _test_pod(values)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000  # the python image would start as root
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == RESTRICTED_CONTAINER
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


def test_helm_test_pod_keeps_the_users_own_ids() -> None:
    pod = _test_pod({"podSecurityContext": {"runAsUser": 2000, "runAsGroup": 2000}})
    assert pod["securityContext"]["runAsUser"] == 2000 and pod["securityContext"]["runAsGroup"] == 2000
