"""Container image -> local command mapping for the fake GPU nodes.

The images file (``<repo>/hack/localkube-images.yaml``, ``$HIGGS_LOCALKUBE_IMAGES``) plays the role of a container registry: each
entry maps an fnmatch pattern on the image reference to an "image config" (entrypoint, default
cmd, env), and the agent turns a container into an argv exactly like a container runtime does:

* ``command`` set -> it replaces the entrypoint, and ``args`` (or nothing) follow it;
* only ``args`` set -> entrypoint + args;
* neither -> entrypoint + cmd.

Two optional per-image keys stand in for what a real image holds beyond its entrypoint:

* ``commands``: executables of the image by name. A container ``command`` whose first element is a
  mapped name runs the mapped ``argv`` instead of that name, then the rest of the command, the
  ``args``, then the entry's ``append`` (e.g. ``vllm`` -> ``{venv}/python -m higgs_sim.omni``, with
  ``--sim-bind-host {pod_ip}`` appended). A plain list is ``argv`` alone. Other commands run as written.
* ``files``: paths inside the image -> host paths. A path token in the argv or the environment that
  names one of them (or lies under it) is rewritten to the host path, like a volume mount's path
  (a volume mounted at the same path wins).

Placeholders in entrypoint/cmd/env values and ``files`` host paths: ``{venv}`` (the bin directory
of the Python running the agent, the repository's ``.venv/bin``), ``{repo}`` (the project root,
``$HIGGS_REPO_ROOT``), ``{pod_ip}`` (the pod's loopback IP), ``{path}`` (the agent's own PATH),
``{cache}`` (the binaries cache, ``$HIGGS_CACHE``: kubectl and helm are in ``{cache}/bin``). Literal
braces are written ``{{`` / ``}}``. Rendered values are host paths: they are never rewritten as
container paths (a clone under ``/tmp`` stays itself even when a pod mounts a volume at ``/tmp``).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ImagesFileError(ValueError):
    """The images file is missing or malformed; the message names the file and the entry."""


class ImageNotMapped(LookupError):
    """No entry of the images file matches the image reference."""


@dataclass(frozen=True)
class MappedCommand:
    """An executable of the image: what runs instead of its name, and what is appended after the args."""

    argv: tuple[str, ...]
    append: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageConfig:
    pattern: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    commands: tuple[tuple[str, MappedCommand], ...] = ()
    files: tuple[tuple[str, str], ...] = ()

    def command(self, name: str) -> MappedCommand | None:
        return dict(self.commands).get(name)


@dataclass(frozen=True)
class Placeholders:
    venv: str
    repo: str
    pod_ip: str = ""
    path: str = field(default_factory=lambda: os.environ.get("PATH", "/usr/bin:/bin"))
    cache: str = ""

    def render(self, value: str) -> str:
        return value.format(
            venv=self.venv, repo=self.repo, pod_ip=self.pod_ip, path=self.path, cache=self.cache
        )


@dataclass(frozen=True)
class ImageMap:
    source: str
    images: tuple[ImageConfig, ...]
    default_env: tuple[tuple[str, str], ...] = ()

    def lookup(self, image: str) -> ImageConfig:
        for candidate in reference_forms(image):
            for config in self.images:
                if fnmatch.fnmatchcase(candidate, config.pattern):
                    return config
        raise ImageNotMapped(
            f'image "{image}" is not mapped to a local command in {self.source}; '
            "add an entry for it there (fnmatch pattern -> entrypoint)"
        )


def reference_forms(image: str) -> list[str]:
    """The reference as written plus its forms without the default registry prefixes."""
    forms = [image]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if image.startswith(prefix):
            forms.append(image[len(prefix) :])
    return forms


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImagesFileError(f"{where}: must be a list of strings, got {value!r}")
    return tuple(value)


def _env(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ImagesFileError(f"{where}: must be a mapping of NAME: value, got {value!r}")
    return tuple((k, str(v)) for k, v in value.items())


def _commands(value: Any, where: str) -> tuple[tuple[str, MappedCommand], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ImagesFileError(f"{where}: must be a mapping of command name -> argv, got {value!r}")
    out = []
    for name, spec in value.items():
        at = f"{where}.{name}"
        if isinstance(spec, list):
            spec = {"argv": spec}
        if not isinstance(spec, dict) or set(spec) - {"argv", "append"}:
            raise ImagesFileError(
                f"{at}: must be a list (argv) or a mapping with argv and append, got {spec!r}"
            )
        argv = _str_list(spec.get("argv"), f"{at}.argv")
        if not argv:
            raise ImagesFileError(f"{at}.argv: must not be empty")
        out.append((name, MappedCommand(argv, _str_list(spec.get("append"), f"{at}.append"))))
    return tuple(out)


def _files(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k.startswith("/") and k.rstrip("/") and isinstance(v, str) and v
        for k, v in value.items()
    ):
        raise ImagesFileError(
            f"{where}: must be a mapping of absolute image path -> host path, got {value!r}"
        )
    return tuple(value.items())


def parse_image_map(data: Any, source: str) -> ImageMap:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ImagesFileError(f"{source}: expected a mapping with an 'images' list")
    unknown = set(data) - {"images", "env"}
    if unknown:
        raise ImagesFileError(f"{source}: unknown top-level keys {sorted(unknown)}")
    images = []
    for i, entry in enumerate(data["images"]):
        where = f"{source}: images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str):
            raise ImagesFileError(f"{where}: each entry needs a 'match' pattern string")
        extra = set(entry) - {"match", "entrypoint", "cmd", "env", "commands", "files"}
        if extra:
            raise ImagesFileError(f"{where}: unknown keys {sorted(extra)}")
        entrypoint = _str_list(entry.get("entrypoint"), f"{where}.entrypoint")
        cmd = _str_list(entry.get("cmd"), f"{where}.cmd")
        images.append(
            ImageConfig(
                entry["match"],
                entrypoint,
                cmd,
                _env(entry.get("env"), f"{where}.env"),
                _commands(entry.get("commands"), f"{where}.commands"),
                _files(entry.get("files"), f"{where}.files"),
            )
        )
    return ImageMap(source, tuple(images), _env(data.get("env"), f"{source}: env"))


def load_image_map(path: str | Path) -> ImageMap:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImagesFileError(f"images file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ImagesFileError(f"images file {path}: invalid YAML: {exc}") from exc
    return parse_image_map(data, str(path))


class ImageMapFile:
    """The images file, reloaded when its mtime changes (a bad edit keeps the last good map)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._mtime = self.path.stat().st_mtime
        except OSError as exc:
            raise ImagesFileError(f"images file {self.path}: {exc.strerror}") from exc
        self.current = load_image_map(self.path)

    def get(self) -> ImageMap:
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self._mtime = mtime
                self.current = load_image_map(self.path)
        except (OSError, ImagesFileError):
            pass
        return self.current


