"""A small JSON client for the node agent: plain dicts in and out, explicit timeouts, raw watches.

The generated kubernetes client deserializes into typed models; the agent mostly copies fields
around, so dicts are simpler and keep unknown fields. Credentials come from the kubeconfig through
``kubernetes.config`` (which writes embedded certificates to temporary files).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeClient:
    def __init__(self, kubeconfig: str, timeout: float = 10.0, user_agent: str = "localkube-agent") -> None:
        cfg = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.server = cfg.host.rstrip("/")
        self.ca_file = cfg.ssl_ca_cert
        self.ctx = (
            ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.ssl_ca_cert
            else ssl.create_default_context()
        )
        if cfg.cert_file and cfg.key_file:
            self.ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if token:
            self.headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
        self.timeout = timeout
        self._http = self._new_http()

    def _new_http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server, verify=self.ctx, headers=self.headers, timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    # --- plain requests -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict | None = None,
        content_type: str = "application/json",
    ) -> dict:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else {}
        try:
            resp = self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"{method} {path}: {exc!r}", "ConnectionError") from exc
        if resp.status_code >= 400:
            try:
                status = resp.json()
                raise ApiError(resp.status_code, status.get("message", resp.text), status.get("reason", ""))
            except ValueError:
                raise ApiError(resp.status_code, resp.text[:500]) from None
        return resp.json() if resp.content else {}

    def get(self, path: str, params: dict | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", path, params=params)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path: str, **params: Any) -> dict:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict, content_type: str = MERGE_PATCH) -> dict:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: dict | None = None) -> dict | None:
        try:
            return self.request("DELETE", path, body)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # --- watches --------------------------------------------------------------------------------
    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 300, **params: Any
    ) -> Iterator[dict]:
        """Watch events (dicts with type/object) from resource_version until the server closes the stream."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            **params,
        }
        timeout = httpx.Timeout(self.timeout, read=timeout_seconds + 30)
        try:
            with (
                httpx.Client(
                    base_url=self.server, verify=self.ctx, headers=self.headers, timeout=timeout
                ) as http,
                http.stream("GET", path, params=query) as resp,
            ):
                if resp.status_code >= 400:
                    resp.read()
                    raise ApiError(resp.status_code, resp.text[:500])
                for line in resp.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"watch {path}: {exc!r}", "ConnectionError") from exc


def ns_path(namespace: str, resource: str, name: str = "", sub: str = "", group: str = "") -> str:
    """/api/v1/namespaces/ns/pods[/name[/status]] (or /apis/<group>/... for a group)."""
    base = f"/apis/{group}" if group else "/api/v1"
    path = f"{base}/namespaces/{namespace}/{resource}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path
