"""Unit tests of the node agent's pure parts: env, $(VAR), paths, images, IPs, backoff, status."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from localkube.container_procs import StartError, exit_code, start_process, stop_process
from localkube.images import (
    ImageMap,
    ImageNotMapped,
    ImagesFileError,
    Placeholders,
    container_argv,
    container_argv_parts,
    image_env,
    image_files,
    load_image_map,
    parse_image_map,
)
from localkube.kubelet import (
    Container,
    build_conditions,
    compute_phase,
    fallback_message,
    termination_message,
    termination_message_path,
)
from localkube.pods import (
    Backoff,
    EnvConfigError,
    EnvSources,
    IpAllocator,
    IpPoolExhausted,
    container_env,
    expand,
    parse_quantity,
    resolve_port,
    rewrite_path,
    service_env,
)

REPO = Path(__file__).resolve().parents[2]


def pod(**spec) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
        "spec": {"nodeName": "gpu-node-0", "serviceAccountName": "sa", **spec},
    }


def sources(secrets: dict | None = None, configmaps: dict | None = None) -> EnvSources:
    secrets = secrets or {}
    configmaps = configmaps or {}
    return EnvSources(
        get_secret=lambda n: secrets.get(n),
        get_configmap=lambda n: configmaps.get(n),
        pod_ip="127.42.1.5",
        host_ip="127.42.1.1",
        node_allocatable={"cpu": "16", "memory": "64Gi"},
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- $(VAR) expansion ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("a$b", "a$b"),
        ("end$", "end$"),
        ("$(A", "$(A"),
        ("x$(A)$(A)y", "x11y"),
    ],
)
def test_expand_follows_kubernetes_rules(value: str, expected: str) -> None:
    assert expand(value, {"A": "1", "B": "2"}) == expected


# --- env -----------------------------------------------------------------------------------------
def test_env_value_from_sources_and_ordering() -> None:
    secrets = {"tok": {"data": {"token": b64("s3cret")}}}
    configmaps = {"cfg": {"data": {"MODE": "fast", "LEVEL": "2"}}}
    container = {
        "name": "c",
        "resources": {"limits": {"memory": "1Gi"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "URL", "value": "http://$(IP):8000/$(CFG_MODE)/$(NOPE)"},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}},
        ],
    }
    env = container_env(pod(), container, sources(secrets, configmaps), {"SVC_SERVICE_HOST": "127.100.0.9"})
    assert env["TOKEN"] == "s3cret"
    assert env["CFG_MODE"] == "fast" and env["CFG_LEVEL"] == "2"
    assert env["POD"] == "p" and env["IP"] == "127.42.1.5" and env["APP"] == "x"
    assert env["MEM"] == "1024" and env["CPU"] == "16"  # unset cpu limit -> node allocatable
    assert env["URL"] == "http://127.42.1.5:8000/fast/$(NOPE)"
    assert "OPT" not in env
    assert env["SVC_SERVICE_HOST"] == "127.100.0.9"


def test_env_var_overrides_service_link() -> None:
    container = {"name": "c", "env": [{"name": "SVC_SERVICE_HOST", "value": "mine"}]}
    env = container_env(pod(), container, sources(), {"SVC_SERVICE_HOST": "127.100.0.9"})
    assert env["SVC_SERVICE_HOST"] == "mine"


@pytest.mark.parametrize(
    ("env_item", "message"),
    [
        ({"secretKeyRef": {"name": "x", "key": "k"}}, 'secret "x" not found'),
        ({"secretKeyRef": {"name": "have", "key": "k"}}, "couldn't find key k in Secret ns/have"),
        ({"configMapKeyRef": {"name": "x", "key": "k"}}, 'configmap "x" not found'),
    ],
)
def test_missing_reference_is_a_config_error_with_kubelet_message(env_item: dict, message: str) -> None:
    container = {"name": "c", "env": [{"name": "V", "valueFrom": env_item}]}
    with pytest.raises(EnvConfigError) as err:
        container_env(pod(), container, sources({"have": {"data": {"other": b64("1")}}}))
    assert str(err.value) == message


def test_env_from_missing_secret_optional_and_not() -> None:
    optional = {"name": "c", "envFrom": [{"secretRef": {"name": "s", "optional": True}}]}
    assert container_env(pod(), optional, sources()) == {}
    required = {"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}
    with pytest.raises(EnvConfigError, match='secret "s" not found'):
        container_env(pod(), required, sources())


def test_service_env_like_docker_links() -> None:
    svc = {
        "metadata": {"name": "my-svc"},
        "spec": {"clusterIP": "127.100.3.4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
    env = service_env([svc, headless])
    assert env["MY_SVC_SERVICE_HOST"] == "127.100.3.4"
    assert env["MY_SVC_SERVICE_PORT"] == "80"
    assert env["MY_SVC_SERVICE_PORT_HTTP"] == "80"
    assert env["MY_SVC_PORT"] == "tcp://127.100.3.4:80"
    assert env["MY_SVC_PORT_80_TCP_ADDR"] == "127.100.3.4"
    assert not any(k.startswith("H_") for k in env)


def test_parse_quantity() -> None:
    assert parse_quantity("500m") * 1000 == 500
    assert parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity("1k") == 1000
    assert parse_quantity("3") == 3


# --- paths ---------------------------------------------------------------------------------------
def test_rewrite_path_under_mounts_only() -> None:
    mounts = [("/models", "/st/v/models"), ("/models/cache", "/st/v/cache"), ("/dev/shm", "/st/v/shm")]
    assert rewrite_path("/models", mounts) == "/st/v/models"
    assert rewrite_path("/models/a/b.bin", mounts) == "/st/v/models/a/b.bin"
    assert rewrite_path("/models/cache/x", mounts) == "/st/v/cache/x"  # longest mount wins
    assert rewrite_path("/modelsX", mounts) == "/modelsX"
    assert rewrite_path("--dir=/models/x", mounts) == "--dir=/st/v/models/x"
    assert rewrite_path("--port=8000", mounts) == "--port=8000"
    assert rewrite_path("relative/models", mounts) == "relative/models"
    assert rewrite_path("/etc/x", [("/", "/host")]) == "/etc/x"  # "/" cannot be emulated
    assert rewrite_path("PATH=/bin:/models/bin", mounts) == "PATH=/bin:/st/v/models/bin"
    script = "echo hi > /models/out && cat '/dev/shm/x' /data/models http://h/models /models.bak"
    assert rewrite_path(script, mounts) == (
        "echo hi > /st/v/models/out && cat '/st/v/shm/x' /data/models http://h/models /models.bak"
    )


# --- images --------------------------------------------------------------------------------------
def test_shipped_images_file_maps_the_project_images() -> None:
    images = load_image_map(REPO / "hack" / "localkube-images.yaml")
    ph = Placeholders(venv="/v/bin", repo="/r", pod_ip="127.42.1.9", path="/usr/bin")
    sim = images.lookup("localhost/higgs-audio-simulator:0.1")
    assert container_argv(sim, None, ["--port", "8000"], ph) == [
        "/v/bin/higgs-sim", "--sim-bind-host", "127.42.1.9", "--port", "8000",
    ]  # fmt: skip
    assert images.lookup("docker.io/bosonai/higgs-audio-vllm:latest").entrypoint == sim.entrypoint
    assert images.lookup("localhost/higgs-loadtest:1").entrypoint == ("{venv}/locust",)
    assert images.lookup("localhost/higgs-operator:dev").entrypoint == ("{venv}/higgs-operator",)
    assert image_env(images, sim, ph)["PATH"].startswith("/v/bin:")
    with pytest.raises(ImageNotMapped, match=r"nginx:1.27.*localkube-images.yaml"):
        images.lookup("nginx:1.27")


def test_command_and_args_override_like_a_runtime() -> None:
    m = parse_image_map(
        {"images": [{"match": "img:*", "entrypoint": ["/ep", "{pod_ip}"], "cmd": ["d"]}]}, "f"
    )
    cfg = m.lookup("img:1")
    ph = Placeholders(venv="/v", repo="/r", pod_ip="127.0.0.5")
    assert container_argv(cfg, None, None, ph) == ["/ep", "127.0.0.5", "d"]
    assert container_argv(cfg, None, ["a"], ph) == ["/ep", "127.0.0.5", "a"]
    assert container_argv(cfg, ["python3", "-c"], ["x"], ph) == ["python3", "-c", "x"]
    assert container_argv(cfg, ["sh"], None, ph) == ["sh"]


def test_only_the_pod_specs_argv_is_a_container_path() -> None:
    """The images file's entrypoint is a host path: with a clone under /tmp and an emptyDir at /tmp it
    must not be rewritten into the volume (kubelet.command_for rewrites only the pod's parts)."""
    m = parse_image_map(
        {"images": [{"match": "img:*", "entrypoint": ["{venv}/op", "--ip", "{pod_ip}"]}]}, "f"
    )
    ph = Placeholders(venv="/tmp/clone/.venv/bin", repo="/tmp/clone", pod_ip="127.0.0.5")
    parts = container_argv_parts(m.lookup("img:1"), None, ["--cache", "/tmp/x"], ph)
    mounts = [("/tmp", "/state/pods/p/volumes/scratch")]
    argv = [rewrite_path(p.value, mounts) if p.from_pod else p.value for p in parts]
    assert argv == [
        "/tmp/clone/.venv/bin/op",
        "--ip",
        "127.0.0.5",
        "--cache",
        "/state/pods/p/volumes/scratch/x",
    ]
    mapped = parse_image_map(
        {"images": [{"match": "v:*", "commands": {"vllm": {"argv": ["{venv}/py"], "append": ["{repo}/f"]}}}]},
        "f",
    )
    parts = container_argv_parts(mapped.lookup("v:1"), ["vllm", "serve"], ["/tmp/m"], ph)
    assert [(p.value, p.from_pod) for p in parts] == [
        ("/tmp/clone/.venv/bin/py", False), ("serve", True), ("/tmp/m", True), ("/tmp/clone/f", False),
    ]  # fmt: skip


def test_shipped_images_file_runs_vllm_omnis_command_as_the_emulation() -> None:
    """vllm/vllm-omni has ENTRYPOINT [] (docs/server-contract-omni.md OS5): the chart's `vllm serve`
    runs `python -m higgs_sim.omni serve ...` with the listen address appended as a `serve` flag; other
    commands (the download init container's `python3`) run as written; the image's deploy YAML path
    points at the emulation's copy."""
    images = load_image_map(REPO / "hack" / "localkube-images.yaml")
    ph = Placeholders(venv="/v/bin", repo=str(REPO), pod_ip="127.42.1.9", path="/usr/bin")
    for ref in ("vllm/vllm-omni:v0.25.0", "docker.io/vllm/vllm-omni:v1", "vllm/vllm-omni@sha256:" + "a" * 64):
        omni = images.lookup(ref)
        args = ["/models/m", "--omni", "--deploy-config", "/app/d.yaml", "--port", "8000"]
        assert container_argv(omni, ["vllm", "serve"], args, ph) == [
            "/v/bin/python", "-m", "higgs_sim.omni", "serve", *args, "--sim-bind-host", "127.42.1.9",
        ]  # fmt: skip
        assert container_argv(omni, ["python3", "/s/download_model.py"], ["--item"], ph) == [
            "python3", "/s/download_model.py", "--item",
        ]  # fmt: skip
        deploy = "/app/vllm-omni/vllm_omni/deploy/higgs_audio_v2.yaml"
        host = dict(image_files(omni, ph))[deploy]
        assert host == str(REPO / "simulator" / "higgs_sim" / "omni" / "higgs_audio_v2.yaml")
        assert Path(host).is_file()
        assert rewrite_path(f"--deploy-config={deploy}", image_files(omni, ph)) == f"--deploy-config={host}"


def test_mapped_commands_and_image_files() -> None:
    m = parse_image_map(
        {
            "images": [
                {
                    "match": "img:*",
                    "entrypoint": ["/ep"],
                    "commands": {
                        "tool": {"argv": ["{venv}/python", "-m", "t"], "append": ["--ip", "{pod_ip}"]},
                        "short": ["{repo}/bin/short"],
                    },
                    "files": {"/app/conf.yaml": "{repo}/conf.yaml", "/app/data/": "/host/data"},
                }
            ]
        },
        "f",
    )
    cfg = m.lookup("img:1")
    ph = Placeholders(venv="/v", repo="/r", pod_ip="127.0.0.5")
    assert container_argv(cfg, ["tool", "serve"], ["a", "b"], ph) == [
        "/v/python", "-m", "t", "serve", "a", "b", "--ip", "127.0.0.5",
    ]  # fmt: skip
    assert container_argv(cfg, ["tool"], None, ph) == ["/v/python", "-m", "t", "--ip", "127.0.0.5"]
    assert container_argv(cfg, ["short", "x"], ["y"], ph) == ["/r/bin/short", "x", "y"]
    # Only the command's executable is looked up: not a later element, not the entrypoint path.
    assert container_argv(cfg, ["sh", "tool"], None, ph) == ["sh", "tool"]
    assert container_argv(cfg, None, ["tool"], ph) == ["/ep", "tool"]
    files = image_files(cfg, ph)
    assert files == [("/app/conf.yaml", "/r/conf.yaml"), ("/app/data/", "/host/data")]
    assert rewrite_path("/app/conf.yaml", files) == "/r/conf.yaml"
    assert rewrite_path("/app/data/x.bin", files) == "/host/data/x.bin"
    assert rewrite_path("/app/conf.yaml.bak", files) == "/app/conf.yaml.bak"
    # A volume mounted at the same path comes after the image's files and wins (kubelet.command_for).
    assert rewrite_path("/app/data/x", [*files, ("/app/data", "/vol")]) == "/vol/x"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"images": "x"}, "'images' list"),
        ({"images": [{"match": "a", "commands": ["vllm"]}]}, r"images\[0\].commands: must be a mapping"),
        ({"images": [{"match": "a", "commands": {"vllm": "python"}}]}, r"commands.vllm: must be a list"),
        ({"images": [{"match": "a", "commands": {"vllm": {"argv": []}}}]}, r"commands.vllm.argv: must not"),
        ({"images": [{"match": "a", "commands": {"vllm": {"argv": ["p"], "x": 1}}}]}, "commands.vllm"),
        ({"images": [{"match": "a", "files": {"rel/p": "/h"}}]}, r"images\[0\].files: must be a mapping"),
        ({"images": [{"match": "a", "files": {"/p": 3}}]}, r"images\[0\].files"),
        ({"images": [{"entrypoint": ["a"]}]}, r"images\[0\]: each entry needs a 'match'"),
        ({"images": [{"match": "a", "entrypoint": "a b"}]}, r"images\[0\].entrypoint: must be a list"),
        ({"images": [{"match": "a", "entrypiont": ["a"]}]}, "unknown keys"),
    ],
)
def test_bad_images_file_names_the_problem(data: dict, message: str) -> None:
    with pytest.raises(ImagesFileError, match=message):
        parse_image_map(data, "images.yaml")


