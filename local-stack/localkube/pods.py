"""Pure pieces of turning a pod spec into a local process: env, $(VAR) expansion, paths, IPs, backoff.

Processes run on the host filesystem, not in a container, so a container path under one of its
volumeMounts is rewritten to the host directory backing that volume (see :func:`rewrite_path`):
in every argv element (``sh -c`` scripts included), env value, probe/hook command and the
workingDir, a path token that equals a mountPath or starts with ``<mountPath>/`` points into the
volume's host directory instead (subPath honoured). Paths outside every mount are left alone;
paths that programs compute at run time (not written in the spec) are not rewritten.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# --------------------------------------------------------------------------------------------
# $(VAR) expansion, as in k8s.io/kubernetes third_party/forked/golang/expansion


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined vars substituted, undefined kept, ``$$`` -> ``$``."""
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = value.find(")", i + 2)
            if end < 0:
                out.append(value[i:])
                break
            name = value[i + 2 : end]
            out.append(env[name] if name in env else value[i : end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Environment


class EnvConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing: the container waits in CreateContainerConfigError."""


Lookup = Callable[[str], dict | None]


@dataclass
class EnvSources:
    """Where env values come from: object getters (None when absent) and the pod's runtime facts."""

    get_secret: Lookup
    get_configmap: Lookup
    pod_ip: str = ""
    host_ip: str = ""
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


def _secret_data(secret: dict) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def _configmap_data(cm: dict) -> dict[str, str]:
    data = dict(cm.get("data") or {})
    for k, v in (cm.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v).decode("utf-8", "replace")
    return data


def _key_ref(ref: dict, kind: str, namespace: str, sources: EnvSources) -> str | None:
    name = ref.get("name", "")
    optional = bool(ref.get("optional"))
    if kind == "Secret":
        obj = sources.get_secret(name)
        data = _secret_data(obj) if obj is not None else None
    else:
        obj = sources.get_configmap(name)
        data = _configmap_data(obj) if obj is not None else None
    if data is None:
        if optional:
            return None
        raise EnvConfigError(f'{kind.lower()} "{name}" not found')
    key = ref.get("key", "")
    if key not in data:
        if optional:
            return None
        raise EnvConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return data[key]


_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref_value(path: str, pod: dict, sources: EnvSources) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": sources.pod_ip,
        "status.podIPs": sources.pod_ip,
        "status.hostIP": sources.host_ip,
        "status.hostIPs": sources.host_ip,
    }
    if path in simple:
        return simple[path]
    match = _FIELD_LABEL.match(path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise EnvConfigError(f"unsupported fieldRef fieldPath {path!r}")


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity (``500m``, ``2Gi``, ``1e3``) as a Decimal."""
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "Ei": 2**60,
        "n": Decimal("1e-9"),
        "u": Decimal("1e-6"),
        "m": Decimal("1e-3"),
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "P": 10**15,
        "E": 10**18,
    }
    text = str(text).strip()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)]:
            return Decimal(text[: -len(suffix)]) * Decimal(suffixes[suffix])
    return Decimal(text)


def resource_field_value(ref: dict, container: dict, sources: EnvSources) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name)
    if value is None:  # unset limit: the node's allocatable, like the kubelet
        value = sources.node_allocatable.get(name, "0")
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


def service_env(services: list[dict]) -> dict[str, str]:
    """Docker-links style variables of the kubelet for each Service with a cluster IP."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec", {})
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        proto = (first.get("protocol") or "TCP").lower()
        env[f"{prefix}_PORT"] = f"{proto}://{ip}:{first['port']}"
        for port in ports:
            p = (port.get("protocol") or "TCP").upper()
            base = f"{prefix}_PORT_{port['port']}_{p}"
            env[base] = f"{p.lower()}://{ip}:{port['port']}"
            env[f"{base}_PROTO"] = p.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = ip
    return env


def container_env(
    pod: dict, container: dict, sources: EnvSources, svc_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The container's env as the kubelet computes it (envFrom, then env with $(VAR), then services)."""
    namespace = pod["metadata"].get("namespace", "default")
    svc_env = dict(svc_env or {})
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "ConfigMap"
            obj = sources.get_configmap(ref.get("name", ""))
            data = _configmap_data(obj) if obj is not None else None
        else:
            ref, kind = source.get("secretRef") or {}, "Secret"
            obj = sources.get_secret(ref.get("name", ""))
            data = _secret_data(obj) if obj is not None else None
        if data is None:
            if ref.get("optional"):
                continue
            raise EnvConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
        for key, value in data.items():
            env[prefix + key] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(item.get("value", ""), {**svc_env, **env})
            continue
        src = item["valueFrom"]
        value: str | None
        if "secretKeyRef" in src:
            value = _key_ref(src["secretKeyRef"], "Secret", namespace, sources)
        elif "configMapKeyRef" in src:
            value = _key_ref(src["configMapKeyRef"], "ConfigMap", namespace, sources)
        elif "fieldRef" in src:
            value = field_ref_value(src["fieldRef"].get("fieldPath", ""), pod, sources)
        elif "resourceFieldRef" in src:
            value = resource_field_value(src["resourceFieldRef"], container, sources)
        else:
            raise EnvConfigError(f"env {name}: unsupported valueFrom {sorted(src)}")
        if value is not None:
            env[name] = value
    for key, value in svc_env.items():
        env.setdefault(key, value)
    return env


# --------------------------------------------------------------------------------------------
# Volume mounts -> host paths


def rewrite_path(value: str, mounts: list[tuple[str, str]]) -> str:
    """Map container paths under a mountPath to the volume's host directory; the rest unchanged.

    ``mounts`` holds (mountPath, host path) pairs; the longest matching mountPath wins. A path is
    rewritten wherever it starts a path token inside the string (the whole value, ``--flag=/path``,
    ``a:/path`` or a path in a ``sh -c`` script), not where it continues a longer token such as
    ``/data/models`` or ``http://host/models``.
    """
    table = {m.rstrip("/"): h.rstrip("/") or "/" for m, h in mounts if m.rstrip("/")}  # "/" can't be emulated
    if not table:
        return value
    alternation = "|".join(re.escape(base) for base in sorted(table, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.~/-])({alternation})(?=/|$|[^\w.-])")
    return pattern.sub(lambda m: table[m.group(1)], value)


# Characters a host path may hold and still be pasted, unquoted, into a shell script or a PATH-like list.
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_./+@%,=-]*$")


def alias_dir() -> str:
    """Where :func:`shell_safe_path` puts its symlinks: <tmp>/higgs-localkube-<uid> (made 0700)."""
    base = tempfile.gettempdir()
    if not _SHELL_SAFE.match(base):
        base = "/tmp"
    return os.path.join(base, f"higgs-localkube-{os.getuid()}")


def shell_safe_path(path: str, aliases: str | None = None) -> str:
    """``path``, or when it holds a space or another character a shell would split or expand (a clone
    under "/home/me/my projects"), a symlink to it with a plain name (``<alias dir>/<hash>-<basename>``).

    Host paths the agent substitutes into a pod's values (volume and image-file paths in a ``sh -c``
    script, $HOME, the working directory) go through this, so a script that would work in a container
    works here whatever the clone's path. The symlink is keyed by the path's hash: stable and shared."""
    if _SHELL_SAFE.match(path):
        return path
    aliases = aliases or alias_dir()
    os.makedirs(aliases, mode=0o700, exist_ok=True)
    if os.stat(aliases).st_uid != os.getuid():
        raise OSError(f"{aliases} belongs to another user; cannot alias {path!r} there")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(path.rstrip("/")))[:40]
    link = os.path.join(aliases, f"{hashlib.sha256(path.encode()).hexdigest()[:12]}-{name}")
    if os.path.islink(link) and os.readlink(link) == path:
        return link
    tmp = f"{link}.{os.getpid()}.{threading.get_ident()}"
    os.symlink(path, tmp)
    os.replace(tmp, link)  # atomic: concurrent callers agree
    return link


