"""The chart's model-download script (files/download_model.py) against the fake Hugging Face Hub
(higgs_sim.hub): the same huggingface_hub code path the init container runs."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from higgs_sim import hub
from higgs_sim.startup import HubEnv, cached_snapshot
from tests.support import chart as ck

SCRIPT = ck.CHART / "files" / "download_model.py"
TOKEN = "hf_fake_token_for_tests_0123456789"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("download_model", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["download_model"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def state() -> hub.HubState:
    return hub.new_state(token=TOKEN, weights_bytes=64 * 1024)


@pytest.fixture
def endpoint(state: hub.HubState) -> Iterator[str]:
    with hub.running_hub(state) as url:
        yield url


def run_script(
    endpoint: str,
    dest: Path,
    token: str | None = TOKEN,
    extra: list[str] | None = None,
    revision: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(dest / ".hf-home"))
    if token:
        env["HF_TOKEN"] = token
    args = [
        sys.executable,
        str(SCRIPT),
        "--progress-interval",
        "0.2",
        "--item",
        hub.MODEL_REPO,
        revision or hub.MODEL_REVISION,
        str(dest / "model"),
        "--item",
        hub.TOKENIZER_REPO,
        hub.TOKENIZER_REVISION,
        str(dest / "tokenizer"),
        *(extra or []),
    ]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)


def expected_files(repo_id: str) -> dict[str, bytes]:
    return next(r for r in hub.default_repos(64 * 1024) if r.repo_id == repo_id).files


def test_fresh_download_then_skip_on_marker(endpoint: str, state: hub.HubState, tmp_path: Path) -> None:
    proc = run_script(endpoint, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for repo_id, sub in ((hub.MODEL_REPO, "model"), (hub.TOKENIZER_REPO, "tokenizer")):
        for name, data in expected_files(repo_id).items():
            assert (tmp_path / sub / name).read_bytes() == data, f"{sub}/{name}"
    marker = json.loads((tmp_path / "model" / ".higgs-download-complete").read_text())
    assert marker["revision"] == hub.MODEL_REVISION and marker["repo"] == hub.MODEL_REPO
    assert "complete" in proc.stdout and TOKEN not in proc.stdout + proc.stderr
    first = sum(state.downloads.values())
    assert first == len(expected_files(hub.MODEL_REPO)) + len(expected_files(hub.TOKENIZER_REPO))

    again = run_script(endpoint, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("marker present") == 2
    assert sum(state.downloads.values()) == first, "a present marker must skip the download"


def test_other_revision_is_not_skipped(endpoint: str, tmp_path: Path) -> None:
    assert run_script(endpoint, tmp_path).returncode == 0
    mod = load_script()
    item = mod.Item(hub.MODEL_REPO, "f" * 40, tmp_path / "model")
    assert not mod.is_complete(item), "the marker is per revision"


def test_resume_downloads_only_missing_files(endpoint: str, state: hub.HubState, tmp_path: Path) -> None:
    broken = f"{hub.MODEL_REPO}/model-00002-of-00002.safetensors"
    state.broken_files.add(broken)
    failed = run_script(endpoint, tmp_path, extra=["--max-workers", "1"])
    assert failed.returncode in (1, 8)  # DownloadFailed or HubError, by huggingface_hub release
    assert "ERROR:" in failed.stderr and "HTTP 500" in failed.stderr
    assert not (tmp_path / "model" / ".higgs-download-complete").exists()
    done_before = {k for k, v in state.downloads.items() if k != broken and v == 1}
    assert done_before, "some files completed before the failure"

    state.broken_files.clear()
    resumed = run_script(endpoint, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for key in done_before:
        assert state.downloads[key] == 1, f"{key} was downloaded again"
    assert state.downloads[broken] == 2
    assert (tmp_path / "model" / ".higgs-download-complete").exists()


def test_missing_or_wrong_token_is_named(endpoint: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    for token in (None, "hf_wrong"):
        log.write_text("")  # the kubelet creates the file; the script only writes into it
        proc = run_script(endpoint, tmp_path, token=token, extra=["--termination-log", str(log)])
        assert proc.returncode == 3  # EXIT_CODES["TokenRejected"]
        assert f"ERROR: TokenRejected: token rejected or no access to {hub.MODEL_REPO}" in proc.stderr
        assert "Traceback" not in proc.stderr
        message = log.read_text()
        assert message.startswith(f"TokenRejected: token rejected or no access to {hub.MODEL_REPO}")
        assert message.count("\n") == 1, "one line"
        if token:
            assert token not in proc.stdout + proc.stderr + message


def test_unknown_revision_is_named(endpoint: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.write_text("")
    proc = run_script(endpoint, tmp_path, revision="0" * 40, extra=["--termination-log", str(log)])
    assert proc.returncode == 4  # EXIT_CODES["RevisionNotFound"]
    assert f"revision {'0' * 40} not found in {hub.MODEL_REPO}" in proc.stderr
    assert log.read_text().startswith(f"RevisionNotFound: revision {'0' * 40} not found in {hub.MODEL_REPO}")


def test_termination_log_is_never_created(endpoint: str, tmp_path: Path) -> None:
    # Outside a container (the local stack runs pods as host processes) there is no file to write into.
    missing = tmp_path / "absent" / "termination-log"
    proc = run_script(endpoint, tmp_path, token=None, extra=["--termination-log", str(missing)])
    assert proc.returncode == 3 and not missing.exists()


def test_unreachable_endpoint_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub retries a refused connection for ~25 s before raising: explain() is checked
    # with the error it then raises.
    mod = load_script()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    item = mod.Item(hub.MODEL_REPO, hub.MODEL_REVISION, tmp_path)
    message = mod.explain(httpx.ConnectError("[Errno 111] Connection refused"), item)
    assert message.startswith(f"cannot reach http://127.0.0.1:9 to download {hub.MODEL_REPO} (ConnectError)")


def test_disk_full_before_download(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import constants

    mod = load_script()
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    usage = mod.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(mod.shutil, "disk_usage", lambda _p: usage._replace(free=1000))
    item = mod.Item(hub.MODEL_REPO, hub.MODEL_REVISION, tmp_path / "model")
    with pytest.raises(
        mod.DownloadError, match=r"disk full while downloading .* increase modelCache.pvc.size"
    ):
        mod.download(item, TOKEN, max_workers=1, interval=1.0)


def test_disk_full_during_download_is_explained(tmp_path: Path) -> None:
    mod = load_script()
    item = mod.Item(hub.MODEL_REPO, hub.MODEL_REVISION, tmp_path)
    message = mod.explain(OSError(errno.ENOSPC, "No space left on device"), item)
    assert message.startswith(f"disk full while downloading {hub.MODEL_REPO}")
    cause, _ = mod.classify(OSError(errno.ENOSPC, "No space left on device"), item)
    assert (cause, mod.EXIT_CODES[cause]) == ("DiskFull", 6)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--item", "a/b", "rev"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "--item" in proc.stderr
    nothing = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert nothing.returncode == 2 and "give --item or --cache-item" in nothing.stderr


def run_cache_item(
    endpoint: str, cache: Path, revision: str = hub.HUBERT_REVISION, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    """The init container's --cache-item for the semantic teacher."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(cache.parent / ".hf-home"))
    if token:
        env["HF_TOKEN"] = token
    args = [sys.executable, str(SCRIPT), "--progress-interval", "0.2"]
    args += ["--cache-item", hub.HUBERT_REPO, revision, str(cache)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)


