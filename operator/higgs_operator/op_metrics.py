"""The operator's own Prometheus metrics (operator/README.md "Metrics"), in a registry of its own.

The names are an interface: dashboards and alerts use them as they are. The handlers call the
module-level functions (they act on ``METRICS``); tests build their own ``OperatorMetrics``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

ERROR_KINDS = ("api", "render", "apply", "scrape", "status")
SCALING_SIGNALS = ("waiting", "streams", "kvcache", "min", "max", "failed_scrapes")
SIGNAL_GAUGES = ("waiting", "streams", "kvcache")  # per-replica values scraped from the pods
RESOURCE = ("namespace", "name")


class OperatorMetrics:
    """Every series the operator exports; one instance per registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter("higgs_operator_reconciles", "Reconciles by result", ["result"], registry=r)
        self.reconcile_duration = Histogram(
            "higgs_operator_reconcile_duration_seconds",
            "Duration of one reconcile (secret check, render, apply, prune)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.errors = Counter("higgs_operator_errors", "Errors by where they happened", ["kind"], registry=r)
        self.scaling_decisions = Counter(
            "higgs_operator_scaling_decisions",
            "Replica changes made by the operator's autoscaler, by the signal that decided",
            [*RESOURCE, "signal", "direction"],
            registry=r,
        )
        self.replicas = Gauge(
            "higgs_operator_replicas", "Desired and ready serving pods", [*RESOURCE, "state"], registry=r
        )
        self.max_replicas = Gauge(
            "higgs_operator_autoscaling_max_replicas",
            "spec.autoscaling.maxReplicas while the operator scales the deployment",
            RESOURCE,
            registry=r,
        )
        self.signal = Gauge(
            "higgs_operator_scaling_signal",
            "Last scraped per-replica value of each autoscaling signal",
            [*RESOURCE, "signal"],
            registry=r,
        )
        self.token_rotations = Counter(
            "higgs_operator_token_rotations",
            "Token Secret content changes that rolled the pods",
            RESOURCE,
            registry=r,
        )
        for result in ("success", "error"):
            self.reconciles.labels(result)  # both series exist from the start (rate() needs a zero)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)

    def record_reconcile(self, duration_s: float, ok: bool) -> None:
        self.reconciles.labels("success" if ok else "error").inc()
        self.reconcile_duration.observe(duration_s)

    def record_error(self, kind: str, count: int = 1) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"error kind {kind!r} is not one of {', '.join(ERROR_KINDS)}")
        if count > 0:
            self.errors.labels(kind).inc(count)

    @contextlib.contextmanager
    def counting_errors(
        self, kind: str, types: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> Iterator[None]:
        """Count an exception of ``types`` raised in the block as an error of ``kind``; re-raise it."""
        try:
            yield
        except types:
            self.record_error(kind)
            raise

    def record_scaling(self, namespace: str, name: str, signal: str, direction: str) -> None:
        if signal not in SCALING_SIGNALS:
            raise ValueError(f"scaling signal {signal!r} is not one of {', '.join(SCALING_SIGNALS)}")
        if direction not in ("up", "down"):
            raise ValueError(f"scaling direction {direction!r} is not up or down")
        self.scaling_decisions.labels(namespace, name, signal, direction).inc()

    def set_replicas(self, namespace: str, name: str, desired: int | None, ready: int) -> None:
        if desired is not None:
            self.replicas.labels(namespace, name, "desired").set(desired)
        self.replicas.labels(namespace, name, "ready").set(ready)

    def set_max_replicas(self, namespace: str, name: str, max_replicas: int | None) -> None:
        """None: the operator does not scale this deployment (autoscaling off or handed over)."""
        if max_replicas is None:
            self.max_replicas.remove(namespace, name)  # absent: no error
        else:
            self.max_replicas.labels(namespace, name).set(max_replicas)

    def set_signals(self, namespace: str, name: str, values: dict[str, float | None]) -> None:
        """Per-replica signal values; a signal given as None (or left out) loses its series."""
        for signal in SIGNAL_GAUGES:
            value = values.get(signal)
            if value is None:
                self.signal.remove(namespace, name, signal)
            else:
                self.signal.labels(namespace, name, signal).set(value)

    def record_token_rotation(self, namespace: str, name: str) -> None:
        self.token_rotations.labels(namespace, name).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Remove every series of a deleted HiggsDeployment."""
        for metric in (
            self.scaling_decisions,
            self.replicas,
            self.max_replicas,
            self.signal,
            self.token_rotations,
        ):
            metric.remove_by_labels({"namespace": namespace, "name": name})


METRICS = OperatorMetrics()

record_reconcile = METRICS.record_reconcile
record_error = METRICS.record_error
counting_errors = METRICS.counting_errors
record_scaling = METRICS.record_scaling
set_replicas = METRICS.set_replicas
set_max_replicas = METRICS.set_max_replicas
set_signals = METRICS.set_signals
record_token_rotation = METRICS.record_token_rotation
forget = METRICS.forget


def serve(port: int, host: str = "0.0.0.0", metrics: OperatorMetrics = METRICS) -> WSGIServer:
    """Serve ``metrics`` as Prometheus text at http://host:port/metrics from a daemon thread; the
    server is returned for ``shutdown()``. OSError when the address cannot be bound."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