def test_empty_image_map_refuses_everything() -> None:
    with pytest.raises(ImageNotMapped):
        ImageMap("f", ()).lookup("busybox")


# --- IPs, ports, backoff -------------------------------------------------------------------------
def test_ip_allocator_unique_release_claim() -> None:
    alloc = IpAllocator(0)
    assert alloc.host_ip == "127.42.1.1"
    ips = {alloc.allocate() for _ in range(253)}
    assert len(ips) == 253 and all(ip.startswith("127.42.1.") for ip in ips) and "127.42.1.1" not in ips
    with pytest.raises(IpPoolExhausted):
        alloc.allocate()
    alloc.release("127.42.1.7")
    assert alloc.allocate() == "127.42.1.7"
    other = IpAllocator(1)
    assert other.claim("127.42.2.9") and not other.claim("127.42.2.9") and not other.claim("127.42.1.9")
    assert other.allocate() != "127.42.2.9"


def test_resolve_port_by_name_or_number() -> None:
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 8000}]}
    assert resolve_port("http", container) == 8000
    assert resolve_port(9000, container) == 9000
    with pytest.raises(ValueError, match="not a number nor a named port"):
        resolve_port("grpc", container)


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(initial=1, maximum=10, reset_after=60)
    delays = [b.next_delay(ran_for=1) for _ in range(7)]
    assert delays == [0, 1, 2, 4, 8, 10, 10]
    assert b.next_delay(ran_for=120) == 0  # it ran long enough: back to an immediate restart