def test_cache_item_writes_the_hub_cache_layout_then_skips(
    endpoint: str, state: hub.HubState, tmp_path: Path
) -> None:
    cache = tmp_path / "hub"
    proc = run_cache_item(endpoint, cache)
    assert proc.returncode == 0, proc.stderr
    storage = cache / "models--bosonai--hubert_base"
    snapshot = storage / "snapshots" / hub.HUBERT_REVISION
    for name, data in expected_files(hub.HUBERT_REPO).items():
        assert (snapshot / name).read_bytes() == data, name
    # snapshot_download at a commit writes no ref: the script points refs/main at it (the server asks for main).
    assert (storage / "refs" / "main").read_text() == hub.HUBERT_REVISION
    marker = json.loads((storage / ".higgs-download-complete").read_text())
    assert (marker["repo"], marker["revision"], marker["commit"]) == (
        hub.HUBERT_REPO,
        hub.HUBERT_REVISION,
        hub.HUBERT_REVISION,
    )
    assert "resolved" not in proc.stdout and "refs/main -> " in proc.stdout and TOKEN not in proc.stdout
    # The simulator's start-up (the server's offline lookup) finds it.
    hub_env = HubEnv(offline=True, hub_cache=str(cache), modules_cache=str(tmp_path / "modules"))
    assert cached_snapshot(hub.HUBERT_REPO, "main", hub_env) == str(snapshot)

    first = sum(state.downloads.values())
    assert first == len(expected_files(hub.HUBERT_REPO))
    again = run_cache_item("http://127.0.0.1:9", cache)  # offline restart: the marker skips it
    assert again.returncode == 0, again.stderr
    assert "marker present" in again.stdout and sum(state.downloads.values()) == first
    # A marker whose snapshot went missing does not skip.
    mod = load_script()
    (storage / "refs" / "main").write_text("0" * 40)
    assert not mod.is_complete(mod.cache_item(hub.HUBERT_REPO, hub.HUBERT_REVISION, cache))


