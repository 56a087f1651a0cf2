"""Thin Kubernetes API calls (server-side apply, get, list, delete, scale, status) with a write counter."""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

from kubernetes import config
from kubernetes.client import ApiClient, Configuration, VersionApi
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException

from .constants import FIELD_MANAGER, GROUP, PLURAL, VERSION
from .render import APPLIABLE_KINDS

TIMEOUT_S = 10

# Writes sent by this process, by verb and kind: reported on the health endpoint and by the benchmark.
WRITES: collections.Counter[str] = collections.Counter()
_writes_lock = threading.Lock()


def kubeconfig_path() -> str:
    """KUBECONFIG as it is now (the client library reads it once, at import), else ~/.kube/config."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def api_client(kubeconfig: str | None = None) -> ApiClient:
    """The operator's one way to reach the API server: the pod's service account when it runs in a
    cluster, else ``kubeconfig`` (default: :func:`kubeconfig_path`). Raises ConfigException if neither
    is usable. The client has its own Configuration: the library's process-wide default stays untouched.
    """
    configuration = Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        config.load_kube_config(
            config_file=kubeconfig or kubeconfig_path(), client_configuration=configuration
        )
    return ApiClient(configuration)


def server_version(api: ApiClient) -> str:
    """The API server's version without the leading v or a build suffix (e.g. 1.35.4)."""
    info = VersionApi(api).get_code(_request_timeout=TIMEOUT_S)
    return str(info.git_version).lstrip("v").split("+")[0]


class ServerVersion:
    """The API server's version for ``helm template --kube-version``, read again when older than
    ``ttl_s`` (a control-plane upgrade reaches the renders without restarting the operator). A failed
    re-read keeps the last version (logged) and retries at the next call. Thread-safe."""

    def __init__(
        self,
        api: ApiClient,
        first: str,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[ApiClient], str] | None = None,
    ) -> None:
        self._api, self._ttl_s, self._clock = api, ttl_s, clock
        self._read = read or server_version
        self._version, self._read_at = first, clock()
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if self._clock() - self._read_at < self._ttl_s:
                return self._version
            try:
                version = self._read(self._api)
            except Exception as err:  # connection, TLS, auth: keep rendering with the last one
                logging.getLogger(__name__).warning(
                    "cannot re-read the API server's version (%s: %s); rendering for %s",
                    type(err).__name__,
                    err,
                    self._version,
                )
                return self._version
            if version != self._version:
                logging.getLogger(__name__).info("API server version %s (was %s)", version, self._version)
            self._version, self._read_at = version, self._clock()
            return version


def _count(verb: str, kind: str) -> None:
    with _writes_lock:
        WRITES[f"{verb} {kind}"] += 1


def collection_path(api_version: str, plural: str, namespace: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{quote(namespace)}/{plural}"


def object_path(obj: dict) -> str:
    plural = APPLIABLE_KINDS[(obj["apiVersion"], obj["kind"])]
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], plural, meta['namespace'])}/{quote(meta['name'])}"


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: dict | None = None,
    body: object = None,
    content_type: str = "application/json",
) -> dict | None:
    """One API request; returns the decoded JSON body, None for 404 on GET/DELETE."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    req = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(*req, _request_timeout=TIMEOUT_S)
    resp.read()
    if resp.status == 404 and method in ("GET", "DELETE"):
        return None
    if not 200 <= resp.status <= 299:
        body = (resp.data or b"").decode(errors="replace")
        raise ApiException.from_response(http_resp=resp, body=body, data=None)
    return json.loads(resp.data) if resp.data else None


def apply(
    api: ApiClient, obj: dict, live_version: str | None = None, field_manager: str = FIELD_MANAGER
) -> dict:
    """Server-side apply ``obj`` as the operator's field manager; count a write if the version moved."""
    result = request(
        api,
        "PATCH",
        object_path(obj),
        query={"fieldManager": field_manager, "force": "true"},
        body=obj,
        content_type="application/apply-patch+yaml",
    )
    assert result is not None
    if result["metadata"].get("resourceVersion") != live_version:
        _count("apply", obj["kind"])
    return result


def get(api: ApiClient, api_version: str, plural: str, namespace: str, name: str) -> dict | None:
    return request(api, "GET", f"{collection_path(api_version, plural, namespace)}/{quote(name)}")


def list_objects(api: ApiClient, api_version: str, plural: str, namespace: str, selector: str) -> list[dict]:
    found = request(
        api, "GET", collection_path(api_version, plural, namespace), query={"labelSelector": selector}
    )
    items = (found or {}).get("items") or []
    kind = (found or {}).get("kind", "List").removesuffix("List")
    for item in items:  # list items carry no apiVersion/kind
        item.setdefault("apiVersion", api_version)
        item.setdefault("kind", kind)
    return items


def delete(api: ApiClient, obj: dict) -> None:
    request(api, "DELETE", object_path(obj), query={"propagationPolicy": "Background"})
    _count("delete", obj["kind"])


def scale_deployment(api: ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Write replicas through the Deployment's scale subresource (the autoscaler's only write path)."""
    path = f"{collection_path('apps/v1', 'deployments', namespace)}/{quote(name)}/scale"
    request(
        api,
        "PATCH",
        path,
        query={"fieldManager": FIELD_MANAGER},
        body={"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )
    _count("scale", "Deployment")


def patch_status(api: ApiClient, namespace: str, name: str, status: dict) -> None:
    path = f"{collection_path(f'{GROUP}/{VERSION}', PLURAL, namespace)}/{quote(name)}/status"
    request(
        api,
        "PATCH",
        path,
        query={"fieldManager": FIELD_MANAGER},
        body={"status": status},
        content_type="application/merge-patch+json",
    )
    _count("status", "HiggsDeployment")