@dataclass(frozen=True)
class ArgvPart:
    """One argv element and where it came from: the pod spec (a container path, which $(VAR)
    expansion and volume-path rewriting apply to) or the images file (already a host path)."""

    value: str
    from_pod: bool


def container_argv_parts(
    config: ImageConfig, command: list[str] | None, args: list[str] | None, ph: Placeholders
) -> list[ArgvPart]:
    """Entrypoint/cmd resolution as a container runtime does it (before $(VAR) expansion); a command
    whose executable the image maps (``commands``) runs the mapped argv instead."""

    def host(values: Iterable[str]) -> list[ArgvPart]:
        return [ArgvPart(ph.render(v), False) for v in values]

    def pod(values: Iterable[str]) -> list[ArgvPart]:
        return [ArgvPart(v, True) for v in values]

    if command:
        mapped = config.command(command[0])
        if mapped is None:
            argv = pod([*command, *(args or [])])
        else:
            argv = [*host(mapped.argv), *pod([*command[1:], *(args or [])]), *host(mapped.append)]
    elif args:
        argv = [*host(config.entrypoint), *pod(args)]
    else:
        argv = host((*config.entrypoint, *config.cmd))
    if not argv:
        raise ImagesFileError(
            f'image pattern "{config.pattern}" has no entrypoint/cmd and the container no command'
        )
    return argv


def container_argv(
    config: ImageConfig, command: list[str] | None, args: list[str] | None, ph: Placeholders
) -> list[str]:
    """The argv of :func:`container_argv_parts`, as plain strings."""
    return [part.value for part in container_argv_parts(config, command, args, ph)]


def image_files(config: ImageConfig, ph: Placeholders) -> list[tuple[str, str]]:
    """The image's (image path, host path) pairs, placeholders rendered: extra "mounts" for path rewriting."""
    return [(image_path, ph.render(host)) for image_path, host in config.files]


def image_env(image_map: ImageMap, config: ImageConfig, ph: Placeholders) -> dict[str, str]:
    """The image's environment (file-wide defaults, then the entry's), placeholders rendered."""
    env: dict[str, str] = {}
    for key, value in (*image_map.default_env, *config.env):
        env[key] = ph.render(value)
    return env