def test_cache_item_at_a_branch_resolves_the_commit(endpoint: str, tmp_path: Path) -> None:
    proc = run_cache_item(endpoint, tmp_path / "hub", revision="main")
    assert proc.returncode == 0, proc.stderr
    assert f"{hub.HUBERT_REPO}: resolved main to {hub.HUBERT_REVISION}" in proc.stdout
    storage = tmp_path / "hub" / "models--bosonai--hubert_base"
    assert (storage / "refs" / "main").read_text() == hub.HUBERT_REVISION
    marker = json.loads((storage / ".higgs-download-complete").read_text())
    assert (marker["revision"], marker["commit"]) == ("main", hub.HUBERT_REVISION)


def test_cache_item_errors_are_explained(endpoint: str, tmp_path: Path) -> None:
    proc = run_cache_item(endpoint, tmp_path / "hub", token=None)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert f"ERROR: TokenRejected: token rejected or no access to {hub.HUBERT_REPO}" in proc.stderr
    assert not (tmp_path / "hub" / "models--bosonai--hubert_base" / ".higgs-download-complete").exists()
    proc = run_cache_item(endpoint, tmp_path / "hub", revision="1" * 40)
    assert proc.returncode == 4 and f"revision {'1' * 40} not found in {hub.HUBERT_REPO}" in proc.stderr


def test_hub_without_a_repository(tmp_path: Path) -> None:
    state = hub.new_state(token=TOKEN, weights_bytes=1024, without=[hub.HUBERT_REPO])
    assert set(state.repos) == {hub.MODEL_REPO, hub.TOKENIZER_REPO}
    with hub.running_hub(state) as url:
        proc = run_cache_item(url, tmp_path / "hub")
    assert proc.returncode == 5
    assert f"ERROR: RepositoryNotFound: repository {hub.HUBERT_REPO} not found on {url}" in proc.stderr
    with pytest.raises(ValueError, match="unknown repositories to leave out: x/y"):
        hub.new_state(without=["x/y"])


def test_fake_repos_have_the_files_the_server_opens() -> None:
    model, tokenizer, hubert = (
        expected_files(r) for r in (hub.MODEL_REPO, hub.TOKENIZER_REPO, hub.HUBERT_REPO)
    )
    assert {"config.json", "tokenizer_config.json", "tokenizer.json", "model.safetensors.index.json"} <= set(
        model
    )
    index = json.loads(model["model.safetensors.index.json"])
    assert set(index["weight_map"].values()) == {n for n in model if n.endswith(".safetensors")}
    config = json.loads(tokenizer["config.json"])
    assert (config["semantic_techer"], config["sample_rate"], config["n_q"]) == (
        "hubert_base_general",
        24000,
        8,
    )
    assert "model.pth" in tokenizer
    auto_map = json.loads(hubert["config.json"])["auto_map"]
    assert {v.split(".")[0] + ".py" for v in auto_map.values()} == {hub.HUBERT_MODULE} <= set(hubert)
    assert "model.safetensors" in hubert
    assert all("fake" in json.loads(data)["note"] for repo in (model, tokenizer, hubert)
               for name, data in repo.items() if name.endswith(".json"))  # fmt: skip
    assert hashlib.sha1(b"higgs_sim.hub fake bosonai/hubert_base").hexdigest() == hub.HUBERT_REVISION


def test_fake_hub_answers_like_the_hub(endpoint: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=endpoint, timeout=10) as http:
        assert http.get(f"/api/models/{hub.MODEL_REPO}/tree/{hub.MODEL_REVISION}").status_code == 401
        info = http.get(f"/api/models/{hub.MODEL_REPO}/revision/main", headers=auth).json()
        assert info["sha"] == hub.MODEL_REVISION
        assert {s["rfilename"] for s in info["siblings"]} == set(expected_files(hub.MODEL_REPO))
        url = f"/{hub.TOKENIZER_REPO}/resolve/{hub.TOKENIZER_REVISION}/model.pth"
        head = http.head(url, headers=auth)
        data = expected_files(hub.TOKENIZER_REPO)["model.pth"]
        assert head.headers["X-Repo-Commit"] == hub.TOKENIZER_REVISION
        assert head.headers["ETag"] == f'"{hub.git_blob_oid(data)}"'
        assert int(head.headers["Content-Length"]) == len(data)
        part = http.get(url, headers={**auth, "Range": "bytes=100-"})
        assert part.status_code == 206 and part.content == data[100:]
        missing = http.get(f"/api/models/{hub.MODEL_REPO}/tree/{'1' * 40}", headers=auth)
        assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RevisionNotFound"


