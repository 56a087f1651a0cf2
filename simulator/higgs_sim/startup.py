"""Start-up as the real server does it: every file it opens before it serves, in its order.

Boson's server (boson-ai/higgs-audio-vllm@892184b4, a vLLM 0.8 fork) loads, after parsing flags:

1. the audio tokenizer in the API process, ``AudioTokenizer(args.audio_tokenizer_path or
   args.audio_tokenizer_type)`` (``vllm/entrypoints/bosonai/api_server.py`` ~line 183);
2. the model from ``--model`` (vLLM's get_config, tokenizer and weight loader): a local directory,
   or a hub id resolved through the Hugging Face cache at ``--revision`` (default main);
3. the audio tokenizer again in the engine's multimodal processor, from
   ``os.environ["HIGGS_AUDIO_TOKENIZER"]`` = ``args.audio_tokenizer_type`` only
   (``vllm/model_executor/models/higgs_audio.py`` lines 525-546), so a local path must go in
   ``--audio-tokenizer-type`` for both loads to use it.

Each tokenizer load (``load_higgs_audio_tokenizer``, ``higgs_audio_tokenizer.py`` lines 167-198) uses
the name as a directory when ``os.path.exists`` says so, else ``snapshot_download(name)`` at main;
reads ``config.json`` (or the legacy ``config.yaml``); builds ``HiggsAudioTokenizer``, whose
``semantic_techer`` field (sic; default ``hubert_base_general``) makes transformers load a semantic
teacher by repository name at main (boson-ai/higgs-audio@f04f5df,
``boson_multimodal/audio_processing/higgs_audio_tokenizer.py`` lines 56 and 79-96); then
``torch.load``s ``model.pth``.

Offline (``HF_HUB_OFFLINE=1``) a repository id resolves only through the cache: ``$HF_HUB_CACHE``
(default ``$HF_HOME/hub``), folder ``models--{org}--{name}``, ``refs/<revision>`` holding the commit
and ``snapshots/<commit>/``. Online, a repository that is not cached would be downloaded: the
simulator says so and carries on without fetching anything.

The functions take the environment as an argument; failures raise :class:`StartupError` with the
real library's message followed by a simulator hint (path, variable, fix).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from higgs_sim.config import SimConfig, StartupError, check_startup

log = logging.getLogger("higgs_sim.startup")

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's ENV_VARS_TRUE_VALUES
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# huggingface_hub validate_repo_id: "name" or "namespace/name", word characters, '-', '.', no '--'/'..'.
REPO_ID_RE = re.compile(r"^[\w\-.]{1,96}(/[\w\-.]{1,96})?$")

# semantic_techer -> (repository, trust_remote_code): boson_multimodal higgs_audio_tokenizer.py 79-96.
TEACHERS: dict[str, tuple[str, bool]] = {
    "hubert_base": ("facebook/hubert-base-ls960", False),
    "wavlm_base_plus": ("microsoft/wavlm-base-plus", False),
    "hubert_base_general": ("bosonai/hubert_base", True),
}
DEFAULT_TEACHER = "hubert_base_general"  # HiggsAudioTokenizer's default (line 56)
TEACHER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
DOCS_HINT = "the chart downloads it when semanticModel is set; see docs/server-contract.md"

# The real libraries' messages (huggingface_hub 0.x _snapshot_download, vLLM 0.8 config.py,
# transformers modeling_utils / tokenization_utils_base), so logs read like the real server's.
OFFLINE_SNAPSHOT = (
    "LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder for the specified "
    "revision on the local disk and outgoing traffic has been disabled. To enable repo look-ups and "
    "downloads online, set 'HF_HUB_OFFLINE=0' as environment variable."
)
VLLM_INVALID_MODEL = (
    "ValueError: Invalid repository ID or local directory specified: '{model}'.\n"
    "Please verify the following requirements:\n"
    "1. Provide a valid Hugging Face repository ID.\n"
    "2. Specify a local directory that contains a recognized configuration file.\n"
    "   - For Hugging Face models: ensure the presence of a 'config.json'.\n"
    "   - For Mistral models: ensure the presence of a 'params.json'."
)
TRANSFORMERS_OFFLINE = (
    "OSError: We couldn't connect to 'https://huggingface.co' to load this file, couldn't find it in "
    "the cached files and it looks like {repo} is not the path to a directory containing a file named "
    "{file}.\nCheckout your internet connection or see how to run the library in offline mode at "
    "'https://huggingface.co/docs/transformers/installation#offline-mode'."
)


@dataclass(frozen=True)
class HubEnv:
    """Where huggingface_hub and transformers look, from the environment (as they read it)."""

    offline: bool
    hub_cache: str
    modules_cache: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HubEnv:
        home_dir = env.get("HOME") or os.path.expanduser("~")
        xdg = env.get("XDG_CACHE_HOME") or os.path.join(home_dir, ".cache")
        hf_home = os.path.expanduser(env.get("HF_HOME") or os.path.join(xdg, "huggingface"))
        hub_cache = (
            env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(hf_home, "hub")
        )
        modules = env.get("HF_MODULES_CACHE") or os.path.join(hf_home, "modules")
        offline = env.get("HF_HUB_OFFLINE", "").upper() in TRUE_VALUES
        return cls(offline, os.path.expanduser(hub_cache), os.path.expanduser(modules))

    def storage(self, repo_id: str) -> str:
        return os.path.join(self.hub_cache, "models--" + repo_id.replace("/", "--"))


@dataclass
class StartupReport:
    """What start-up resolved: local directories (None where a download would happen)."""

    model_dir: str | None = None
    api_tokenizer_dir: str | None = None
    engine_tokenizer_dir: str | None = None
    teachers: dict[str, str | None] = field(default_factory=dict)  # repository -> snapshot dir
    would_download: list[str] = field(default_factory=list)


class CacheMiss(Exception):
    """A repository (or one of its files) is not in the cache; args[0] says what is missing."""


def _fail(message: str, hint: str) -> StartupError:
    return StartupError(f"{message}\n[simulator] {hint}")


def _opened(what: str, path: str) -> None:
    log.info("%s: loading %s", what, path)


def cached_snapshot(repo_id: str, revision: str, hub: HubEnv) -> str:
    """The snapshot folder of `repo_id` at `revision` in the cache, as huggingface_hub finds it offline.

    A 40-hex revision is a commit; anything else is looked up in ``refs/<revision>``.
    Raises :class:`CacheMiss` naming the missing path.
    """
    storage = hub.storage(repo_id)
    if COMMIT_RE.match(revision):
        commit = revision
    else:
        ref = os.path.join(storage, "refs", revision)
        try:
            with open(ref, encoding="utf-8") as fh:
                commit = fh.read().strip()
        except OSError:
            if not os.path.isdir(storage):
                raise CacheMiss(f"{storage} does not exist") from None
            raise CacheMiss(f"{ref} is missing (it holds the commit that '{revision}' names)") from None
    snapshot = os.path.join(storage, "snapshots", commit)
    if not os.path.isdir(snapshot):
        raise CacheMiss(f"{snapshot} is missing (refs/{revision} names commit {commit})")
    return snapshot


def _would_download(report: StartupReport, repo_id: str, revision: str, hub: HubEnv, why: str) -> None:
    log.info(
        "%s@%s is not in the Hugging Face cache (%s): the real server would download it into %s now "
        "(simulator: nothing fetched)",
        repo_id,
        revision,
        why,
        hub.storage(repo_id),
    )
    report.would_download.append(repo_id)


def _require_repo_id(name: str, message: str, hint: str) -> None:
    if not REPO_ID_RE.match(name) or "--" in name or ".." in name:
        raise _fail(message, hint)


def _read_json(path: str, what: str, hint: str) -> dict[str, object]:
    _opened(what, path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise _fail(f"{type(exc).__name__}: {exc}", f"{path} is not valid JSON; {hint}") from None
    if not isinstance(data, dict):
        raise _fail(f"ValueError: {path} is not a JSON object", hint)
    return data


# --- the generation model -------------------------------------------------------------------------


def _model_gap(directory: str) -> str | None:
    """What a model directory lacks of the files vLLM opens, or None."""
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        if not os.path.isfile(os.path.join(directory, name)):
            return f"{os.path.join(directory, name)} is missing"
    if not any(f.endswith(".safetensors") for f in os.listdir(directory)):
        return f"no *.safetensors file in {directory}"
    return None


def load_model(name: str, revision: str | None, hub: HubEnv, report: StartupReport) -> None:
    """vLLM's model load: config.json, the text tokenizer, the safetensors weights."""
    invalid = VLLM_INVALID_MODEL.format(model=name)
    if os.path.exists(name):
        directory = name
    else:
        where = "an absolute path" if os.path.isabs(name) else "a path"
        _require_repo_id(
            name,
            invalid,
            f"--model {name!r} does not exist ({where} is read as a local directory): check the cache "
            "volume mount and the download step",
        )
        rev = revision or "main"
        try:
            directory = cached_snapshot(name, rev, hub)
            gap = None if hub.offline else _model_gap(directory)
            if gap:  # online, the real server downloads what the cached snapshot lacks
                raise CacheMiss(gap)
        except CacheMiss as miss:
            if not hub.offline:
                _would_download(report, name, rev, hub, str(miss))
                return
            raise _fail(
                invalid,
                f"--model {name} at revision {rev} is not in the Hugging Face cache HF_HUB_CACHE="
                f"{hub.hub_cache} and HF_HUB_OFFLINE=1: {miss}. Pass the downloaded directory with "
                "--model (the chart passes <modelCache.mountPath>/<repository>/<revision>) or fill the cache.",
            ) from None
    report.model_dir = directory
    config = os.path.join(directory, "config.json")
    if not os.path.isfile(config):
        raise _fail(invalid, f"{config} is missing: the model directory is incomplete (re-run the download)")
    _read_json(config, "model config", "re-run the download")
    for tok in ("tokenizer_config.json", "tokenizer.json"):
        path = os.path.join(directory, tok)
        if not os.path.isfile(path):
            raise _fail(
                f"OSError: Can't load tokenizer for '{directory}'. If you were trying to load it from "
                "'https://huggingface.co/models', make sure you don't have a local directory with the "
                f"same name. Otherwise, make sure '{directory}' is the correct path to a directory "
                "containing all relevant files for a PreTrainedTokenizerFast tokenizer.",
                f"{path} is missing: the model directory is incomplete (re-run the download)",
            )
        _opened("model tokenizer", path)
    weights = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
    if not weights:
        raise _fail(
            f"RuntimeError: Cannot find any model weights with `{directory}`",
            f"no *.safetensors file in {directory}: the model directory is incomplete (re-run the download)",
        )
    for weight in weights:
        _opened("model weights", os.path.join(directory, weight))


