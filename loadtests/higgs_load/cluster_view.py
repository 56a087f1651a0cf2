"""--higgsdeployment NAMESPACE/NAME: the master (or a local runner) samples the HiggsDeployment's status
and events during the run in a greenlet, with the kubernetes client (kubeconfig from KUBECONFIG, else
in-cluster config). The figures come from higgs_load.autoscale_view. Not in the pure-module contract."""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import gevent.event

from higgs_load.autoscale_view import Sample

log = logging.getLogger("higgs_load")
GROUP, VERSION, PLURAL = "audio.higgs.dev", "v1alpha1", "higgsdeployments"
PERIOD_S = 1.0


def _clients() -> tuple[Any, Any]:
    from kubernetes import client, config

    try:
        config.load_kube_config()  # KUBECONFIG, else ~/.kube/config
    except Exception:
        config.load_incluster_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


class ClusterView:
    """Samples `namespace/name` every PERIOD_S seconds until stopped."""

    def __init__(self, ref: str, period_s: float = PERIOD_S) -> None:
        self.namespace, self.name = ref.split("/", 1)
        self.period_s = period_s
        self.samples: list[Sample] = []
        self.events: dict[str, dict] = {}
        self.errors: list[str] = []
        self._stop = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._stop.set()
        if self._greenlet is not None:
            self._greenlet.join(timeout=5)
        try:
            self._sample_once(*_clients())  # the state at the end of the run
        except Exception as exc:
            self._error(exc)

    def _error(self, exc: Exception) -> None:
        msg = f"{type(exc).__name__}: {exc}"[:300]
        if msg not in self.errors:
            self.errors.append(msg)
            log.warning("cluster view of %s/%s: %s", self.namespace, self.name, msg)

    def _run(self) -> None:
        try:
            apis = _clients()
        except Exception as exc:
            self._error(exc)
            return
        while not self._stop.is_set():
            try:
                self._sample_once(*apis)
            except Exception as exc:
                self._error(exc)
            self._stop.wait(self.period_s)

    def _sample_once(self, custom: Any, core: Any) -> None:
        hd = custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, _request_timeout=5
        )
        st = hd.get("status") or {}
        self.samples.append(
            Sample(
                time.time(),
                _int(st.get("replicas")),
                _int(st.get("readyReplicas")),
                _int(st.get("desiredReplicas")),
            )
        )
        evs = core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={self.name}", _request_timeout=5
        )
        for e in evs.items:
            when = e.last_timestamp or e.event_time or e.first_timestamp
            key = e.metadata.uid or f"{e.reason}{when}"
            # The name selects the HiggsDeployment's own events and those of its children of the same
            # name (Deployment, Service, Endpoints): the kind tells them apart.
            self.events[key] = {
                "t": when.timestamp() if when is not None else None,
                "kind": e.involved_object.kind if e.involved_object is not None else None,
                "type": e.type,
                "reason": e.reason,
                "message": (e.message or "")[:200],
                "count": e.count,
            }


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def start_view(ref: str) -> ClusterView | None:
    if not ref:
        return None
    view = ClusterView(ref)
    view.start()
    return view