def test_fake_hub_cli_refuses_non_loopback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "higgs_sim.hub", "--listen", "0.0.0.0:8089"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "loopback only" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "higgs_sim.hub", "--without", "x/y"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "argument --without: invalid choice: 'x/y'" in proc.stderr


def test_omni_layout_as_the_chart_downloads_it_starts_vllm_omni(endpoint: str, tmp_path: Path) -> None:
    """serverGeneration omni's download (the model with --item, the tokenizer with --cache-item at the
    fake transformers-native commits) gives what vLLM-Omni checks at start (OS8 pipeline match, OS11 the
    codec from the hub cache at refs/main, offline); `main` stays Boson's layout."""
    from higgs_sim.omni.startup import load_codec, load_model

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / ".hf-home"), HF_TOKEN=TOKEN)
    model_dir = tmp_path / "models" / hub.MODEL_REPO / hub.OMNI_MODEL_REVISION
    cache = tmp_path / "models" / "hub"
    args = [sys.executable, str(SCRIPT), "--progress-interval", "0.2"]
    args += ["--item", hub.MODEL_REPO, hub.OMNI_MODEL_REVISION, str(model_dir)]
    args += ["--cache-item", hub.TOKENIZER_REPO, hub.OMNI_TOKENIZER_REVISION, str(cache)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    omni = {(r.repo_id, r.revision): r.files for r in hub.omni_repos(64 * 1024)}
    for name, data in omni[(hub.MODEL_REPO, hub.OMNI_MODEL_REVISION)].items():
        assert (model_dir / name).read_bytes() == data, name
    storage = cache / "models--bosonai--higgs-audio-v2-tokenizer"
    assert (storage / "refs" / "main").read_text() == hub.OMNI_TOKENIZER_REVISION
    server_env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    info = load_model(str(model_dir), server_env)
    assert info.config["model_type"] == "higgs_audio_v2"
    assert load_codec(info, server_env) == str(storage / "snapshots" / hub.OMNI_TOKENIZER_REVISION)
    # `main` is still the Boson layout; an unknown commit is still 404.
    for revision, model_type in (("main", "higgs_audio"), (hub.OMNI_MODEL_REVISION, "higgs_audio_v2")):
        url = f"{endpoint}/{hub.MODEL_REPO}/resolve/{revision}/config.json"
        body = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert body["model_type"] == model_type, revision
    missing = httpx.get(
        f"{endpoint}/api/models/{hub.TOKENIZER_REPO}/tree/{'1' * 40}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert missing.status_code == 404


def test_omni_commits_left_out_with_their_repository() -> None:
    state = hub.new_state(weights_bytes=1024, without=[hub.TOKENIZER_REPO])
    assert set(state.other_revisions) == {(hub.MODEL_REPO, hub.OMNI_MODEL_REVISION)}
    assert len({hub.OMNI_MODEL_REVISION, hub.OMNI_TOKENIZER_REVISION, hub.MODEL_REVISION}) == 3


def test_init_container_keeps_the_cause_for_the_pod_status() -> None:
    # The script's line goes to the container's termination message file, named to it in its args (so
    # the two cannot drift apart); should it fail before writing it, the log tail.
    download = ck.container(ck.deployment_pod(ck.render()), "download-model", init=True)
    assert download["terminationMessagePolicy"] == "FallbackToLogsOnError"
    path = download["terminationMessagePath"]
    args = download["args"]
    assert args[args.index("--termination-log") + 1] == path == "/dev/termination-log"
    assert str(load_script().parse_args(args).termination_log) == path


def test_a_hub_listing_huge_files_is_refused_as_disk_full_before_any_write(tmp_path: Path) -> None:
    """`--listed-bytes`: the tree lists every file as a petabyte; the script's free-space check refuses
    before writing a byte, with the DiskFull cause and exit status the operator shows."""
    state = hub.new_state(token=TOKEN, weights_bytes=1024, listed_bytes=10**15)
    with hub.running_hub(state) as url:
        tree = httpx.get(
            f"{url}/api/models/{hub.MODEL_REPO}/tree/{hub.MODEL_REVISION}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()
        assert tree and {entry["size"] for entry in tree} == {10**15}
        proc = run_script(url, tmp_path)
    assert proc.returncode == 6, proc.stderr
    assert "DiskFull: disk full while downloading" in proc.stderr
    assert not state.downloads, "nothing may be fetched once the volume is known to be too small"