# --------------------------------------------------------------------------------------------
# Pod IPs


class IpPoolExhausted(RuntimeError):
    pass


class IpAllocator:
    """Unique loopback pod IPs per node: 127.42.<node index + 1>.<2..254>, reused last."""

    def __init__(self, node_index: int, second_octet: int = 42) -> None:
        if not 0 <= node_index < 254:
            raise ValueError(f"node index {node_index} out of range 0..253")
        self.prefix = f"127.{second_octet}.{node_index + 1}."
        self.host_ip = self.prefix + "1"
        self._used: set[str] = set()
        self._next = 2
        self._lock = threading.Lock()

    def owns(self, ip: str) -> bool:
        return ip.startswith(self.prefix) and ip != self.host_ip and 2 <= int(ip.rsplit(".", 1)[1]) <= 254

    def claim(self, ip: str) -> bool:
        """Re-take an IP a pod already had (agent restart); False when not ours or taken."""
        with self._lock:
            if not self.owns(ip) or ip in self._used:
                return False
            self._used.add(ip)
            return True

    def allocate(self) -> str:
        with self._lock:
            for offset in range(253):
                n = 2 + (self._next - 2 + offset) % 253
                ip = f"{self.prefix}{n}"
                if ip not in self._used:
                    self._used.add(ip)
                    self._next = n + 1
                    return ip
        raise IpPoolExhausted(f"no free pod IP left in {self.prefix}0/24")

    def release(self, ip: str) -> None:
        with self._lock:
            self._used.discard(ip)


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# Restart backoff


@dataclass
class Backoff:
    """Exponential restart delay like the kubelet's (10 s doubling to 5 min), scaled down locally."""

    initial: float = 1.0
    maximum: float = 10.0
    reset_after: float = 60.0  # a container that ran this long restarts without delay again
    failures: int = 0

    def next_delay(self, ran_for: float) -> float:
        """Delay before the next start of a container that just exited after ``ran_for`` seconds."""
        if ran_for >= self.reset_after:
            self.failures = 0
        delay = 0.0 if self.failures == 0 else min(self.maximum, self.initial * 2 ** (self.failures - 1))
        self.failures += 1
        return delay


def pod_dir_name(pod: dict) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', 'default')}_{meta['name']}_{meta['uid']}"


def resolve_port(port: Any, container: dict) -> int:
    """A probe/Service port: a number, or a container port name."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for cport in container.get("ports") or []:
        if cport.get("name") == port:
            return int(cport["containerPort"])
    raise ValueError(f"port {port!r} is not a number nor a named port of container {container.get('name')}")
