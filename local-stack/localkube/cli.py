"""`higgs-localkube`: up, down, status and env of the local cluster; `agent` runs the fake GPU node agent."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .cluster import LocalCluster, StepError
from .settings import ConfigError, Settings

USAGE_ENV = """\
environment:
  HIGGS_REPO_ROOT              project root (default: the checkout this package is installed from)
  HIGGS_CLUSTER_DIR            state directory (default <repo>/.cache/cluster)
  HIGGS_APISERVER_PORT         kube-apiserver port (6443)
  HIGGS_ETCD_PORT, HIGGS_ETCD_PEER_PORT            etcd ports (23790, 23800)
  HIGGS_CONTROLLER_MANAGER_PORT, HIGGS_SCHEDULER_PORT  (10257, 10259)
  HIGGS_SERVICE_CIDR           ClusterIP range (127.100.0.0/16)
  HIGGS_POD_IP_OCTET           pod IPs are 127.<octet>.<node+1>.<n> (42)
  HIGGS_FAKE_GPU_NODES         fake GPU nodes (2; 0 = control plane only)
  HIGGS_GPUS_PER_NODE          nvidia.com/gpu per node (1)
  HIGGS_CACHE                  binaries cache (~/.cache/higgs-k8s)
  HIGGS_LOCALKUBE_IMAGES       image -> local command map (hack/localkube-images.yaml)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="higgs-localkube",
        description="Local Kubernetes control plane with fake GPU nodes (all on 127.0.0.1).",
        epilog=USAGE_ENV,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,down,status,env,agent,proxy}")
    sub.add_parser("up", help="start (or repair) the cluster and wait for Ready nodes")
    down = sub.add_parser("down", help="stop everything; certificates and data stay")
    down.add_argument("--purge", action="store_true", help="also delete the state directory")
    sub.add_parser("status", help="components, nodes and the KUBECONFIG line")
    sub.add_parser("env", help="print export lines for KUBECONFIG and PATH")
    sub.add_parser(
        "agent", help="run the fake GPU node agent (see `higgs-localkube agent --help`)", add_help=False
    )
    sub.add_parser(
        "proxy",
        help="forward a local port to a Service's ready pods (see `higgs-localkube proxy --help`)",
        add_help=False,
    )
    return parser


def _run_agent(argv: Sequence[str]) -> int:
    try:
        agent = importlib.import_module("localkube.agent")
    except ModuleNotFoundError as exc:
        if exc.name != "localkube.agent":
            raise
        print(
            "ERROR [agent]: the node agent module localkube.agent is not installed in this checkout",
            file=sys.stderr,
        )
        return 2
    result = agent.main(list(argv))
    return int(result or 0)


class _Printer:
    """Progress lines, flushed at once; if the reader goes away (`| head`), the work still finishes."""

    def __init__(self) -> None:
        self.closed = False

    def __call__(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:
            self.closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The agent parses its own flags: hand over everything after the word `agent`.
    if argv[:1] == ["agent"]:
        return _run_agent(argv[1:])
    if argv[:1] == ["proxy"]:  # a foreground Service proxy (see localkube.proxy)
        from .proxy import main as proxy_main

        return int(proxy_main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        cluster = LocalCluster(settings, out=_Printer())
        if args.command == "up":
            cluster.up()
        elif args.command == "down":
            cluster.down(purge=args.purge)
        elif args.command == "status":
            return 0 if cluster.status() else 3
        elif args.command == "env":
            print("\n".join(cluster.env_lines()))
    except ConfigError as exc:
        print(f"ERROR [settings]: {exc}", file=sys.stderr)
        return 2
    except StepError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:
        # Output piped into something that stopped reading (`| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(
            "interrupted; run `make cluster-up` again to finish or `make cluster-down` to stop",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
