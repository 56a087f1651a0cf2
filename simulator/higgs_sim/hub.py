"""A tiny fake Hugging Face Hub: just what `huggingface_hub.snapshot_download` needs.

It serves a few small fake repositories at fixed revisions on a loopback address, so the chart's
model-download script runs its real code path (tree listing, HEAD for metadata, GET of each file)
in tests and in `make demo` without any traffic leaving 127.0.0.0/8. It is a test double: the
files hold placeholder bytes, not weights, and every JSON file says so in a `note` field.

The repositories have the file sets the real server opens at start (see higgs_sim.startup): the
generation model (config, tokenizer files, sharded safetensors with their index), the audio
tokenizer (config.json naming its semantic teacher, model.pth) and that teacher,
`bosonai/hubert_base` (config.json whose `auto_map` names a module file, the module, weights).
`main` resolves to each repository's commit. `--without REPO` leaves one out; `--listed-bytes N` lists
every file as N bytes (a repository too big for the cache volume, for the downloader's space check).

The model and the audio tokenizer also have a second commit, in the transformers-native layout that
vLLM-Omni loads (docs/server-contract-omni.md OS8-OS11; Boson rewrote the real repositories to it on
2026-04-04): :data:`OMNI_MODEL_REVISION` (config.json with ``model_type: higgs_audio_v2``, the
processor and tokenizer files, sharded safetensors) and :data:`OMNI_TOKENIZER_REVISION` (config.json
with ``model_type: higgs_audio_v2_tokenizer``, model.safetensors). They are fake 40-hex ids that stand
in for the real commits, which are not confirmed (OS10): use them on the local stack only. ``main``
still resolves to the Boson-layout commits above.

Endpoints (the ones huggingface_hub 2.4 calls):
  GET  /api/models/{repo}/revision/{rev}   repo info (sha, siblings) for branch names such as `main`
  GET  /api/models/{repo}/tree/{rev}       file listing (path, size, oid)
  HEAD /{repo}/resolve/{rev}/{file}        ETag, X-Repo-Commit, Content-Length
  GET  /{repo}/resolve/{rev}/{file}        the bytes (Range supported), optionally throttled

Run: python -m higgs_sim.hub --listen 127.0.0.1:18089 --token hf_local_fake_token
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

# The chart's default pinned revisions: the fake repos answer exactly these (and `main`).
MODEL_REPO = "bosonai/higgs-audio-v2-generation-3B-base"
MODEL_REVISION = "10840182ca4ad5d9d9113b60b9bb3c1ef1ba3f84"
TOKENIZER_REPO = "bosonai/higgs-audio-v2-tokenizer"
TOKENIZER_REVISION = "9d4988fbd4ad07b4cac3a5fa462741a41810dbec"
# The semantic teacher the tokenizer loads by name at `main` (boson_multimodal higgs_audio_tokenizer.py
# lines 79-96). Boson pins no commit; this one only identifies the fake repository.
HUBERT_REPO = "bosonai/hubert_base"
HUBERT_REVISION = hashlib.sha1(b"higgs_sim.hub fake bosonai/hubert_base").hexdigest()
HUBERT_MODULE = "modeling_hubert_general.py"
# The transformers-native layout vLLM-Omni needs (OS8, OS10, OS11): second commits of the model and the
# tokenizer. Deterministic fakes standing in for the real (unconfirmed) commits; local stack only.
OMNI_MODEL_REVISION = hashlib.sha1(
    b"higgs_sim.hub fake transformers-native " + MODEL_REPO.encode()
).hexdigest()
OMNI_TOKENIZER_REVISION = hashlib.sha1(
    b"higgs_sim.hub fake transformers-native " + TOKENIZER_REPO.encode()
).hexdigest()

FAKE_NOTE = "fake file served by higgs_sim.hub (a test double, not model weights)"
CHUNK_BYTES = 16 * 1024


@dataclass(frozen=True)
class FakeRepo:
    """One repository at one commit: file name -> content."""

    repo_id: str
    revision: str
    files: dict[str, bytes]

    def tree(self) -> list[dict[str, object]]:
        return [
            {"type": "file", "path": name, "size": len(data), "oid": git_blob_oid(data)}
            for name, data in sorted(self.files.items())
        ]


def git_blob_oid(data: bytes) -> str:
    """The git blob id the Hub reports for a non-LFS file (also its ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _filler(seed: str, size: int) -> bytes:
    """Deterministic placeholder bytes, so every run serves identical files."""
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def _json(data: Mapping[str, object]) -> bytes:
    return json.dumps({**data, "note": FAKE_NOTE}, indent=2).encode()


def _model_repo(weights_bytes: int) -> FakeRepo:
    shards = {f"model-0000{i}-of-00002.safetensors": _filler(f"model-{i}", weights_bytes) for i in (1, 2)}
    weight_map = {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
    }
    config = {"model_type": "higgs_audio", "architectures": ["HiggsAudioModel"], "torch_dtype": "bfloat16"}
    tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072}
    return FakeRepo(
        MODEL_REPO,
        MODEL_REVISION,
        {
            "config.json": _json(config),
            "README.md": f"# {MODEL_REPO}\n\n{FAKE_NOTE}\n".encode(),
            "tokenizer_config.json": _json(tokenizer_config),
            "tokenizer.json": _json({"version": "1.0", "model": {"type": "BPE"}}),
            "model.safetensors.index.json": _json(
                {"metadata": {"total_size": 2 * weights_bytes}, "weight_map": weight_map}
            ),
            **shards,
        },
    )


