"""localkube.podwatch.pod_failure on pod status fixtures (no cluster), and the wait on a fake API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client

from localkube import podwatch
from localkube.podwatch import PodsFailed, PodsNotReady, pod_failure
from localkube.settings import ConfigError, project_root

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(status: dict, restart_policy: str = "Always", name: str = "web-1") -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "app", "image": "x"}]},
        "status": status,
    }


def cs(name: str = "app", ready: bool = False, restarts: int = 0, state=None, last=None) -> dict:
    out = {"name": name, "image": "x", "imageID": "", "ready": ready, "restartCount": restarts}
    out["state"] = state or {"running": {}}
    if last:
        out["lastState"] = {"terminated": last}
    return out


def test_running_and_ready_is_fine():
    ready = pod({"phase": "Running", "containerStatuses": [cs(ready=True)]})
    assert pod_failure(ready) is None
    assert pod_failure(pod({"phase": "Pending"})) is None


def test_crash_loop_names_the_exit_code_and_message():
    p = pod(
        {
            "phase": "Running",
            "containerStatuses": [
                cs(
                    restarts=3,
                    state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 4s"}},
                    last={"exitCode": 3, "reason": "Error", "message": "config file missing"},
                )
            ],
        }
    )
    failure = pod_failure(p)
    assert failure is not None
    assert failure.reason == "CrashLoopBackOff" and failure.container == "app"
    assert "exit code 3" in failure.message and "config file missing" in failure.message
    assert "ns/web-1" in str(failure)


def test_first_restart_is_not_yet_a_failure():
    p = pod(
        {
            "phase": "Running",
            "containerStatuses": [cs(restarts=0, last={"exitCode": 1}, state={"running": {}})],
        }
    )
    assert pod_failure(p) is None


def test_repeated_restarts_while_running_count():
    p = pod(
        {"phase": "Running", "containerStatuses": [cs(restarts=4, last={"exitCode": 137, "reason": "Error"})]}
    )
    failure = pod_failure(p)
    assert failure is not None and "exit code 137" in failure.message and "restarted 4" in failure.message


@pytest.mark.parametrize(
    "reason",
    ["ImageNotMapped", "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"],
)
def test_image_and_config_errors_fail_at_once(reason):
    message = 'image "nope:1" is not mapped to a local command in images.yaml'
    p = pod(
        {
            "phase": "Pending",
            "containerStatuses": [cs(state={"waiting": {"reason": reason, "message": message}})],
        }
    )
    failure = pod_failure(p)
    assert failure is not None and failure.reason == reason and failure.message == message


def test_container_creating_is_not_a_failure():
    p = pod(
        {"phase": "Pending", "containerStatuses": [cs(state={"waiting": {"reason": "ContainerCreating"}})]}
    )
    assert pod_failure(p) is None


def test_unschedulable_after_a_while():
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
        "lastTransitionTime": (NOW - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    p = pod({"phase": "Pending", "conditions": [cond]})
    assert pod_failure(p, now=NOW) is None
    failure = pod_failure(p, now=NOW + timedelta(seconds=60))
    assert failure is not None and failure.reason == "Unschedulable" and "nvidia.com/gpu" in failure.message
    assert pod_failure(p, now=NOW, unschedulable_after=0) is not None


def test_init_container_crash_loop_and_error():
    loop = pod(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                cs(
                    name="download",
                    restarts=2,
                    state={"waiting": {"reason": "CrashLoopBackOff"}},
                    last={"exitCode": 1, "message": "401 Unauthorized"},
                )
            ],
            "containerStatuses": [cs(state={"waiting": {"reason": "PodInitializing"}})],
        }
    )
    failure = pod_failure(loop)
    assert failure is not None and failure.reason == "Init:CrashLoopBackOff" and failure.init
    assert failure.container == "download" and "401 Unauthorized" in failure.message

    error = pod(
        {
            "phase": "Failed",
            "initContainerStatuses": [
                cs(name="download", state={"terminated": {"exitCode": 2, "reason": "Error"}})
            ],
        },
        restart_policy="Never",
    )
    failure = pod_failure(error)
    assert failure is not None and failure.reason == "Init:Error" and "exit code 2" in failure.message


def test_failed_phase_and_succeeded_job():
    failed = pod({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}, restart_policy="Never")
    assert pod_failure(failed).reason == "Evicted"
    done = pod(
        {"phase": "Succeeded", "containerStatuses": [cs(state={"terminated": {"exitCode": 0}})]}, "Never"
    )
    assert pod_failure(done) is None


def test_v1pod_is_accepted():
    v1 = client.V1Pod(
        metadata=client.V1ObjectMeta(name="op-0", namespace="sys"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="op", image="x")]),
        status=client.V1PodStatus(
            phase="Pending",
            container_statuses=[
                client.V1ContainerStatus(
                    name="op",
                    image="x",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=client.V1ContainerState(
                        waiting=client.V1ContainerStateWaiting(reason="ImagePullBackOff", message="not found")
                    ),
                )
            ],
        ),
    )
    failure = pod_failure(v1)
    assert failure is not None and failure.pod == "sys/op-0" and failure.reason == "ImagePullBackOff"


class FakeCore:
    """list_namespaced_pod / events / logs of a namespace whose pods follow a script of statuses."""

    def __init__(self, frames: list[list[dict]]) -> None:
        self.frames = frames
        self.calls = 0

    def list_namespaced_pod(self, namespace, label_selector="", _request_timeout=None):
        frame = self.frames[min(self.calls, len(self.frames) - 1)]
        self.calls += 1
        api = client.ApiClient()
        items = [api._ApiClient__deserialize(p, "V1Pod") for p in frame]
        return SimpleNamespace(items=items)

    def list_namespaced_event(self, namespace, field_selector="", _request_timeout=None):
        ev = SimpleNamespace(
            type="Warning",
            reason="Failed",
            message="Error: image not mapped",
            count=2,
            last_timestamp=None,
            event_time=None,
            metadata=SimpleNamespace(creation_timestamp="t"),
        )
        return SimpleNamespace(items=[ev])

    def read_namespaced_pod_log(self, *a, **kw):
        return "line 1\nTraceback: boom\n"


def test_wait_returns_when_ready_and_fails_fast_with_explanation():
    pending = pod({"phase": "Pending"}, name="op-0")
    ready = pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [cs(ready=True)],
        },
        name="op-0",
    )
    core = FakeCore([[pending], [ready]])
    got = podwatch.wait_for_pods_ready(core, "ns", "app=op", 5, "the operator", interval=0.01)
    assert [p.metadata.name for p in got] == ["op-0"]

    broken = pod(
        {
            "phase": "Pending",
            "containerStatuses": [cs(state={"waiting": {"reason": "ImageNotMapped", "message": "no map"}})],
        },
        name="op-1",
    )
    core = FakeCore([[pending], [broken]])
    with pytest.raises(PodsFailed) as err:
        podwatch.wait_for_pods_ready(core, "ns", "app=op", 30, "the operator", interval=0.01)
    text = str(err.value)
    assert core.calls == 2 and not isinstance(err.value, PodsNotReady)
    assert "ns/op-1" in text and "ImageNotMapped" in text and "Error: image not mapped" in text

    crashed = pod(
        {"phase": "Running", "containerStatuses": [cs(restarts=3, last={"exitCode": 1, "reason": "Error"})]},
        name="op-2",
    )
    with pytest.raises(PodsFailed) as err:
        podwatch.wait_for_pods_ready(FakeCore([[crashed]]), "ns", "app=op", 30, "the operator", interval=0.01)
    assert "Traceback: boom" in str(err.value)  # no termination message: the log's tail

    with pytest.raises(PodsNotReady) as err:
        podwatch.wait_for_pods_ready(
            FakeCore([[pending]]), "ns", "app=op", 0.05, "the operator", interval=0.01
        )
    assert "not Ready after" in str(err.value) and "op-0" in str(err.value)


def test_project_root_is_checked(tmp_path):
    assert (project_root({}) / "hack" / "versions.txt").is_file()
    with pytest.raises(ConfigError, match=r"HIGGS_REPO_ROOT=.*no hack/versions\.txt"):
        project_root({"HIGGS_REPO_ROOT": str(tmp_path)})
    (tmp_path / "hack").mkdir()
    (tmp_path / "hack" / "versions.txt").write_text("k8s v1.0.0\n")
    assert project_root({"HIGGS_REPO_ROOT": str(tmp_path)}) == tmp_path


def test_shell_safe_path_aliases_paths_with_spaces(tmp_path):
    from localkube.pods import shell_safe_path

    assert shell_safe_path("/tmp/plain/dir") == "/tmp/plain/dir"
    spaced = tmp_path / "my repo" / "vol"
    spaced.mkdir(parents=True)
    (spaced / "f").write_text("x")
    alias = shell_safe_path(str(spaced), str(tmp_path / "aliases"))
    assert " " not in alias.removeprefix(str(tmp_path)) and (Path(alias) / "f").read_text() == "x"
    assert shell_safe_path(str(spaced), str(tmp_path / "aliases")) == alias  # stable
