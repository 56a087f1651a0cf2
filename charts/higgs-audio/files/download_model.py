"""Download Hugging Face repositories at pinned revisions into the model cache (chart init container).

Runs with `python3` in the server image, which ships huggingface_hub; written for old and new
huggingface_hub releases alike (only snapshot_download and the error classes are used).

    python3 download_model.py --item REPO REVISION DEST [--item ...] [--cache-item REPO REVISION CACHE_DIR ...]

For each --item: skip when DEST holds the marker of that revision; otherwise snapshot_download into
DEST (files already complete are kept, so an interrupted download resumes file by file), log the
progress, then write the marker.

A --cache-item goes into the Hugging Face hub cache layout under CACHE_DIR
(models--{org}--{name}/{blobs,snapshots/<commit>,refs}), for what the server loads by repository
name rather than by path: the audio tokenizer's semantic teacher (bosonai/hubert_base), which
transformers asks for at revision `main`. snapshot_download does not write refs/main when given a
commit, so the script writes refs/main = the resolved commit itself; the server, offline, then
finds the snapshot. The marker (in the repository's folder) records the resolved commit.

The token comes from HF_TOKEN (never printed); HF_ENDPOINT selects a mirror. Exit status 0 on
success; otherwise one `ERROR: <Cause>: <message>` line on stderr, the same `<Cause>: <message>` line
in the termination message file (--termination-log, /dev/termination-log by default, written only
where the kubelet created it), and the cause's exit status (EXIT_CODES; 1 for any other failure), so
the operator can name the cause even where no termination message is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import inspect
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MARKER_NAME = ".higgs-download-complete"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Item:
    """One repository at one revision. `dest` is where its files land: the directory of --item, or
    the repository's folder in the hub cache `cache_dir` for --cache-item."""

    repo: str
    revision: str
    dest: Path
    cache_dir: Path | None = None


def cache_item(repo: str, revision: str, cache_dir: Path) -> Item:
    """A --cache-item: the repository's folder in huggingface_hub's cache layout."""
    return Item(repo, revision, cache_dir / ("models--" + repo.replace("/", "--")), cache_dir)


# Causes the operator shows as condition reasons, and their exit statuses (1: DownloadFailed).
EXIT_CODES = {
    "DownloadFailed": 1,
    "TokenRejected": 3,
    "RevisionNotFound": 4,
    "RepositoryNotFound": 5,
    "DiskFull": 6,
    "HubUnreachable": 7,
    "HubError": 8,
}


class DownloadError(Exception):
    """A failure with a message fit for the user (no stack trace) and its cause (a key of EXIT_CODES)."""

    def __init__(self, message: str, cause: str = "DownloadFailed") -> None:
        super().__init__(message)
        self.cause = cause


def log(message: str) -> None:
    print(f"[download-model] {message}", flush=True)


def marker_path(dest: Path) -> Path:
    return dest / MARKER_NAME


def read_marker(item: Item) -> dict | None:
    """The marker of a full download of this exact repository and revision, or None."""
    try:
        marker = json.loads(marker_path(item.dest).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or (marker.get("repo"), marker.get("revision")) != (
        item.repo,
        item.revision,
    ):
        return None
    return marker


def is_complete(item: Item) -> bool:
    """True when DEST carries the marker written after a full download of this exact revision (for a
    cache item: and the snapshot and refs/main it recorded are still there)."""
    marker = read_marker(item)
    if marker is None:
        return False
    if item.cache_dir is None:
        return True
    commit = marker.get("commit")
    ref = item.dest / "refs" / "main"
    try:
        return (
            bool(commit) and (item.dest / "snapshots" / commit).is_dir() and ref.read_text().strip() == commit
        )
    except OSError:
        return False


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_marker(item: Item, commit: str | None = None) -> None:
    marker = {"repo": item.repo, "revision": item.revision, "completed_at": time.time()}
    if commit:
        marker["commit"] = commit
    write_text_atomic(marker_path(item.dest), json.dumps(marker))


def write_ref_main(item: Item, commit: str) -> None:
    """refs/main = commit: the server asks for `main` and, offline, reads the commit from this file."""
    refs = item.dest / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    write_text_atomic(refs / "main", commit)


def dir_bytes(path: Path) -> int:
    """Bytes under path, partial downloads included (they live in path/.cache/huggingface)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a temporary file renamed while walking
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def remote_size(item: Item, token: str | None) -> int | None:
    """Total size of the repository at the revision, or None when it cannot be listed (old hub)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token or None)
    if not hasattr(api, "list_repo_tree"):
        return None
    files = api.list_repo_tree(item.repo, revision=item.revision, recursive=True)
    return sum(getattr(f, "size", 0) or 0 for f in files)


