"""Conditions and phase from pods, Deployment and probes."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from higgs_operator.secrets import SecretCheck
from higgs_operator.status import (
    Condition,
    StatusInputs,
    build_status,
    compute_conditions,
    download_failure,
    image_error,
    merge_conditions,
    pod_problem,
    scaling_fields,
    unschedulable,
    warning,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OK = SecretCheck(True, "SecretFound", "ok", "abc")
DEP = {
    "spec": {"selector": {"matchLabels": {"app": "x", "inst": "y"}}},
    "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1},
}


def pod(name="p", ready=False, init_running=False, init_done=False, crash=None, restarts=0):
    status: dict = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if init_running:
        status["initContainerStatuses"] = [{"name": "download", "state": {"running": {}}}]
    if init_done:
        status["initContainerStatuses"] = [{"name": "download", "state": {"terminated": {"exitCode": 0}}}]
    if crash:
        status["containerStatuses"] = [
            {
                "name": "server",
                "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": crash, "exitCode": 137}},
            }
        ]
    return {"metadata": {"name": name}, "status": status}


def conds(inp):
    c, phase = compute_conditions(inp, NOW)
    return {x.type: x for x in c}, phase


@pytest.mark.parametrize(
    ("inputs", "phase", "expect"),
    [
        (
            dict(secret=SecretCheck(False, "SecretNotFound", "missing"), deployment=None, pods=[]),
            "Pending",
            {"SecretReady": ("False", "SecretNotFound"), "Progressing": ("False", "SecretNotReady")},
        ),
        (
            dict(deployment=DEP, pods=[pod(init_running=True)]),
            "Downloading",
            {"ModelCacheReady": ("False", "Downloading"), "Available": ("False", "NoReadyReplicas")},
        ),
        (
            dict(deployment=DEP, pods=[pod(init_done=True)]),
            "Starting",
            {"ModelCacheReady": ("True", "CacheReady"), "Progressing": ("True", "RollingOut")},
        ),
        (
            dict(deployment=DEP, pods=[pod(ready=True)], models_ok=True, models_message="lists m"),
            "Ready",
            {
                "Available": ("True", "ModelServed"),
                "Degraded": ("False", "AsExpected"),
                "Progressing": ("False", "Complete"),
            },
        ),
        (
            dict(deployment=DEP, pods=[pod(ready=True)], models_ok=False, models_message="lists ['other']"),
            "Starting",
            {"Available": ("False", "ModelNotServed")},
        ),
        (
            dict(deployment=DEP, pods=[pod(crash="OOMKilled", restarts=4)]),
            "Degraded",
            {"Degraded": ("True", "CrashLoop")},
        ),
        (
            dict(deployment=DEP, pods=[], failure=("RenderFailed", "helm failed: boom")),
            "Failed",
            {"Available": ("False", "RenderFailed")},
        ),
        (
            dict(deployment=DEP, pods=[pod(ready=True)], models_ok=True),
            "Ready",
            {"ScalingActive": ("False", "ScalingDisabled")},
        ),
    ],
)
def test_condition_table(inputs, phase, expect):
    base = dict(generation=3, secret=OK, desired_replicas=1)
    c, got_phase = conds(StatusInputs(**{**base, **inputs}))
    assert got_phase == phase
    for ctype, (status, reason) in expect.items():
        assert (c[ctype].status, c[ctype].reason) == (status, reason), ctype
    assert list(c) == [
        "SecretReady",
        "ModelCacheReady",
        "Available",
        "Progressing",
        "Degraded",
        "ScalingActive",
    ]


def test_crash_loop_message_carries_termination_reason():
    c, _ = conds(
        StatusInputs(
            generation=1,
            secret=OK,
            deployment=DEP,
            pods=[pod(crash="OOMKilled", restarts=5)],
            desired_replicas=1,
        )
    )
    assert "OOMKilled" in c["Degraded"].message and "exit code 137" in c["Degraded"].message


def test_degraded_when_under_desired_past_threshold():
    dep = {**DEP, "status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2}}
    since = (NOW - timedelta(seconds=700)).strftime("%Y-%m-%dT%H:%M:%SZ")
    prev = [{"type": "Progressing", "status": "True", "lastTransitionTime": since}]
    inp = StatusInputs(
        generation=1,
        secret=OK,
        deployment=dep,
        pods=[pod(ready=True), pod("q")],
        desired_replicas=2,
        models_ok=True,
        degraded_after_s=600,
        previous=prev,
    )
    c, phase = conds(inp)
    assert (c["Degraded"].status, c["Degraded"].reason, phase) == ("True", "ReplicasUnavailable", "Degraded")
    c, phase = conds(StatusInputs(**{**inp.__dict__, "degraded_after_s": 800}))
    assert (c["Degraded"].status, phase) == ("False", "Ready")


def test_last_transition_time_only_moves_on_status_change():
    first = merge_conditions([], [Condition("Available", "False", "NoReadyReplicas", "m")], 1, NOW)
    later = NOW + timedelta(seconds=30)
    same = merge_conditions(first, [Condition("Available", "False", "Other", "m2")], 2, later)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["observedGeneration"] == 2 and same[0]["reason"] == "Other"
    flipped = merge_conditions(same, [Condition("Available", "True", "ModelServed", "m")], 2, later)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T12:00:30Z"


def test_build_status_fields():
    s = build_status(
        StatusInputs(
            generation=4,
            secret=OK,
            deployment=DEP,
            pods=[pod(ready=True)],
            desired_replicas=2,
            models_ok=True,
        ),
        NOW,
    )
    assert s["observedGeneration"] == 4
    assert (s["replicas"], s["readyReplicas"], s["ready"]) == (1, 1, "1/2")
    assert s["selector"] == "app=x,inst=y"


def test_restarts_long_recovered_are_not_a_crash_loop():
    """A container that restarted a few times and runs ready again keeps its lastState for ever; the
    resource must read Ready, not Degraded."""
    recovered = pod(ready=True)
    recovered["status"]["containerStatuses"] = [
        {
            "name": "server",
            "ready": True,
            "restartCount": 5,
            "state": {"running": {}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 137}},
        }
    ]
    c, phase = conds(StatusInputs(1, OK, DEP, [recovered], 1, models_ok=True))
    assert phase == "Ready" and c["Degraded"].status == "False"
    # Between back-offs (not ready, not yet in CrashLoopBackOff) the same history is a crash loop.
    recovered["status"]["containerStatuses"][0].update(ready=False, state={"running": {}})
    recovered["status"]["conditions"][0]["status"] = "False"
    c, phase = conds(StatusInputs(1, OK, DEP, [recovered], 1, models_ok=True))
    assert phase == "Degraded" and c["Degraded"].reason == "CrashLoop"


# --- why pods cannot start: the scheduler, the image, the download -------------------------------------
GPU_MSG = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available"


def unschedulable_pod(name="u", message=GPU_MSG):
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return {"metadata": {"name": name}, "status": {"phase": "Pending", "conditions": [cond]}}


def image_pod(reason, message="boom", container="server"):
    p = pod("img")
    p["spec"] = {"containers": [{"name": container, "image": "nope/x:1"}]}
    p["status"]["containerStatuses"] = [
        {"name": container, "state": {"waiting": {"reason": reason, "message": message}}}
    ]
    return p


def download_pod(code, message=None, state="waiting"):
    term = {"exitCode": code, "reason": "Error", **({"message": message} if message is not None else {})}
    cs: dict = {"name": "download-model", "restartCount": 1}
    if state == "terminated":
        cs["state"] = {"terminated": term}
    else:
        cs["state"] = {"waiting": {"reason": "CrashLoopBackOff"}} if state == "waiting" else {"running": {}}
        cs["lastState"] = {"terminated": term}
    p = pod("dl")
    p["status"]["initContainerStatuses"] = [cs]
    return p


def inputs(*pods, secret=OK):
    return StatusInputs(generation=1, secret=secret, deployment=DEP, pods=list(pods), desired_replicas=1)


def test_unschedulable_names_the_scheduler_reason_at_once():
    s = build_status(inputs(unschedulable_pod()), NOW)
    c = {x["type"]: x for x in s["conditions"]}
    for ctype, status in (("Available", "False"), ("Degraded", "True")):
        assert (c[ctype]["status"], c[ctype]["reason"]) == (status, "Unschedulable")
        assert (
            "pod u unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu"
            in c[ctype]["message"]
        )
    assert (s["phase"], s["reason"]) == ("Degraded", "Unschedulable")
    assert s["message"].startswith("pod u unschedulable: 0/2 nodes")
    assert warning(s) == ("Unschedulable", c["Degraded"]["message"])


def test_an_unbound_cache_claim_is_the_cache_not_a_node():
    msg = "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes"
    s = build_status(inputs(unschedulable_pod(message=msg)), NOW)
    c = {x["type"]: x for x in s["conditions"]}
    for ctype, status in (("ModelCacheReady", "False"), ("Available", "False"), ("Degraded", "True")):
        assert (c[ctype]["status"], c[ctype]["reason"]) == (status, "VolumeNotBound"), ctype
    assert "pod u waits for its volume claim to bind" in c["Degraded"]["message"]
    assert "storage class" in c["Degraded"]["message"]
    assert (s["phase"], s["reason"]) == ("Degraded", "VolumeNotBound")
    assert warning(s) == ("VolumeNotBound", c["Degraded"]["message"])


def test_unschedulable_waits_while_a_pod_terminates():
    leaving = pod("old")
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:59Z"
    assert pod_problem([leaving, unschedulable_pod()]) is None
    assert unschedulable(pod()) is None


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ImageNotMapped"])
def test_image_errors(reason):
    c, phase = conds(inputs(image_pod(reason, "no such image")))
    assert (c["Degraded"].reason, c["Available"].reason, phase) == (
        "ImagePullFailed",
        "ImagePullFailed",
        "Degraded",
    )
    assert (
        c["Degraded"].message
        == f"pod img container server cannot get image nope/x:1: {reason}: no such image"
    )
    assert image_error(image_pod("ContainerCreating")) is None


@pytest.mark.parametrize(
    ("code", "message", "reason", "text"),
    [
        (
            3,
            "TokenRejected: token rejected or no access to bosonai/m on http://hub (HTTP 401)",
            "TokenRejected",
            "token rejected or no access to bosonai/m",
        ),
        (
            4,
            "RevisionNotFound: revision 000 not found in bosonai/m on http://hub: check",
            "RevisionNotFound",
            "revision 000 not found",
        ),
        (
            6,
            "DiskFull: disk full while downloading bosonai/m into /models (1 KiB free): increase",
            "DiskFull",
            "disk full while downloading",
        ),
        # FallbackToLogsOnError: the log tail, the script's ERROR line last
        (
            4,
            "[download-model] endpoint x\nERROR: RevisionNotFound: revision 1 not found in a/b",
            "RevisionNotFound",
            "revision 1 not found in a/b",
        ),
        # no termination message (the local stack): the exit status names the cause
        (3, None, "TokenRejected", "the Hugging Face hub rejected the token"),
        (4, None, "RevisionNotFound", "a pinned revision is not in its repository"),
        (6, None, "DiskFull", "the model cache volume is full"),
        (1, "Traceback ...\nKeyError: 'x'", "DownloadFailed", "last output: KeyError: 'x'"),
        (137, None, "DownloadFailed", "exit code 137"),
    ],
)
def test_download_failure_reason_and_message(code, message, reason, text):
    for state in ("terminated", "waiting", "running"):
        c, phase = conds(inputs(download_pod(code, message, state)))
        mc = c["ModelCacheReady"]
        assert (mc.status, mc.reason) == ("False", reason), state
        assert mc.message.startswith("pod dl: ") and text in mc.message, mc.message
        assert (c["Degraded"].reason, c["Available"].reason, phase) == (reason, reason, "Degraded")
        token = c["SecretReady"]
        assert (token.status, token.reason) == (
            ("False", "TokenRejected") if reason == "TokenRejected" else ("True", "SecretFound")
        )


def test_token_rejected_is_the_summary_and_a_warning():
    s = build_status(
        inputs(download_pod(3, "TokenRejected: token rejected or no access to a/b (HTTP 401)")), NOW
    )
    assert (s["reason"], s["message"]) == (
        "TokenRejected",
        "pod dl: token rejected or no access to a/b (HTTP 401)",
    )
    assert warning(s) == ("TokenRejected", s["message"])


def test_download_that_succeeded_or_runs_first_time_is_no_problem():
    done = download_pod(0, state="terminated")
    assert download_failure(done) is None
    first = pod("f", init_running=True)
    first["status"]["initContainerStatuses"][0]["name"] = "download-model"
    assert download_failure(first) is None
    c, phase = conds(inputs(first))
    assert (c["ModelCacheReady"].reason, phase) == ("Downloading", "Downloading")


def test_healthy_status_has_no_reason_and_no_warning():
    s = build_status(inputs(pod(ready=True)), NOW)
    assert (s["reason"], s["message"]) == ("", "") and warning(s) is None
    missing = build_status(inputs(secret=SecretCheck(False, "SecretNotFound", "secret x missing")), NOW)
    assert missing["reason"] == "SecretNotFound" and warning(missing) is None  # the reconcile warns on it


def test_ready_replicas_agree_with_available_when_the_deployment_lags():
    """The Deployment's readyReplicas trails its pods: the resource must not say Available with 0 ready."""
    lagging = {**DEP, "status": {"replicas": 1, "readyReplicas": 0, "updatedReplicas": 1}}
    s = build_status(replace(inputs(pod(ready=True)), deployment=lagging, models_ok=True), NOW)
    available = next(c for c in s["conditions"] if c["type"] == "Available")
    assert available["status"] == "True"
    assert (s["readyReplicas"], s["ready"]) == (1, "1/1")


def test_operator_scaling_fields_are_removed_once_another_controller_scales():
    fields = {"desiredReplicas": 2, "metrics": {"waiting": 1}, "lastScaling": {"to": 2}}
    assert scaling_fields(True, fields) == fields
    # null in a merge patch removes the key: no figures from before a hand-off left as if current
    assert scaling_fields(False, fields) == {"metrics": None, "lastScaling": None}
