"""charts/higgs-loadtest offline: helm lint, render, strict schema validation, wiring of master and workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import k8s_schemas
from tests.support.chart import K8S_VERSIONS, loadtest_cases

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "higgs-loadtest"
TOOLS_BIN = Path.home() / ".cache" / "higgs-k8s" / "bin"
HOST = "http://higgs-audio.default.svc:8000"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = os.environ.get("HIGGS_HELM") or shutil.which(
        "helm", path=f"{TOOLS_BIN}:{os.environ.get('PATH', '')}"
    )
    if exe is None:
        pytest.skip(f"helm not found in {TOOLS_BIN} or on PATH")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def render(*sets: str) -> dict[str, dict]:
    args = ["template", "lt", str(CHART), "--namespace", "load"]
    for s in ("host=" + HOST, *sets):
        args += ["--set", s]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_helm_lint_strict_is_clean():
    proc = helm("lint", str(CHART), "--strict", "--set", f"host={HOST}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("case", sorted(loadtest_cases()))
def test_rendered_objects_are_valid_kubernetes(case):
    sets = loadtest_cases()[case]
    objs = render(*sets)
    errors = k8s_schemas.failures("higgs-loadtest", case, objs.values(), K8S_VERSIONS)
    assert not errors, "\n".join(errors)
    expected = {"ConfigMap/lt-higgs-loadtest", "Service/lt-higgs-loadtest-master"}
    expected |= {"Job/lt-higgs-loadtest-master", "Job/lt-higgs-loadtest-workers"}
    if "persistence.enabled=true" in sets:
        expected.add("PersistentVolumeClaim/lt-higgs-loadtest-report")
    if "higgsDeployment=serving/hd" in sets:
        expected |= {"ServiceAccount/lt-higgs-loadtest-master", "Role/lt-higgs-loadtest-view"}
        expected.add("RoleBinding/lt-higgs-loadtest-view")
    assert set(objs) == expected


@pytest.mark.parametrize(("value", "ref"), [("hd", "load/hd"), ("serving/hd", "serving/hd")])
def test_higgsdeployment_reaches_the_master_with_least_privilege_rbac(value, ref):
    namespace, name = ref.split("/")
    objs = render(f"higgsDeployment={value}")
    assert objs["ConfigMap/lt-higgs-loadtest"]["data"]["LOCUST_HIGGSDEPLOYMENT"] == ref
    master = objs["Job/lt-higgs-loadtest-master"]["spec"]["template"]["spec"]
    workers = objs["Job/lt-higgs-loadtest-workers"]["spec"]["template"]["spec"]
    assert master["serviceAccountName"] == "lt-higgs-loadtest-master"
    assert "serviceAccountName" not in workers  # workers never talk to the API server
    # The Role sits in the HiggsDeployment's namespace: get that one resource, list events; nothing else.
    role, binding = objs["Role/lt-higgs-loadtest-view"], objs["RoleBinding/lt-higgs-loadtest-view"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert role["rules"] == [
        {
            "apiGroups": ["audio.higgs.dev"],
            "resources": ["higgsdeployments"],
            "resourceNames": [name],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lt-higgs-loadtest-master", "namespace": "load"}
    ]
    # The ServiceAccount goes to the release namespace, where the master runs.
    assert "namespace" not in objs["ServiceAccount/lt-higgs-loadtest-master"]["metadata"]


def test_without_higgsdeployment_no_rbac_and_no_option():
    objs = render()
    assert not [k for k in objs if k.split("/")[0] in ("ServiceAccount", "Role", "RoleBinding")]
    assert "LOCUST_HIGGSDEPLOYMENT" not in objs["ConfigMap/lt-higgs-loadtest"]["data"]
    assert "serviceAccountName" not in objs["Job/lt-higgs-loadtest-master"]["spec"]["template"]["spec"]


def test_workers_reach_the_master_through_its_service_env_vars():
    objs = render("workers=3", "locustfile=/repo/loadtests/locustfile.py")
    service = objs["Service/lt-higgs-loadtest-master"]
    workers = objs["Job/lt-higgs-loadtest-workers"]
    master = objs["Job/lt-higgs-loadtest-master"]
    assert workers["spec"]["parallelism"] == workers["spec"]["completions"] == 3
    args = workers["spec"]["template"]["spec"]["containers"][0]["args"]
    # Kubernetes names a Service's env vars after it: dashes to underscores, upper case.
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    assert args[args.index("--master-host") + 1] == f"$({prefix}_SERVICE_HOST)"
    assert args[args.index("--master-port") + 1] == f"$({prefix}_SERVICE_PORT_MASTER)"
    assert args[args.index("-f") + 1] == "/repo/loadtests/locustfile.py"
    # The Service selects the master pod only, on the port the master binds.
    labels = master["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert "master" in service["spec"]["selector"].values()
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["master"] == 5557
    assert "--report-dir /report" in master["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--master-bind-port 5557" in master["spec"]["template"]["spec"]["containers"][0]["args"][0]


def test_options_reach_the_master_as_locust_env_vars():
    objs = render("options.slo-ttfa-ms=750", "options.fail-on=error_rate<=0.01", "users=40", "runTime=90s")
    data = objs["ConfigMap/lt-higgs-loadtest"]["data"]
    assert data["LOCUST_SLO_TTFA_MS"] == "750"
    assert data["LOCUST_FAIL_ON"] == "error_rate<=0.01"
    assert data["LOCUST_HOST"] == HOST and data["LOCUST_USERS"] == "40" and data["LOCUST_RUN_TIME"] == "90s"
    assert data["LOCUST_EXPECT_WORKERS"] == "2"
    env_from = objs["Job/lt-higgs-loadtest-master"]["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert env_from == [{"configMapRef": {"name": "lt-higgs-loadtest"}}]


def test_configmap_env_alone_configures_a_run(tmp_path):
    """The master gets its options only from the ConfigMap's LOCUST_* env vars: run Locust with exactly
    those (local, 1 s, nothing listening) and check the options took effect in the report."""
    data = render("options.slo-ttfa-ms=750", "users=1", "spawnRate=1", "runTime=1s", "options.no-plots=true")[
        "ConfigMap/lt-higgs-loadtest"
    ]["data"]
    data.pop("LOCUST_EXPECT_WORKERS")  # a master-only option; this run is local
    data |= {
        "LOCUST_HOST": "http://127.0.0.1:9",  # discard port: every request is a connection_error
        "LOCUST_LOCUSTFILE": str(REPO / "loadtests" / "locustfile.py"),
        "LOCUST_REPORT_DIR": str(tmp_path),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")} | data
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "locust")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    summary = yaml.safe_load((tmp_path / "summary.json").read_text())
    assert summary["slo"]["ttfa_ms"] == 750 and summary["host"] == "http://127.0.0.1:9"
    assert summary["requests"] > 0 and set(summary["errors"]) == {"connection_error"}
    assert not list(tmp_path.glob("*.png"))  # options.no-plots=true was applied


def test_bad_values_are_rejected_by_name():
    proc = helm("template", "lt", str(CHART))
    assert proc.returncode != 0 and "host is required" in proc.stderr
    proc = helm("template", "lt", str(CHART), "--set", f"host={HOST}", "--set", "runTime=soon")
    assert proc.returncode != 0 and "runTime" in proc.stderr
    proc = helm("template", "lt", str(CHART), "--set", f"host={HOST}", "--set", "workers=0")
    assert proc.returncode != 0 and "workers" in proc.stderr
    proc = helm("template", "lt", str(CHART), "--set", f"host={HOST}", "--set", "higgsDeployment=a/b/c")
    assert proc.returncode != 0 and "higgsDeployment" in proc.stderr
    sets = ["--set", f"host={HOST}", "--set", "higgsDeployment=hd", "--set", "options.higgsdeployment=x/y"]
    proc = helm("template", "lt", str(CHART), *sets)
    assert proc.returncode != 0 and "set higgsDeployment, not options.higgsdeployment" in proc.stderr


def test_notes_say_how_to_fetch_the_report():
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "kubectl -n {{ .Release.Namespace }} cp" in notes and "PVC" in notes
    assert "higgsDeployment" in notes and "operator's view" in notes


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@pytest.mark.parametrize("sets", [(), ("podSecurityContext=null",), ("higgsDeployment=serving/hd",)])
def test_jobs_are_hardened_with_resources_and_a_ttl(sets):
    """Pod Security "restricted" whatever podSecurityContext says; a read-only root with /tmp writable;
    requests and limits; finished Jobs cleaned up (tests/security/test_security_podsecurity.py admits them)."""
    objs = render(*sets)
    for name in ("Job/lt-higgs-loadtest-master", "Job/lt-higgs-loadtest-workers"):
        job = objs[name]
        assert job["spec"]["ttlSecondsAfterFinished"] == 3600, name
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        if name.endswith("workers") or "higgsDeployment=serving/hd" not in sets:
            assert pod["automountServiceAccountToken"] is False, name
        (container,) = pod["containers"]
        assert container["securityContext"] == RESTRICTED_CONTAINER, name
        assert {"name": "HOME", "value": "/tmp"} in container["env"], name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"], name
    master = objs["Job/lt-higgs-loadtest-master"]["spec"]["template"]["spec"]["containers"][0]
    assert "/report" in {m["mountPath"] for m in master["volumeMounts"]}


def test_ttl_and_resources_are_values():
    objs = render("ttlSecondsAfterFinished=60", "resources.worker.limits.cpu=2")
    workers = objs["Job/lt-higgs-loadtest-workers"]
    assert workers["spec"]["ttlSecondsAfterFinished"] == 60
    assert workers["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == 2
    proc = helm("template", "lt", str(CHART), "--set", f"host={HOST}", "--set", "resources.worker.cpu=1")
    assert proc.returncode != 0 and "resources" in proc.stderr
