"""Start-up load chain (higgs_sim.startup): model, audio tokenizer (twice), semantic teacher, HF cache.

Tiny trees in tmp_path stand in for the downloaded directories and the Hugging Face cache; the fake
hub's repositories (higgs_sim.hub) give the file sets.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest

from higgs_sim import hub
from higgs_sim.config import StartupError, parse_args
from higgs_sim.startup import DOCS_HINT, HubEnv, StartupReport, cached_snapshot, run_startup
from tests.support.simulator import launch, run_cli

FILES = {r.repo_id: r.files for r in hub.default_repos(64)}


def write_files(root: Path, files: dict[str, bytes], skip: tuple[str, ...] = ()) -> Path:
    for name, data in files.items():
        if name not in skip:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root


def model_dir(tmp: Path, skip: tuple[str, ...] = ()) -> Path:
    return write_files(tmp / "model", FILES[hub.MODEL_REPO], skip)


def tokenizer_dir(
    tmp: Path, skip: tuple[str, ...] = (), config: bytes | None = None, name: str = "tok"
) -> Path:
    root = write_files(tmp / name, FILES[hub.TOKENIZER_REPO], skip)
    if config is not None:
        (root / "config.json").write_bytes(config)
    return root


def cache_repo(
    cache: Path,
    repo: str,
    commit: str,
    files: dict[str, bytes],
    *,
    ref: str | None = "main",
    snapshot: bool = True,
    skip: tuple[str, ...] = (),
) -> Path:
    """The huggingface_hub cache layout: models--org--name/{refs/<ref>, snapshots/<commit>/}."""
    storage = cache / ("models--" + repo.replace("/", "--"))
    storage.mkdir(parents=True, exist_ok=True)
    if ref:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    snap = storage / "snapshots" / commit
    if snapshot:
        write_files(snap, files, skip)
    return snap


def cache_hubert(cache: Path, **kwargs: object) -> Path:
    return cache_repo(cache, hub.HUBERT_REPO, hub.HUBERT_REVISION, FILES[hub.HUBERT_REPO], **kwargs)  # type: ignore[arg-type]


def env(tmp: Path, offline: bool = True, **extra: str) -> dict[str, str]:
    values = {"HF_HOME": str(tmp / "hf-home"), "HF_HUB_CACHE": str(tmp / "hub"), **extra}
    if offline:
        values["HF_HUB_OFFLINE"] = "1"
    return values


def start(tmp: Path, *args: str, **env_extra: str) -> StartupReport:
    return run_startup(parse_args(list(args)), env(tmp, **env_extra))  # type: ignore[arg-type]


def failure(tmp: Path, *args: str, offline: bool = True, **extra: str) -> str:
    with pytest.raises(StartupError) as exc:
        run_startup(parse_args(list(args)), env(tmp, offline, **extra))
    return str(exc.value)


def local_args(tmp: Path) -> list[str]:
    return ["--model", str(model_dir(tmp)), "--audio-tokenizer-type", str(tokenizer_dir(tmp))]


# --- environment --------------------------------------------------------------------------------


def test_hub_env_follows_huggingface_hub_defaults(tmp_path: Path) -> None:
    plain = HubEnv.from_env({"HOME": "/h"})
    assert (plain.offline, plain.hub_cache) == (False, "/h/.cache/huggingface/hub")
    assert plain.modules_cache == "/h/.cache/huggingface/modules"
    assert HubEnv.from_env({"XDG_CACHE_HOME": "/x"}).hub_cache == "/x/huggingface/hub"
    home = HubEnv.from_env({"HF_HOME": "/hf", "HF_HUB_OFFLINE": "true"})
    assert (home.offline, home.hub_cache, home.modules_cache) == (True, "/hf/hub", "/hf/modules")
    own = HubEnv.from_env({"HF_HOME": "/hf", "HF_HUB_CACHE": "/c", "HF_MODULES_CACHE": "/m"})
    assert (own.hub_cache, own.modules_cache) == ("/c", "/m")
    assert own.storage("bosonai/hubert_base") == "/c/models--bosonai--hubert_base"


def test_cached_snapshot_reads_refs_or_takes_a_commit(tmp_path: Path) -> None:
    hub_env = HubEnv.from_env(env(tmp_path))
    snap = cache_hubert(tmp_path / "hub")
    assert cached_snapshot(hub.HUBERT_REPO, "main", hub_env) == str(snap)
    assert cached_snapshot(hub.HUBERT_REPO, hub.HUBERT_REVISION, hub_env) == str(snap)


# --- success paths --------------------------------------------------------------------------------


@pytest.mark.contract("S1", "S3", "S4", "S6")
def test_local_directories_offline_with_hubert_cached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="higgs_sim.startup")
    snap = cache_hubert(tmp_path / "hub")
    report = start(tmp_path, *local_args(tmp_path))
    assert report.model_dir == str(tmp_path / "model")
    assert report.api_tokenizer_dir == report.engine_tokenizer_dir == str(tmp_path / "tok")
    assert report.teachers == {hub.HUBERT_REPO: str(snap)} and report.would_download == []
    # Each file opened is logged, like the real server's loading lines.
    for path in (
        tmp_path / "tok" / "config.json",
        snap / "config.json",
        snap / hub.HUBERT_MODULE,
        snap / "model.safetensors",
        tmp_path / "tok" / "model.pth",
        tmp_path / "model" / "config.json",
        tmp_path / "model" / "tokenizer.json",
        tmp_path / "model" / "model-00002-of-00002.safetensors",
    ):
        assert f"loading {path}" in caplog.text, path
    # transformers' init_hf_modules: the remote-code cache exists with its __init__.py.
    assert (tmp_path / "hf-home" / "modules" / "__init__.py").is_file()


@pytest.mark.contract("S1", "S5")
def test_repo_ids_resolve_through_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    cache_hubert(cache)
    tok = cache_repo(cache, hub.TOKENIZER_REPO, hub.TOKENIZER_REVISION, FILES[hub.TOKENIZER_REPO])
    # The model at --revision <commit>: no refs needed (as huggingface_hub).
    model = cache_repo(cache, hub.MODEL_REPO, hub.MODEL_REVISION, FILES[hub.MODEL_REPO], ref=None)
    args = [
        "--model",
        hub.MODEL_REPO,
        "--revision",
        hub.MODEL_REVISION,
        "--audio-tokenizer-type",
        hub.TOKENIZER_REPO,
    ]
    report = start(tmp_path, *args)
    assert (report.model_dir, report.engine_tokenizer_dir) == (str(model), str(tok))
    # At a branch it needs refs/<branch>.
    cache_repo(cache, hub.MODEL_REPO, hub.MODEL_REVISION, FILES[hub.MODEL_REPO], ref="release")
    assert start(tmp_path, *args[:2], "--revision", "release", *args[4:]).model_dir == str(model)


@pytest.mark.contract("S2")
def test_tokenizer_path_is_for_the_api_process_only(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub")
    path_dir = tokenizer_dir(tmp_path, name="tok-path")
    args = ["--model", str(model_dir(tmp_path)), "--audio-tokenizer-path", str(path_dir)]
    report = start(tmp_path, *args, "--audio-tokenizer-type", str(tokenizer_dir(tmp_path)))
    assert (report.api_tokenizer_dir, report.engine_tokenizer_dir) == (str(path_dir), str(tmp_path / "tok"))
    # The engine still loads --audio-tokenizer-type (its default, a repo id not in the offline cache).
    message = failure(tmp_path, *args)
    assert "LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder" in message
    assert (
        "--audio-tokenizer-type xcodec_tps25_0215 is loaded by snapshot_download at revision main" in message
    )


@pytest.mark.contract("S3", "S4")
def test_legacy_config_yaml_and_other_teachers(tmp_path: Path) -> None:
    tok = tokenizer_dir(tmp_path, skip=("config.json",))
    (tok / "config.yaml").write_text(
        "generator:\n  config:\n    semantic_techer: wavlm_base_plus\n    n_q: 8\n"
    )
    wavlm = cache_repo(tmp_path / "hub", "microsoft/wavlm-base-plus", "a" * 40, {"config.json": b"{}"})
    (wavlm / "pytorch_model.bin").write_bytes(b"weights")
    # No remote code for this teacher: an unusable modules cache does not matter.
    (tmp_path / "file").write_text("")
    report = start(
        tmp_path,
        "--model",
        str(model_dir(tmp_path)),
        "--audio-tokenizer-type",
        str(tok),
        HF_MODULES_CACHE=str(tmp_path / "file" / "m"),
    )
    assert report.teachers == {"microsoft/wavlm-base-plus": str(wavlm)}


@pytest.mark.contract("S1", "S3")
def test_online_mode_would_download_and_carries_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="higgs_sim.startup")
    args = ["--model", hub.MODEL_REPO, "--audio-tokenizer-type", hub.TOKENIZER_REPO]
    report = start(tmp_path, *args, offline=False)
    assert report.would_download == [hub.TOKENIZER_REPO, hub.HUBERT_REPO, hub.MODEL_REPO]
    assert report.model_dir is None and report.teachers == {hub.HUBERT_REPO: None}
    storage = tmp_path / "hub" / "models--bosonai--hubert_base"
    assert (
        f"bosonai/hubert_base@main is not in the Hugging Face cache ({storage} does not exist): the real "
        f"server would download it into {storage} now (simulator: nothing fetched)"
    ) in caplog.text
    assert not storage.exists(), "nothing is fetched"
    # A cached snapshot that lacks files is completed by the download.
    cache_repo(tmp_path / "hub", hub.MODEL_REPO, hub.MODEL_REVISION, {"config.json": b"{}"})
    report = start(tmp_path, *args, offline=False)
    assert hub.MODEL_REPO in report.would_download and report.model_dir is None
    # A local tokenizer whose teacher is not cached: only the teacher would be downloaded.
    report = start(tmp_path, *local_args(tmp_path), offline=False)
    assert report.would_download == [hub.HUBERT_REPO] and report.model_dir == str(tmp_path / "model")


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.contract("S4", "S5")
def test_no_hubert_in_the_cache(tmp_path: Path) -> None:
    message = failure(tmp_path, *local_args(tmp_path))
    assert message.startswith(
        "OSError: We couldn't connect to 'https://huggingface.co' to load this file, couldn't find it in the "
        "cached files and it looks like bosonai/hubert_base is not the path to a directory containing a file "
        "named config.json.\nCheckout your internet connection or see how to run the library in offline mode at "
        "'https://huggingface.co/docs/transformers/installation#offline-mode'."
    )
    storage = tmp_path / "hub" / "models--bosonai--hubert_base"
    assert "semantic_techer 'hubert_base_general' loads bosonai/hubert_base at revision main" in message
    assert f"HF_HUB_CACHE={tmp_path / 'hub'} ({storage} does not exist)" in message
    assert DOCS_HINT in message


@pytest.mark.contract("S5")
def test_hubert_refs_main_missing(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub", ref=None)  # e.g. snapshot_download(revision=<commit>) writes no ref
    message = failure(tmp_path, *local_args(tmp_path))
    ref = tmp_path / "hub" / "models--bosonai--hubert_base" / "refs" / "main"
    assert "is not the path to a directory containing a file named config.json" in message
    assert f"{ref} is missing (it holds the commit that 'main' names)" in message


@pytest.mark.contract("S5")
def test_hubert_snapshot_missing(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub", snapshot=False)
    message = failure(tmp_path, *local_args(tmp_path))
    snap = tmp_path / "hub" / "models--bosonai--hubert_base" / "snapshots" / hub.HUBERT_REVISION
    assert f"{snap} is missing (refs/main names commit {hub.HUBERT_REVISION})" in message


def test_hubert_remote_code_and_weights_missing(tmp_path: Path) -> None:
    snap = cache_hubert(tmp_path / "hub", skip=(hub.HUBERT_MODULE,))
    message = failure(tmp_path, *local_args(tmp_path))
    assert (
        f"OSError: bosonai/hubert_base does not appear to have a file named {hub.HUBERT_MODULE}." in message
    )
    assert f"{snap / hub.HUBERT_MODULE} is missing; its config.json auto_map names it" in message
    (snap / hub.HUBERT_MODULE).write_text("")
    (snap / "model.safetensors").unlink()
    message = failure(tmp_path, *local_args(tmp_path))
    assert (
        "OSError: bosonai/hubert_base does not appear to have a file named pytorch_model.bin, model.safetensors"
        in message
    )
    assert f"no model.safetensors or pytorch_model.bin in {snap}" in message


@pytest.mark.contract("S6")
def test_unwritable_modules_cache(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub")
    (tmp_path / "file").write_text("")  # a path under a regular file cannot be created, even by root
    modules = tmp_path / "file" / "modules"
    message = failure(tmp_path, *local_args(tmp_path), HF_MODULES_CACHE=str(modules))
    assert message.startswith(f"NotADirectoryError: [Errno 20] Not a directory: '{modules}'")
    assert f"HF_MODULES_CACHE={modules} (default $HF_HOME/modules), which must be writable" in message


@pytest.mark.contract("S3")
def test_tokenizer_config_missing(tmp_path: Path) -> None:
    tok = tokenizer_dir(tmp_path, skip=("config.json",))
    message = failure(tmp_path, "--model", str(model_dir(tmp_path)), "--audio-tokenizer-type", str(tok))
    assert message.startswith(f"ValueError: No config file found in {tok}\n[simulator] {tok / 'config.json'}")


@pytest.mark.contract("S3")
def test_tokenizer_weights_missing(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub")
    tok = tokenizer_dir(tmp_path, skip=("model.pth",))
    message = failure(tmp_path, "--model", str(model_dir(tmp_path)), "--audio-tokenizer-type", str(tok))
    assert message.startswith(
        f"FileNotFoundError: [Errno 2] No such file or directory: '{tok / 'model.pth'}'"
    )


@pytest.mark.contract("S4")
def test_unknown_semantic_teacher(tmp_path: Path) -> None:
    tok = tokenizer_dir(tmp_path, config=b'{"semantic_techer": "whisper"}')
    message = failure(tmp_path, "--model", str(model_dir(tmp_path)), "--audio-tokenizer-type", str(tok))
    assert message.startswith(
        "AttributeError: 'HiggsAudioTokenizer' object has no attribute 'semantic_model'"
    )
    assert "semantic_techer 'whisper'" in message and "hubert_base_general" in message


@pytest.mark.contract("S1")
@pytest.mark.parametrize(
    ("skip", "needle"),
    [
        ("config.json", "ValueError: Invalid repository ID or local directory specified: '{m}'."),
        ("tokenizer.json", "OSError: Can't load tokenizer for '{m}'."),
        ("tokenizer_config.json", "OSError: Can't load tokenizer for '{m}'."),
        ("*.safetensors", "RuntimeError: Cannot find any model weights with `{m}`"),
    ],
)
def test_model_directory_incomplete(tmp_path: Path, skip: str, needle: str) -> None:
    cache_hubert(tmp_path / "hub")
    skips = (
        tuple(n for n in FILES[hub.MODEL_REPO] if n.endswith(".safetensors"))
        if skip.startswith("*")
        else (skip,)
    )
    model = model_dir(tmp_path, skip=skips)
    message = failure(tmp_path, "--model", str(model), "--audio-tokenizer-type", str(tokenizer_dir(tmp_path)))
    assert message.startswith(needle.format(m=model)), message
    assert "the model directory is incomplete (re-run the download)" in message


def test_model_config_is_not_json(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub")
    model = model_dir(tmp_path)
    (model / "config.json").write_text("{")
    message = failure(tmp_path, "--model", str(model), "--audio-tokenizer-type", str(tokenizer_dir(tmp_path)))
    assert message.startswith("JSONDecodeError: Expecting property name") and "is not valid JSON" in message


def test_missing_absolute_model_path(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub")
    missing = tmp_path / "nowhere"
    for offline in (True, False):  # a path is never a repository id, online or not
        message = failure(
            tmp_path,
            "--model",
            str(missing),
            "--audio-tokenizer-type",
            str(tokenizer_dir(tmp_path)),
            offline=offline,
        )
        assert message.startswith(
            f"ValueError: Invalid repository ID or local directory specified: '{missing}'."
        )
        assert "does not exist (an absolute path is read as a local directory)" in message


@pytest.mark.contract("S1", "S3", "S5")
def test_offline_repo_ids_not_cached(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub")
    message = failure(
        tmp_path, "--model", hub.MODEL_REPO, "--audio-tokenizer-type", str(tokenizer_dir(tmp_path))
    )
    assert message.startswith(
        f"ValueError: Invalid repository ID or local directory specified: '{hub.MODEL_REPO}'."
    )
    assert f"--model {hub.MODEL_REPO} at revision main is not in the Hugging Face cache" in message
    message = failure(tmp_path, *local_args(tmp_path)[:2], "--audio-tokenizer-type", hub.TOKENIZER_REPO)
    assert message.startswith(
        "LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder for the specified revision "
        "on the local disk and outgoing traffic has been disabled. To enable repo look-ups and downloads "
        "online, set 'HF_HUB_OFFLINE=0' as environment variable."
    )
    # A refs/main without its snapshot folder.
    cache_repo(tmp_path / "hub", hub.TOKENIZER_REPO, hub.TOKENIZER_REVISION, {}, snapshot=False)
    message = failure(tmp_path, *local_args(tmp_path)[:2], "--audio-tokenizer-type", hub.TOKENIZER_REPO)
    assert f"snapshots/{hub.TOKENIZER_REVISION} is missing (refs/main names commit" in message


def test_kv_cache_check_comes_last(tmp_path: Path) -> None:
    cache_hubert(tmp_path / "hub")
    message = failure(tmp_path, *local_args(tmp_path), "--gpu-memory-utilization", "0.1")
    assert message.startswith("No available memory for the cache blocks")


# --- the real process -----------------------------------------------------------------------------


@pytest.mark.contract("S4", "S5")
def test_process_exits_1_without_hubert_and_serves_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env(tmp_path).items():
        monkeypatch.setenv(name, value)
    args = local_args(tmp_path)
    proc = run_cli(*args, "--port", "1")
    assert proc.returncode == 1, proc.stderr
    assert "higgs-sim cannot start: OSError: We couldn't connect to 'https://huggingface.co'" in proc.stderr
    assert (
        "bosonai/hubert_base is not the path to a directory" in proc.stderr and "Traceback" not in proc.stderr
    )
    cache_hubert(tmp_path / "hub")
    sim = launch(args, tmp_path)
    try:
        sim.wait_healthy()
        assert httpx.get(f"{sim.url}/health").status_code == 200
        assert f"loading {tmp_path / 'tok' / 'model.pth'}" in sim.log()
    finally:
        sim.stop()
    assert os.path.isfile(tmp_path / "hf-home" / "modules" / "__init__.py")