class Progress:
    """Logs bytes on disk against the expected total every `interval` seconds, from a thread."""

    def __init__(self, item: Item, total: int | None, interval: float) -> None:
        self.item, self.total, self.interval = item, total, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _line(self) -> str:
        done = dir_bytes(self.item.dest)
        if self.total:
            pct = min(100.0, 100.0 * done / self.total)
            return f"{self.item.repo}: {human(done)} / {human(self.total)} ({pct:.0f}%)"
        return f"{self.item.repo}: {human(done)} on disk"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            log(self._line())

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _error_classes() -> dict[str, type[BaseException]]:
    """huggingface_hub's error classes, from huggingface_hub.errors (new) or .utils (old)."""
    names = ("RevisionNotFoundError", "GatedRepoError", "RepositoryNotFoundError", "HfHubHTTPError")
    found: dict[str, type[BaseException]] = {}
    for module_name in ("huggingface_hub.errors", "huggingface_hub.utils"):
        try:
            module = __import__(module_name, fromlist=list(names))
        except ImportError:
            continue
        for name in names:
            found.setdefault(name, getattr(module, name, None) or type(name, (Exception,), {}))
    return found


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def explain(error: BaseException, item: Item) -> str:
    """One line naming the cause, for the errors users actually hit."""
    return classify(error, item)[1]


def classify(error: BaseException, item: Item) -> tuple[str, str]:
    """(cause, one line naming it): the cause is a key of EXIT_CODES."""
    classes = _error_classes()
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        free = shutil.disk_usage(item.dest).free if item.dest.exists() else 0
        return "DiskFull", (
            f"disk full while downloading {item.repo} into {item.dest} ({human(free)} free): "
            "increase modelCache.pvc.size (or the volume behind modelCache.existing)"
        )
    if isinstance(error, classes["RevisionNotFoundError"]):
        return "RevisionNotFound", (
            f"revision {item.revision} not found in {item.repo} on {endpoint}: check the pinned revision"
        )
    if isinstance(error, classes["GatedRepoError"]) or _status(error) in (401, 403):
        return "TokenRejected", (
            f"token rejected or no access to {item.repo} on {endpoint} (HTTP {_status(error)}): check the "
            "secret named by hfToken.existingSecret and that the account accepted the model's terms"
        )
    if isinstance(error, classes["RepositoryNotFoundError"]):
        return "RepositoryNotFound", (
            f"repository {item.repo} not found on {endpoint} (or it is private and the token has no access)"
        )
    if isinstance(error, classes["HfHubHTTPError"]):
        return "HubError", f"the Hub at {endpoint} answered HTTP {_status(error)} for {item.repo}: {error}"
    name = type(error).__name__
    # Class names, not classes: requests (old hubs) and httpx (new) raise their own.
    unreachable = ("LocalEntryNotFound", "ConnectError", "ConnectTimeout", "ConnectionError", "Timeout")
    if any(part in name for part in unreachable) or isinstance(error, (ConnectionError, TimeoutError)):
        return "HubUnreachable", (
            f"cannot reach {endpoint} to download {item.repo} ({name}): check network access or HF_ENDPOINT"
        )
    return "DownloadFailed", f"downloading {item.repo}@{item.revision} failed: {name}: {error}"


def _snapshot_kwargs(snapshot: Callable[..., str], max_workers: int) -> dict[str, object]:
    """Options for the installed huggingface_hub: real files, never links into HF_HOME (releases before
    0.23 linked local_dir files into the cache unless told not to; later ones ignore the option)."""
    import huggingface_hub

    kwargs: dict[str, object] = {"max_workers": max_workers}
    major_minor = tuple(int(p) for p in huggingface_hub.__version__.split(".")[:2] if p.isdigit())
    if major_minor < (0, 23) and "local_dir_use_symlinks" in inspect.signature(snapshot).parameters:
        kwargs["local_dir_use_symlinks"] = False
    return kwargs