# --- the audio tokenizer and its semantic teacher --------------------------------------------------


def _tokenizer_config(directory: str, hint: str) -> dict[str, object]:
    path = os.path.join(directory, "config.json")
    if os.path.exists(path):
        return _read_json(path, "audio tokenizer config", hint)
    legacy = os.path.join(directory, "config.yaml")
    if os.path.exists(legacy):
        _opened("audio tokenizer config (legacy)", legacy)
        return _legacy_config(legacy, hint)
    raise _fail(
        f"ValueError: No config file found in {directory}",
        f"{path} (or config.yaml) is missing: {hint}",
    )


def _legacy_config(path: str, hint: str) -> dict[str, object]:
    """``OmegaConf.load(config.yaml).generator.config``."""
    try:
        import yaml  # the simulator's container image may lack it
    except ImportError:
        log.warning("cannot read %s without PyYAML: assuming semantic_techer %s", path, DEFAULT_TEACHER)
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        config = data["generator"]["config"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise _fail(f"{type(exc).__name__}: {exc}", f"{path} has no generator.config; {hint}") from None
    return dict(config)


def _ensure_modules_cache(hub: HubEnv, repo_id: str) -> None:
    """transformers' init_hf_modules: create HF_MODULES_CACHE and its __init__.py for remote code."""
    init = os.path.join(hub.modules_cache, "__init__.py")
    try:
        os.makedirs(hub.modules_cache, exist_ok=True)
        if not os.path.exists(init):
            with open(init, "w", encoding="utf-8"):
                pass
        if not os.access(hub.modules_cache, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", hub.modules_cache)
    except OSError as exc:
        raise _fail(
            f"{type(exc).__name__}: {exc}",
            f"transformers copies {repo_id}'s code (trust_remote_code) into HF_MODULES_CACHE="
            f"{hub.modules_cache} (default $HF_HOME/modules), which must be writable: point HF_HOME or "
            "HF_MODULES_CACHE at a writable directory (the chart keeps HF_HOME on the /tmp scratch volume).",
        ) from None


def _remote_code_files(config: Mapping[str, object]) -> list[str]:
    """Module files an ``auto_map`` names ("module.Class", "repo--module.Class" or [slow, fast])."""
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        return []
    refs: list[str] = []
    for value in auto_map.values():
        refs.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    return sorted({ref.split("--")[-1].rsplit(".", 1)[0] + ".py" for ref in refs})


def load_teacher(teacher: str, hub: HubEnv, report: StartupReport, tokenizer: str, config_path: str) -> None:
    """``AutoModel.from_pretrained(repo[, trust_remote_code=True])`` at main."""
    if teacher not in TEACHERS:
        raise _fail(
            "AttributeError: 'HiggsAudioTokenizer' object has no attribute 'semantic_model'",
            f"semantic_techer {teacher!r} in {config_path} is none of {', '.join(TEACHERS)}",
        )
    repo, remote_code = TEACHERS[teacher]
    if repo in report.teachers:
        return  # transformers loads it again from the same files
    hint = (
        f"{tokenizer}'s semantic_techer {teacher!r} loads {repo} at revision main from HF_HUB_CACHE="
        f"{hub.hub_cache} ({{miss}}); put it there with refs/main holding the commit and "
        f"snapshots/<commit>/ ({DOCS_HINT})"
    )
    if os.path.isdir(repo):  # transformers also takes a directory of that name (relative to the cwd)
        snapshot = repo
    else:
        try:
            snapshot = cached_snapshot(repo, "main", hub)
            if not os.path.isfile(os.path.join(snapshot, "config.json")):
                raise CacheMiss(f"{os.path.join(snapshot, 'config.json')} is missing")
        except CacheMiss as miss:
            if hub.offline:
                message = TRANSFORMERS_OFFLINE.format(repo=repo, file="config.json")
                raise _fail(message, hint.format(miss=miss)) from None
            report.teachers[repo] = None
            _would_download(report, repo, "main", hub, str(miss))
            if remote_code:  # after the download transformers imports its code from there
                _ensure_modules_cache(hub, repo)
            return
    report.teachers[repo] = snapshot
    config = _read_json(os.path.join(snapshot, "config.json"), f"semantic teacher {repo} config", DOCS_HINT)
    if remote_code:
        _ensure_modules_cache(hub, repo)
        for module in _remote_code_files(config):
            path = os.path.join(snapshot, module)
            if not os.path.isfile(path):
                if not hub.offline:
                    _would_download(report, repo, "main", hub, f"{path} is missing")
                    return
                raise _fail(
                    f"OSError: {repo} does not appear to have a file named {module}. Checkout "
                    f"'https://huggingface.co/{repo}/tree/main' for available files.",
                    hint.format(miss=f"{path} is missing; its config.json auto_map names it"),
                )
            _opened(f"semantic teacher {repo} code", path)
    weights = [
        os.path.join(snapshot, w) for w in TEACHER_WEIGHTS if os.path.isfile(os.path.join(snapshot, w))
    ]
    if not weights:
        if not hub.offline:
            _would_download(report, repo, "main", hub, f"no {' or '.join(TEACHER_WEIGHTS)} in {snapshot}")
            return
        raise _fail(
            f"OSError: {repo} does not appear to have a file named pytorch_model.bin, model.safetensors, "
            "tf_model.h5, model.ckpt or flax_model.msgpack.",
            hint.format(miss=f"no {' or '.join(TEACHER_WEIGHTS)} in {snapshot}"),
        )
    _opened(f"semantic teacher {repo} weights", weights[0])


def load_audio_tokenizer(
    name: str, flag: str, process: str, hub: HubEnv, report: StartupReport
) -> str | None:
    """``load_higgs_audio_tokenizer(name)``: its directory, or None when it would be downloaded."""
    fix = (
        f"pass the downloaded directory in {flag} (the chart passes "
        "<modelCache.mountPath>/<repository>/<revision> in --audio-tokenizer-type)"
    )
    log.info("%s: loading the audio tokenizer %s (%s)", process, name, flag)
    if os.path.exists(name):
        directory = name
    else:
        message = (
            f"HFValidationError: Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{name}'. "
            "Use `repo_type` argument if needed."
        )
        _require_repo_id(
            name, message, f"{flag} {name!r} does not exist (a path is read as a local directory)"
        )
        if name in report.would_download:
            log.info("%s: %s was downloaded by the load above (simulated)", process, name)
            return None
        try:
            directory = cached_snapshot(name, "main", hub)
        except CacheMiss as miss:
            if not hub.offline:
                _would_download(report, name, "main", hub, str(miss))
                # Its config is unknown without the download: the tokenizer's default teacher.
                load_teacher(DEFAULT_TEACHER, hub, report, name, f"{name}/config.json")
                return None
            raise _fail(
                OFFLINE_SNAPSHOT,
                f"{flag} {name} is loaded by snapshot_download at revision main and is not in "
                f"HF_HUB_CACHE={hub.hub_cache} with HF_HUB_OFFLINE=1: {miss}; {fix}",
            ) from None
    config = _tokenizer_config(directory, fix)
    teacher = config.get("semantic_techer", DEFAULT_TEACHER)
    load_teacher(str(teacher), hub, report, name, os.path.join(directory, "config.json"))
    weights = os.path.join(directory, "model.pth")
    if not os.path.isfile(weights):
        raise _fail(
            f"FileNotFoundError: [Errno 2] No such file or directory: '{weights}'",
            f"the audio tokenizer's weights {weights} are missing: {fix}",
        )
    _opened("audio tokenizer weights", weights)
    return directory


def run_startup(config: SimConfig, env: Mapping[str, str]) -> StartupReport:
    """The whole load chain, then the KV-cache check; raises :class:`StartupError` on the first failure."""
    hub = HubEnv.from_env(env)
    log.info(
        "Hugging Face cache %s (HF_HUB_OFFLINE=%s), remote code cache %s",
        hub.hub_cache,
        "1" if hub.offline else "0",
        hub.modules_cache,
    )
    report = StartupReport()
    tokenizer_type = config.audio_tokenizer_type
    if tokenizer_type:
        api_name = config.audio_tokenizer_path or tokenizer_type
        flag = "--audio-tokenizer-path" if config.audio_tokenizer_path else "--audio-tokenizer-type"
        report.api_tokenizer_dir = load_audio_tokenizer(api_name, flag, "API process", hub, report)
    load_model(config.model, config.revision, hub, report)
    if tokenizer_type:
        # The engine reads HIGGS_AUDIO_TOKENIZER = --audio-tokenizer-type; --audio-tokenizer-path is unused.
        report.engine_tokenizer_dir = load_audio_tokenizer(
            tokenizer_type, "--audio-tokenizer-type", "engine", hub, report
        )
    check_startup(config)
    return report
