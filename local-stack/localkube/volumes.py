"""Pod volumes as host directories under ``<state-dir>/pods/<ns>_<name>_<uid>/volumes/<volume>``.

Supported: emptyDir (any medium: a plain directory), configMap and secret (items, defaultMode;
written at each container start, not kept in sync), hostPath (the host path itself), a
persistentVolumeClaim (the bound PV's hostPath or local path), projected (serviceAccountToken
through the TokenRequest API, configMap, secret, downwardAPI) and downwardAPI. Anything missing
raises :class:`VolumeError`, whose message the pod shows while it keeps retrying.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .json_client import ApiError, KubeClient, ns_path
from .pods import EnvConfigError, EnvSources, expand, field_ref_value


class VolumeError(Exception):
    """A volume cannot be set up yet (missing object, unbound claim): retried, shown as FailedMount."""


def _write_file(base: Path, rel: str, data: bytes, mode: int | None) -> None:
    target = (base / rel).resolve()
    if not str(target).startswith(str(base.resolve())):
        raise VolumeError(f"item path {rel!r} escapes the volume directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode if mode is not None else 0o644)
    os.replace(tmp, target)


def _object_files(obj: dict, binary: bool) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if binary:  # Secret: data is base64
        for k, v in (obj.get("data") or {}).items():
            files[k] = base64.b64decode(v)
    else:  # ConfigMap: data is text, binaryData base64
        for k, v in (obj.get("data") or {}).items():
            files[k] = v.encode()
        for k, v in (obj.get("binaryData") or {}).items():
            files[k] = base64.b64decode(v)
    return files


def _project_keys(
    base: Path, kind: str, name: str, obj: dict | None, source: dict, default_mode: int | None, namespace: str
) -> None:
    optional = bool(source.get("optional"))
    if obj is None:
        if optional:
            return
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    files = _object_files(obj, binary=kind == "Secret")
    items = source.get("items")
    if items:
        for item in items:
            key = item["key"]
            if key not in files:
                if optional:
                    continue
                raise VolumeError(f"couldn't find key {key} in {kind} {namespace}/{name}")
            _write_file(base, item.get("path", key), files[key], item.get("mode", default_mode))
    else:
        for key, data in files.items():
            _write_file(base, key, data, default_mode)


class VolumeBuilder:
    """Materializes one pod's volumes; API reads go through the agent's client."""

    def __init__(self, api: KubeClient, pod: dict, pod_dir: Path, sources: EnvSources) -> None:
        self.api = api
        self.pod = pod
        self.namespace = pod["metadata"].get("namespace", "default")
        self.pod_dir = pod_dir
        self.sources = sources

    def _get(self, resource: str, name: str) -> dict | None:
        return self.api.get(ns_path(self.namespace, resource, name))

    def build_all(self) -> dict[str, str]:
        """Volume name -> host path, for every volume of the pod."""
        return {vol["name"]: self.build(vol) for vol in self.pod["spec"].get("volumes") or []}

    def build(self, vol: dict) -> str:
        name = vol["name"]
        base = self.pod_dir / "volumes" / name
        handlers: dict[str, Callable[[dict, Path], str]] = {
            "emptyDir": self._empty_dir,
            "configMap": self._config_map,
            "secret": self._secret,
            "hostPath": self._host_path,
            "persistentVolumeClaim": self._pvc,
            "projected": self._projected,
            "downwardAPI": self._downward_api,
        }
        for kind, handler in handlers.items():
            if kind in vol:
                return handler(vol[kind] or {}, base)
        kinds = sorted(set(vol) - {"name"})
        raise VolumeError(f"volume {name}: type {kinds} is not supported by the local node agent")

    def _empty_dir(self, src: dict, base: Path) -> str:
        base.mkdir(parents=True, exist_ok=True)
        return str(base)

    def _config_map(self, src: dict, base: Path) -> str:
        base.mkdir(parents=True, exist_ok=True)
        name = src.get("name", "")
        _project_keys(
            base,
            "ConfigMap",
            name,
            self._get("configmaps", name),
            src,
            src.get("defaultMode"),
            self.namespace,
        )
        return str(base)

    def _secret(self, src: dict, base: Path) -> str:
        base.mkdir(parents=True, exist_ok=True)
        name = src.get("secretName", "")
        _project_keys(
            base, "Secret", name, self._get("secrets", name), src, src.get("defaultMode"), self.namespace
        )
        return str(base)

    def _host_path(self, src: dict, base: Path) -> str:
        path = Path(src.get("path", ""))
        kind = src.get("type", "")
        if kind == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "Directory" and not path.is_dir():
            raise VolumeError(f"hostPath type check failed: {path} is not a directory")
        elif kind == "File" and not path.is_file():
            raise VolumeError(f"hostPath type check failed: {path} is not a file")
        return str(path)

    def _pvc(self, src: dict, base: Path) -> str:
        claim = src.get("claimName", "")
        pvc = self._get("persistentvolumeclaims", claim)
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        pv_name = pvc.get("spec", {}).get("volumeName")
        if not pv_name or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound')
        pv = self.api.get(f"/api/v1/persistentvolumes/{pv_name}")
        if pv is None:
            raise VolumeError(f'persistentvolume "{pv_name}" not found')
        spec = pv.get("spec", {})
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not path:
            raise VolumeError(
                f"persistentvolume {pv_name} is neither hostPath nor local: cannot back it locally"
            )
        Path(path).mkdir(parents=True, exist_ok=True)
        return path

    def _downward_files(self, src: dict, base: Path, default_mode: int | None) -> None:
        for item in src.get("items") or []:
            try:
                if "fieldRef" in item:
                    value = field_ref_value(item["fieldRef"].get("fieldPath", ""), self.pod, self.sources)
                else:
                    value = ""  # resourceFieldRef: best-effort, left empty
            except EnvConfigError as exc:
                raise VolumeError(str(exc)) from exc
            _write_file(base, item["path"], value.encode(), item.get("mode", default_mode))

    def _downward_api(self, src: dict, base: Path) -> str:
        base.mkdir(parents=True, exist_ok=True)
        self._downward_files(src, base, src.get("defaultMode"))
        return str(base)

    def _token(self, src: dict) -> bytes:
        meta = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": max(600, int(src.get("expirationSeconds", 3607))),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        if src.get("audience"):
            body["spec"]["audiences"] = [src["audience"]]
        try:
            resp = self.api.create(ns_path(self.namespace, "serviceaccounts", sa, "token"), body)
        except ApiError as exc:
            raise VolumeError(f"failed to fetch token for service account {sa}: {exc.message}") from exc
        return resp.get("status", {}).get("token", "").encode()

    def _projected(self, src: dict, base: Path) -> str:
        base.mkdir(parents=True, exist_ok=True)
        mode = src.get("defaultMode")
        for source in src.get("sources") or []:
            if "serviceAccountToken" in source:
                token_src = source["serviceAccountToken"]
                _write_file(base, token_src.get("path", "token"), self._token(token_src), mode or 0o600)
            elif "configMap" in source:
                cm = source["configMap"]
                obj = self._get("configmaps", cm.get("name", ""))
                _project_keys(base, "ConfigMap", cm.get("name", ""), obj, cm, mode, self.namespace)
            elif "secret" in source:
                sec = source["secret"]
                obj = self._get("secrets", sec.get("name", ""))
                _project_keys(base, "Secret", sec.get("name", ""), obj, sec, mode, self.namespace)
            elif "downwardAPI" in source:
                self._downward_files(source["downwardAPI"], base, mode)
        return str(base)


def container_mounts(container: dict, volume_paths: dict[str, str], pod: dict) -> list[tuple[str, str]]:
    """(mountPath, host path) for each volumeMount of the container, subPath(Expr) applied."""
    mounts = []
    env_for_expr = {
        "POD_NAME": pod["metadata"]["name"],
        "POD_NAMESPACE": pod["metadata"].get("namespace", ""),
    }
    for mount in container.get("volumeMounts") or []:
        host = volume_paths.get(mount["name"])
        if host is None:
            raise VolumeError(
                f"volumeMount {mount['name']!r} of container {container['name']} names no volume"
            )
        sub = mount.get("subPath") or ""
        if mount.get("subPathExpr"):
            sub = expand(mount["subPathExpr"], env_for_expr)
        if sub:
            host_path = Path(host) / sub
            if not host_path.exists() and "." not in Path(sub).name:
                host_path.mkdir(parents=True, exist_ok=True)
            host = str(host_path)
        mounts.append((mount["mountPath"], host))
    return mounts