def _tokenizer_repo(weights_bytes: int) -> FakeRepo:
    # The fields HiggsAudioTokenizer takes; 8 x 5 x 4 x 2 x 3 = 960 samples per frame at 24 kHz.
    config = {
        "semantic_techer": "hubert_base_general",
        "sample_rate": 24000,
        "n_q": 8,
        "bins": 1024,
        "ratios": [8, 5, 4, 2, 3],
        "D": 256,
        "codebook_dim": 64,
        "semantic_sample_rate": 16000,
    }
    files = {"config.json": _json(config), "model.pth": _filler("tokenizer", weights_bytes // 4)}
    return FakeRepo(TOKENIZER_REPO, TOKENIZER_REVISION, files)


def _hubert_repo(weights_bytes: int) -> FakeRepo:
    module = HUBERT_MODULE.removesuffix(".py")
    config = {
        "model_type": "hubert",
        "architectures": ["HubertGeneralModel"],
        "auto_map": {
            "AutoConfig": f"{module}.HubertGeneralConfig",
            "AutoModel": f"{module}.HubertGeneralModel",
        },
        "hidden_size": 768,
    }
    code = f'"""{FAKE_NOTE}: stands in for the remote code transformers copies into HF_MODULES_CACHE."""\n'
    files = {
        "config.json": _json(config),
        HUBERT_MODULE: code.encode(),
        "model.safetensors": _filler("hubert", weights_bytes // 4),
    }
    return FakeRepo(HUBERT_REPO, HUBERT_REVISION, files)


def _omni_model_repo(weights_bytes: int) -> FakeRepo:
    """The generation model in the transformers-native layout (OS8: model_type/architecture match the
    Higgs Audio v2 pipeline; OS9: the processor files AutoProcessor reads)."""
    shards = {
        f"model-0000{i}-of-00002.safetensors": _filler(f"omni-model-{i}", weights_bytes) for i in (1, 2)
    }
    weight_map = {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.embed_audio_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
    }
    config = {
        "model_type": "higgs_audio_v2",
        "architectures": ["HiggsAudioV2ForConditionalGeneration"],
        "torch_dtype": "bfloat16",
        "transformers_version": "5.5.3",
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "processor_class": "HiggsAudioV2Processor",
        "model_max_length": 131072,
    }
    return FakeRepo(
        MODEL_REPO,
        OMNI_MODEL_REVISION,
        {
            "config.json": _json(config),
            "generation_config.json": _json({"do_sample": True, "temperature": 1.0, "top_p": 0.95}),
            "README.md": f"# {MODEL_REPO} (transformers-native layout)\n\n{FAKE_NOTE}\n".encode(),
            "processor_config.json": _json({"processor_class": "HiggsAudioV2Processor"}),
            "preprocessor_config.json": _json(
                {"feature_extractor_type": "DacFeatureExtractor", "sampling_rate": 24000}
            ),
            "tokenizer_config.json": _json(tokenizer_config),
            "tokenizer.json": _json({"version": "1.0", "model": {"type": "BPE"}}),
            "special_tokens_map.json": _json({"eos_token": "<|eot_id|>"}),
            "chat_template.jinja": b"{# fake chat template served by higgs_sim.hub #}\n",
            "model.safetensors.index.json": _json(
                {"metadata": {"total_size": 2 * weights_bytes}, "weight_map": weight_map}
            ),
            **shards,
        },
    )


def _omni_tokenizer_repo(weights_bytes: int) -> FakeRepo:
    """The audio tokenizer in the transformers-native layout: what stage 1 (code2wav) opens at start
    (OS11: config.json and model.safetensors)."""
    config = {
        "model_type": "higgs_audio_v2_tokenizer",
        "architectures": ["HiggsAudioV2TokenizerModel"],
        "sample_rate": 24000,
        "codebook_size": 1024,
        "num_quantizers": 8,
        "downsample_factor": 960,
    }
    files = {
        "config.json": _json(config),
        "model.safetensors": _filler("omni-tokenizer", weights_bytes // 4),
    }
    return FakeRepo(TOKENIZER_REPO, OMNI_TOKENIZER_REVISION, files)


def omni_repos(weights_bytes: int = 512 * 1024) -> list[FakeRepo]:
    """The second commits of the model and the tokenizer, in the transformers-native layout."""
    return [_omni_model_repo(weights_bytes), _omni_tokenizer_repo(weights_bytes)]


def default_repos(weights_bytes: int = 512 * 1024) -> list[FakeRepo]:
    """The generation model and the audio tokenizer at the chart's pinned revisions, and the
    tokenizer's semantic teacher."""
    return [_model_repo(weights_bytes), _tokenizer_repo(weights_bytes), _hubert_repo(weights_bytes)]


@dataclass
class HubState:
    """Configuration and request log of one fake hub."""

    repos: dict[str, FakeRepo]  # repository id -> the commit `main` resolves to
    token: str | None = None
    bytes_per_second: float | None = None
    # Files answered with HTTP 500 on GET (to interrupt a download in tests): "repo/path".
    broken_files: set[str] = field(default_factory=set)
    # Completed or attempted GETs per "repo/path", for tests.
    downloads: collections.Counter[str] = field(default_factory=collections.Counter)
    # Further commits of the repositories above, reachable only by their id: (repo id, commit) -> files.
    other_revisions: dict[tuple[str, str], FakeRepo] = field(default_factory=dict)
    # The size the tree listing reports for each file instead of its own: a repository too big for any
    # disk, so a downloader's free-space check (a full cache volume) can be provoked without filling one.
    listed_bytes: int | None = None

    def find(self, repo_id: str, revision: str) -> FakeRepo | web.Response:
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", f"Repository not found: {repo_id}")
        if revision in (repo.revision, "main"):
            return repo
        other = self.other_revisions.get((repo_id, revision))
        if other is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return other


STATE: web.AppKey[HubState] = web.AppKey("state", HubState)


def _error(status: int, code: str | None, message: str) -> web.Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    state: HubState = request.app[STATE]
    if state.token is not None and request.headers.get("Authorization") != f"Bearer {state.token}":
        # The Hub answers 401 for a missing or wrong token on a private or gated repo.
        return _error(401, None, "Invalid credentials in Authorization header")
    return await handler(request)


def _repo_id(request: web.Request) -> str:
    return f"{request.match_info['org']}/{request.match_info['name']}"


async def _revision_info(request: web.Request) -> web.Response:
    state: HubState = request.app[STATE]
    found = state.find(_repo_id(request), request.match_info["revision"])
    if isinstance(found, web.Response):
        return found
    siblings = [{"rfilename": name} for name in sorted(found.files)]
    return web.json_response({"id": found.repo_id, "sha": found.revision, "siblings": siblings})


async def _tree(request: web.Request) -> web.Response:
    state: HubState = request.app[STATE]
    found = state.find(_repo_id(request), request.match_info["revision"])
    if isinstance(found, web.Response):
        return found
    tree = found.tree()
    if state.listed_bytes is not None:
        tree = [{**entry, "size": state.listed_bytes} for entry in tree]
    return web.json_response(tree)


async def _resolve(request: web.Request) -> web.StreamResponse:
    state: HubState = request.app[STATE]
    repo_id = _repo_id(request)
    found = state.find(repo_id, request.match_info["revision"])
    if isinstance(found, web.Response):
        return found
    path = request.match_info["path"]
    data = found.files.get(path)
    if data is None:
        return _error(404, "EntryNotFound", f"{path} does not exist on {found.revision}")
    headers = {"ETag": f'"{git_blob_oid(data)}"', "X-Repo-Commit": found.revision, "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        return web.Response(headers={**headers, "Content-Length": str(len(data))})
    key = f"{repo_id}/{path}"
    state.downloads[key] += 1
    if key in state.broken_files:
        return _error(500, None, f"simulated server failure for {key}")
    start = _range_start(request.headers.get("Range"), len(data))
    body = data[start:]
    response = web.StreamResponse(status=206 if start else 200, headers=headers)
    response.content_length = len(body)
    if start:
        response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
    await response.prepare(request)
    for offset in range(0, len(body), CHUNK_BYTES):
        chunk = body[offset : offset + CHUNK_BYTES]
        await response.write(chunk)
        if state.bytes_per_second:
            await asyncio.sleep(len(chunk) / state.bytes_per_second)
    await response.write_eof()
    return response


def _range_start(header: str | None, size: int) -> int:
    """Start offset of a `bytes=N-` range header (the only form huggingface_hub sends)."""
    if not header or not header.startswith("bytes="):
        return 0
    first = header.removeprefix("bytes=").split(",")[0].split("-")[0]
    return min(int(first), size) if first.isdigit() else 0


def make_app(state: HubState) -> web.Application:
    app = web.Application(middlewares=[_auth])
    app[STATE] = state
    repo = "{org}/{name}"
    app.router.add_get(f"/api/models/{repo}/revision/{{revision}}", _revision_info)
    app.router.add_get(f"/api/models/{repo}/tree/{{revision}}", _tree)
    app.router.add_route("HEAD", f"/{repo}/resolve/{{revision}}/{{path:.+}}", _resolve)
    app.router.add_get(f"/{repo}/resolve/{{revision}}/{{path:.+}}", _resolve, allow_head=False)
    return app


def new_state(
    token: str | None = None,
    bytes_per_second: float | None = None,
    weights_bytes: int = 512 * 1024,
    without: Iterable[str] = (),
    listed_bytes: int | None = None,
) -> HubState:
    """A hub serving :func:`default_repos` (and the :func:`omni_repos` commits of the same repositories)
    except the repository ids in `without`."""
    left_out = set(without)
    unknown = left_out - {r.repo_id for r in default_repos(0)}
    if unknown:
        raise ValueError(f"unknown repositories to leave out: {', '.join(sorted(unknown))}")
    return HubState(
        repos={r.repo_id: r for r in default_repos(weights_bytes) if r.repo_id not in left_out},
        token=token,
        bytes_per_second=bytes_per_second,
        other_revisions={
            (r.repo_id, r.revision): r for r in omni_repos(weights_bytes) if r.repo_id not in left_out
        },
        listed_bytes=listed_bytes,
    )


@contextlib.contextmanager
def running_hub(state: HubState, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `state` in a background thread; yields the endpoint URL. Stops on exit."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(state), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, host, port)
    loop.run_until_complete(site.start())
    bound_port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, name="fake-hf-hub", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host.startswith("127.") or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen must be 127.x.y.z:PORT (loopback only), got {value!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m higgs_sim.hub",
        description="Fake Hugging Face Hub (a test double) on a loopback address.",
    )
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 18089), help="HOST:PORT, loopback only"
    )
    parser.add_argument("--token", default=None, help="require this bearer token (401 otherwise)")
    parser.add_argument(
        "--bytes-per-second",
        type=float,
        default=None,
        help="throttle file bodies (slow mode, shows progress)",
    )
    parser.add_argument(
        "--weights-bytes", type=int, default=512 * 1024, help="size of each fake weights file"
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="REPO",
        choices=[r.repo_id for r in default_repos(0)],
        help="leave this repository out (404), e.g. bosonai/hubert_base; repeatable",
    )
    parser.add_argument(
        "--listed-bytes",
        type=int,
        default=None,
        help="size the tree listing reports for every file (e.g. 10**15: a repository no disk holds)",
    )
    args = parser.parse_args(argv)
    if args.bytes_per_second is not None and args.bytes_per_second <= 0:
        parser.error("--bytes-per-second must be > 0")
    if args.listed_bytes is not None and args.listed_bytes < 0:
        parser.error("--listed-bytes must be >= 0")
    host, port = args.listen
    state = new_state(
        args.token,
        args.bytes_per_second,
        args.weights_bytes,
        without=args.without,
        listed_bytes=args.listed_bytes,
    )
    repos = ", ".join(
        f"{r.repo_id}@{r.revision[:8]}" for r in (*state.repos.values(), *state.other_revisions.values())
    )
    print(
        f"fake Hugging Face Hub (test double) on http://{host}:{port}: {repos}", file=sys.stderr, flush=True
    )
    web.run_app(make_app(state), host=host, port=port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