def download(item: Item, token: str | None, max_workers: int, interval: float) -> None:
    from huggingface_hub import snapshot_download

    if is_complete(item):
        log(f"{item.repo}@{item.revision}: marker present in {item.dest}, skipping download")
        return
    item.dest.mkdir(parents=True, exist_ok=True)
    where = f"the Hugging Face cache {item.cache_dir}" if item.cache_dir else str(item.dest)
    log(f"{item.repo}@{item.revision}: downloading into {where}")
    started = time.monotonic()
    try:
        total = remote_size(item, token)
        if total is not None:
            free = shutil.disk_usage(item.dest).free
            needed = total - dir_bytes(item.dest)
            log(f"{item.repo}: {human(total)} in the repository, {human(free)} free on the cache volume")
            if needed > free:
                raise OSError(errno.ENOSPC, f"needs {human(needed)} more")
        with Progress(item, total, interval):
            if item.cache_dir is None:
                snapshot_download(
                    item.repo,
                    revision=item.revision,
                    local_dir=str(item.dest),
                    token=token or None,
                    **_snapshot_kwargs(snapshot_download, max_workers),
                )
                commit = None
            else:
                folder = snapshot_download(
                    item.repo,
                    revision=item.revision,
                    cache_dir=str(item.cache_dir),
                    token=token or None,
                    max_workers=max_workers,
                )
                commit = Path(folder).name  # .../snapshots/<commit>
                if not COMMIT_RE.match(item.revision):
                    log(f"{item.repo}: resolved {item.revision} to {commit}")
                write_ref_main(item, commit)
                log(f"{item.repo}: refs/main -> {commit} (the server asks for main)")
    except Exception as error:
        cause, message = classify(error, item)
        raise DownloadError(message, cause) from error
    write_marker(item, commit)
    log(f"{item.repo}: complete, {human(dir_bytes(item.dest))} in {time.monotonic() - started:.1f} s")


def write_termination_message(path: Path, line: str) -> None:
    """The cause for the pod's status (state.terminated.message), best effort: only into a file that
    exists (the kubelet mounts it; a process outside a container must not create /dev files)."""
    if not path.is_file():
        return
    with contextlib.suppress(OSError):
        path.write_text(line[:4000] + "\n", encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Download Hugging Face repositories at pinned revisions.")
    parser.add_argument(
        "--item",
        nargs=3,
        action="append",
        default=[],
        metavar=("REPO", "REVISION", "DEST"),
        help="repository id, revision (commit) and destination directory",
    )
    parser.add_argument(
        "--cache-item",
        nargs=3,
        action="append",
        default=[],
        metavar=("REPO", "REVISION", "CACHE_DIR"),
        help="repository id, revision (commit, branch or tag) and Hugging Face hub cache directory; "
        "refs/main is pointed at the resolved commit",
    )
    parser.add_argument("--max-workers", type=int, default=8, help="parallel file downloads")
    parser.add_argument(
        "--progress-interval", type=float, default=10.0, help="seconds between progress lines"
    )
    parser.add_argument(
        "--termination-log",
        type=Path,
        default=Path("/dev/termination-log"),
        help="where the one-line cause of a failure goes (the container's terminationMessagePath); "
        "written only when the file exists (the kubelet creates it)",
    )
    args = parser.parse_args(argv)
    if not args.item and not args.cache_item:
        parser.error("nothing to download: give --item or --cache-item")
    if args.max_workers < 1:
        parser.error("--max-workers must be >= 1")
    if args.progress_interval <= 0:
        parser.error("--progress-interval must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own progress lines instead of \r bars
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    token = os.environ.get("HF_TOKEN") or None
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    log(f"endpoint {endpoint}, token {'set' if token else 'not set'}")
    items = [Item(repo, revision, Path(dest)) for repo, revision, dest in args.item]
    items += [cache_item(repo, revision, Path(cache)) for repo, revision, cache in args.cache_item]
    try:
        for item in items:
            download(item, token, args.max_workers, args.progress_interval)
    except DownloadError as error:
        line = f"{error.cause}: {error}".replace("\n", " ")
        print(f"ERROR: {line}", file=sys.stderr, flush=True)
        write_termination_message(args.termination_log, line)
        return EXIT_CODES.get(error.cause, 1)
    log("all repositories present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
