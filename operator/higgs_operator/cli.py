"""`higgs-operator run`: start the kopf operator for HiggsDeployment resources."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
from pathlib import Path

import kopf
from kopf._core.engines.peering import Identity  # the type of kopf.operator(identity=); not re-exported

from . import handlers, kube, op_metrics
from .helm import helm_binary
from .reconcile import OperatorConfig
from .render import RenderError

DEFAULT_CHART = os.environ.get("HIGGS_CHART", "charts/higgs-audio")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="higgs-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    run.add_argument(
        "--chart", default=DEFAULT_CHART, help="path of the higgs-audio chart (default: %(default)s)"
    )
    run.add_argument(
        "--operator-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Secrets named by spec.hfToken.mirrorFrom (default: $POD_NAMESPACE or default)",
    )
    run.add_argument("--liveness", default=None, help="health endpoint URL, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--peering", default="higgs-operator", help="kopf peering name (default: %(default)s)")
    run.add_argument("--standalone", action="store_true", help="no peering: act even if other operators run")
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="kopf peering priority of this instance (default: random, so exactly one replica acts)",
    )
    run.add_argument("--resync-seconds", type=float, default=60.0, help="full re-apply period (drift repair)")
    run.add_argument("--status-seconds", type=float, default=5.0, help="status refresh period")
    run.add_argument(
        "--kube-version",
        default=None,
        help="Kubernetes version helm renders for (default: the API server's own, read at start and "
        "again every --kube-version-seconds)",
    )
    run.add_argument(
        "--kube-version-seconds",
        type=float,
        default=300.0,
        help="how often the API server's version is read again (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=9102,
        help="serve the operator's Prometheus metrics at /metrics on this port; 0: off (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        help="address the metrics endpoint listens on (default: %(default)s; the chart sets the pod's IP)",
    )
    run.add_argument("--verbose", "-v", action="store_true")
    return parser


class _QuietSuccess(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).endswith("succeeded."))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chart = Path(args.chart)
    if not (chart / "Chart.yaml").is_file():
        print(f"higgs-operator: --chart {chart}: no Chart.yaml there", file=sys.stderr)
        return 2
    try:
        helm_binary()
    except RenderError as err:
        print(f"higgs-operator: {err}", file=sys.stderr)
        return 2
    if args.resync_seconds <= 0 or args.status_seconds <= 0 or args.kube_version_seconds <= 0:
        print(
            "higgs-operator: --resync-seconds, --status-seconds and --kube-version-seconds must be > 0",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.metrics_port <= 65535:
        print(
            f"higgs-operator: --metrics-port {args.metrics_port} is not a port (1-65535; 0 turns metrics off)",
            file=sys.stderr,
        )
        return 2
    try:
        api = kube.api_client()
    except Exception as err:  # no config, unreadable or invalid: one clear line, not a traceback
        print(
            f"higgs-operator: no usable Kubernetes client configuration, in-cluster or in "
            f"{kube.kubeconfig_path()} ({type(err).__name__}: {err}); check KUBECONFIG",
            file=sys.stderr,
        )
        return 2
    kube_version: str | kube.ServerVersion | None = args.kube_version
    if kube_version is None:
        try:
            kube_version = kube.ServerVersion(api, kube.server_version(api), ttl_s=args.kube_version_seconds)
        except Exception as err:  # connection, TLS, auth: one clear line, not a traceback
            api.close()
            print(
                f"higgs-operator: cannot read the API server's version ({type(err).__name__}: {err}); "
                "check KUBECONFIG or pass --kube-version",
                file=sys.stderr,
            )
            return 2
    config = OperatorConfig(
        chart=str(chart.resolve()),
        operator_namespace=args.operator_namespace,
        resync_s=args.resync_seconds,
        status_s=args.status_seconds,
        kube_version=kube_version,
    )
    pod_name = os.environ.get("POD_NAME")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # One line per watch event ("Handler 'on_pod' succeeded") drowns what matters.
        logging.getLogger("kopf.objects").addFilter(_QuietSuccess())
        logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.metrics_port:
        try:
            op_metrics.serve(args.metrics_port, args.metrics_host)
        except OSError as err:  # taken port, unknown address: one clear line, not a traceback
            api.close()
            print(
                f"higgs-operator: cannot serve metrics on {args.metrics_host}:{args.metrics_port} ({err}); "
                "pick another --metrics-port or --metrics-host, or 0 to turn metrics off",
                file=sys.stderr,
            )
            return 2
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=args.all_namespaces,
                namespaces=args.namespace,
                standalone=args.standalone,
                # kopf lets peers of equal priority all act (with a warning): a random one per replica
                # makes the highest the only active one; the next takes over when its peer record expires.
                priority=args.priority if args.priority is not None else random.randint(1, 1_000_000),
                identity=Identity(pod_name) if pod_name else None,
                # A named peering is mandatory in kopf (the chart installs its CRDs); standalone needs none.
                peering_name=None if args.standalone else args.peering,
                liveness_endpoint=args.liveness,
                memo=handlers.operator_memo(config, api),
            )
        )
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