# --- phase and conditions ------------------------------------------------------------------------
def _c(name: str, *, init: bool = False, done: bool = False, code: int | None = None, started: bool = True):
    c = Container({"name": name}, init, Backoff())
    c.done, c.ever_started = done, started
    if code is not None:
        c.terminated = {"exitCode": code}
    return c


def test_phase_rules() -> None:
    assert compute_phase("Always", [_c("i", init=True)], [_c("m", started=False)], False) == "Pending"
    assert compute_phase("Always", [_c("i", init=True, done=True)], [_c("m")], False) == "Running"
    assert (
        compute_phase("Never", [], [_c("a", done=True, code=0), _c("b", done=True, code=0)], False)
        == "Succeeded"
    )
    assert (
        compute_phase("Never", [], [_c("a", done=True, code=0), _c("b", done=True, code=1)], False)
        == "Failed"
    )
    assert compute_phase("Never", [], [_c("a", done=True, code=0), _c("b")], False) == "Running"
    assert compute_phase("Never", [_c("i", init=True, done=True, code=1)], [_c("m")], True) == "Failed"


def test_conditions_keep_foreign_ones_and_transition_times() -> None:
    previous = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"},
        {"type": "Ready", "status": "False", "lastTransitionTime": "t1"},
    ]
    conds = {c["type"]: c for c in build_conditions("Running", True, [], [_c("m", started=False)], previous)}
    assert conds["PodScheduled"]["lastTransitionTime"] == "t0"
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["lastTransitionTime"] == "t1"
    assert conds["Ready"]["message"] == "containers with unready status: [m]"
    assert conds["Initialized"]["status"] == "True"
    assert conds["PodReadyToStartContainers"]["status"] == "True"


