"""Resolve a Service to the URLs of its ready endpoints, as the endpointslice controller would.

The API server refuses loopback addresses in Endpoints/EndpointSlices, so on the local stack the
slices of a Service are empty (or hold nothing usable): :func:`resolve_service` then computes the
answer from the ready pods matching the Service's selector, with the targetPort resolved (a
number, or a container port name). Only loopback endpoints are ever returned.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .pods import is_loopback


class ServiceNotFound(LookupError):
    pass


def _reader(api: Any) -> Callable[[str, dict | None], dict | None]:
    """GET path -> dict (None on 404) for a KubeClient, a kubernetes ApiClient or an API object."""
    if hasattr(api, "get") and hasattr(api, "server"):  # localkube.json_client.KubeClient

        def get_kc(path: str, params: dict | None) -> dict | None:
            return api.get(path, params=params)

        return get_kc
    api_client = getattr(api, "api_client", api)
    from kubernetes.client.exceptions import ApiException

    def get(path: str, params: dict | None) -> dict | None:
        try:
            resp = api_client.call_api(
                *api_client.param_serialize(
                    method="GET",
                    resource_path=path,
                    query_params=list((params or {}).items()),
                    header_params={"Accept": "application/json"},
                    auth_settings=["BearerToken"],
                )
            )
            resp.read()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if resp.status == 404:
            return None
        if resp.status >= 400:
            raise ApiException(status=resp.status, reason=resp.reason)
        return json.loads(resp.data)

    return get


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    if pod.get("metadata", {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def find_service_port(service: dict, port: int | str) -> dict:
    ports = (service.get("spec") or {}).get("ports") or []
    for p in ports:
        if (
            p.get("port") == port
            or (p.get("name") and p.get("name") == port)
            or str(p.get("port")) == str(port)
        ):
            return p
    if port in (None, "") and len(ports) == 1:
        return ports[0]
    name = service["metadata"]["name"]
    have = ", ".join(f"{p.get('name') or '-'}:{p.get('port')}" for p in ports) or "none"
    raise ServiceNotFound(f"service {name} has no port {port!r} (ports: {have})")


def pod_target_port(pod: dict, target: int | str, protocol: str = "TCP") -> int | None:
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for cport in container.get("ports") or []:
            if cport.get("name") == target and cport.get("protocol", "TCP") == protocol:
                return int(cport["containerPort"])
    return None


def endpoints_from_pods(service: dict, svc_port: dict, pods: list[dict]) -> list[tuple[str, int]]:
    """(ip, port) of each ready pod selected by the Service, targetPort resolved per pod."""
    selector = (service.get("spec") or {}).get("selector") or {}
    target = svc_port.get("targetPort", svc_port["port"])
    out = []
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP", "")
        if (
            not selector_matches(selector, pod["metadata"].get("labels") or {})
            or not pod_ready(pod)
            or not ip
        ):
            continue
        port = pod_target_port(pod, target, svc_port.get("protocol", "TCP"))
        if port is not None and is_loopback(ip):
            out.append((ip, port))
    return sorted(set(out))


def endpoints_from_slices(svc_port: dict, slices: list[dict]) -> list[tuple[str, int]]:
    out = []
    name = svc_port.get("name") or ""
    for es in slices:
        ports = [p for p in es.get("ports") or [] if (p.get("name") or "") == name]
        for ep in es.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for addr in ep.get("addresses") or []:
                if is_loopback(addr):
                    out.extend((addr, int(p["port"])) for p in ports)
    return sorted(set(out))


def resolve_endpoints(api: Any, namespace: str, name: str, port: int | str) -> list[tuple[str, int]]:
    get = _reader(api)
    service = get(f"/api/v1/namespaces/{namespace}/services/{name}", None)
    if service is None:
        raise ServiceNotFound(f'service "{name}" not found in namespace "{namespace}"')
    svc_port = find_service_port(service, port)
    slices = get(
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        {"labelSelector": f"kubernetes.io/service-name={name}"},
    )
    found = endpoints_from_slices(svc_port, (slices or {}).get("items") or [])
    if found:
        return found
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return []
    label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": label_selector}) or {}
    return endpoints_from_pods(service, svc_port, pods.get("items") or [])


def resolve_service(api: Any, namespace: str, name: str, port: int | str) -> list[str]:
    """``http://ip:port`` for every ready endpoint of the Service's port (number or name); [] if none.

    ``api``: a kubernetes ``ApiClient`` (or any API object such as ``CoreV1Api``), or the agent's
    ``KubeClient``. Raises :class:`ServiceNotFound` when the Service or port does not exist.
    """
    return [f"http://{ip}:{p}" for ip, p in resolve_endpoints(api, namespace, name, port)]