# --- processes -----------------------------------------------------------------------------------
def test_process_exit_codes_and_stop(tmp_path: Path) -> None:
    assert exit_code(-9) == 137 and exit_code(3) == 3
    script = "trap '' TERM; echo hello; sleep 30"
    proc = start_process(
        ["sh", "-c", script], {"PATH": "/usr/bin:/bin"}, str(tmp_path), tmp_path / "c.log", tmp_path / "c.pid"
    )
    deadline = time.monotonic() + 5
    while "hello" not in (tmp_path / "c.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)  # the trap is set once it printed
    assert int((tmp_path / "c.pid").read_text()) == proc.pid
    code = stop_process(proc, grace=0.5)  # TERM ignored -> KILL after the grace
    assert code == 137
    assert "hello" in (tmp_path / "c.log").read_text()
    with pytest.raises(StartError, match="executable file not found"):
        start_process(["/no/such/binary"], {}, str(tmp_path), tmp_path / "d.log", tmp_path / "d.pid")


def test_fallback_to_logs_on_error_keeps_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text(
        "".join(f"line {i}\n" for i in range(200)) + "ERROR: RevisionNotFound: revision x not found\n"
    )
    spec = {"name": "c", "terminationMessagePolicy": "FallbackToLogsOnError"}
    tail = fallback_message(spec, 4, log)
    assert tail.endswith("ERROR: RevisionNotFound: revision x not found")
    assert len(tail.splitlines()) == 80 and len(tail.encode()) <= 2048
    assert fallback_message(spec, 0, log) == ""  # only on failure
    assert fallback_message({"name": "c"}, 4, log) == ""  # the default policy, File, keeps none here
    assert fallback_message(spec, 1, tmp_path / "absent.log") == ""


def test_termination_message_file_wins_over_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text("progress\nERROR: TokenRejected: HTTP 401\n")
    message_file = tmp_path / "c.termination-log"
    spec = {"name": "c", "terminationMessagePolicy": "FallbackToLogsOnError"}
    message_file.write_text("TokenRejected: HTTP 401: token rejected\n")
    assert termination_message(spec, 3, message_file, log) == "TokenRejected: HTTP 401: token rejected"
    message_file.write_text("x" * 5000)  # the kubelet reads at most 4096 bytes
    assert termination_message(spec, 3, message_file, log) == "x" * 4096
    message_file.write_text("")  # nothing written: the log tail, under FallbackToLogsOnError only
    assert termination_message(spec, 3, message_file, log).endswith("ERROR: TokenRejected: HTTP 401")
    assert termination_message({"name": "c"}, 3, message_file, log) == ""
    assert termination_message(spec, 3, tmp_path / "absent", log).endswith("HTTP 401")
    assert termination_message_path({"name": "c"}) == "/dev/termination-log"
    assert termination_message_path({"name": "c", "terminationMessagePath": "/tmp/why"}) == "/tmp/why"
