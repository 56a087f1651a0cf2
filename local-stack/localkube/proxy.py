"""A userspace TCP service proxy (like kube-proxy's old userspace mode), loopback only.

* :class:`TcpForwarder` listens on one address and pipes each connection to a backend chosen by
  a callback (round-robin over the ready endpoints).
* :class:`ServiceProxy` (run by the node agent) keeps one forwarder per port of every ClusterIP
  Service whose clusterIP is in 127.0.0.0/8, following Service and pod changes.
* ``higgs-localkube proxy --namespace NS --service NAME --port P --listen 127.0.0.1:LPORT`` (:func:`main`)
  runs one forwarder in the foreground, resolving the Service through the API.

Neither the listen address nor a backend may be outside 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable

from .pods import is_loopback

log = logging.getLogger("localkube.proxy")

Backend = tuple[str, int]
Chooser = Callable[[], Backend | None]


class RoundRobin:
    """Cycles over the current endpoint list; a changed list restarts the cycle."""

    def __init__(self) -> None:
        self._endpoints: list[Backend] = []
        self._cycle: itertools.cycle | None = None
        self._lock = threading.Lock()

    def set(self, endpoints: list[Backend]) -> None:
        endpoints = sorted(e for e in endpoints if is_loopback(e[0]))
        with self._lock:
            if endpoints != self._endpoints:
                self._endpoints = endpoints
                self._cycle = itertools.cycle(endpoints) if endpoints else None

    def choose(self) -> Backend | None:
        with self._lock:
            return next(self._cycle) if self._cycle else None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


class TcpForwarder:
    def __init__(self, host: str, port: int, choose: Chooser, connect_timeout: float = 5.0) -> None:
        if not is_loopback(host):
            raise ValueError(f"listen address {host} is outside 127.0.0.0/8: refused")
        self.host, self.port = host, port
        self.choose = choose
        self.connect_timeout = connect_timeout
        self.server: asyncio.base_events.Server | None = None
        self.connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        if self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        backend = self.choose()
        try:
            if backend is None or not is_loopback(backend[0]):
                log.info("%s:%d: no ready endpoint; closing connection", self.host, self.port)
                return
            try:
                back_r, back_w = await asyncio.wait_for(
                    asyncio.open_connection(*backend), self.connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                log.info("%s:%d -> %s:%d failed: %s", self.host, self.port, *backend, exc)
                return
            try:
                await asyncio.gather(_pipe(client_r, back_w), _pipe(back_r, client_w))
            finally:
                back_w.close()
        finally:
            client_w.close()


def service_backends(service: dict, svc_port: dict, pods: list[dict]) -> list[Backend]:
    from .services import endpoints_from_pods

    return endpoints_from_pods(service, svc_port, pods)


class ServiceProxy(threading.Thread):
    """The agent's ClusterIP proxy: forwarders follow :meth:`sync` calls (Services + pods)."""

    def __init__(self) -> None:
        super().__init__(name="service-proxy", daemon=True)
        self.loop = asyncio.new_event_loop()
        self.forwarders: dict[tuple[str, int], tuple[TcpForwarder, RoundRobin]] = {}
        self.failed: set[tuple[str, int]] = set()
        self._ready = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()

    def sync(
        self,
        services: list[dict],
        pods: list[dict],
        fixed: dict[tuple[str, str], list[Backend]] | None = None,
    ) -> None:
        """Listeners for every loopback ClusterIP port; endpoints from the ready pods.

        ``fixed`` gives the backends of Services without pods, by (namespace, name): the
        ``kubernetes`` Service -> the API server.
        """
        fixed = fixed or {}
        wanted: dict[tuple[str, int], list[Backend]] = {}
        for svc in services:
            spec = svc.get("spec") or {}
            ip = spec.get("clusterIP") or ""
            if spec.get("type", "ClusterIP") not in (
                "ClusterIP",
                "NodePort",
                "LoadBalancer",
            ) or not is_loopback(ip):
                continue
            ns = svc["metadata"].get("namespace")
            ns_pods = [p for p in pods if p["metadata"].get("namespace") == ns]
            for port in spec.get("ports") or []:
                if port.get("protocol", "TCP") != "TCP":
                    continue
                backends = fixed.get((ns, svc["metadata"]["name"]))
                wanted[(ip, int(port["port"]))] = backends or service_backends(svc, port, ns_pods)
        self._ready.wait(5)
        asyncio.run_coroutine_threadsafe(self._apply(wanted), self.loop).result(10)

    async def _apply(self, wanted: dict[tuple[str, int], list[Backend]]) -> None:
        for key in list(self.forwarders):
            if key not in wanted:
                forwarder, _ = self.forwarders.pop(key)
                await forwarder.close()
                log.info("service proxy: stopped %s:%d", *key)
        for key, backends in wanted.items():
            if key not in self.forwarders:
                rr = RoundRobin()
                forwarder = TcpForwarder(key[0], key[1], rr.choose)
                try:
                    await forwarder.start()
                except OSError as exc:
                    if key not in self.failed:
                        log.warning("service proxy: cannot listen on %s:%d: %s", *key, exc)
                        self.failed.add(key)
                    continue
                self.failed.discard(key)
                self.forwarders[key] = (forwarder, rr)
                log.info("service proxy: listening on %s:%d", *key)
            self.forwarders[key][1].set(backends)

    def stop(self) -> None:
        async def close_all() -> None:
            for forwarder, _ in self.forwarders.values():
                await forwarder.close()

        if self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(3)
            self.loop.call_soon_threadsafe(self.loop.stop)


# --- foreground command -------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: expected HOST:PORT such as 127.0.0.1:8000")
    if not is_loopback(host):
        raise argparse.ArgumentTypeError(f"--listen {text!r}: the address must be in 127.0.0.0/8")
    return host, int(port)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="higgs-localkube proxy", description="Forward a local port to a Service."
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig (default: $KUBECONFIG)")
    parser.add_argument("--namespace", "-n", default="default")
    parser.add_argument("--service", required=True)
    parser.add_argument("--port", required=True, help="the Service port (number or name)")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 0), help="HOST:PORT (loopback)")
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between endpoint refreshes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s proxy %(levelname)s %(message)s", stream=sys.stderr
    )
    import os

    from .json_client import ApiError, KubeClient
    from .services import ServiceNotFound, resolve_endpoints

    kubeconfig = opts.kubeconfig or os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print("error: no kubeconfig: pass --kubeconfig or set KUBECONFIG", file=sys.stderr)
        return 2
    api = KubeClient(kubeconfig, user_agent="localkube-proxy")
    port: int | str = int(opts.port) if str(opts.port).isdigit() else opts.port
    rr = RoundRobin()
    try:
        rr.set(resolve_endpoints(api, opts.namespace, opts.service, port))
    except (ServiceNotFound, ApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    last = [time.monotonic()]

    def choose() -> Backend | None:
        if time.monotonic() - last[0] > opts.refresh:
            last[0] = time.monotonic()
            with contextlib.suppress(ServiceNotFound, ApiError):
                rr.set(resolve_endpoints(api, opts.namespace, opts.service, port))
        return rr.choose()

    async def serve() -> None:
        forwarder = TcpForwarder(opts.listen[0], opts.listen[1], choose)
        try:
            await forwarder.start()
        except OSError as exc:
            print(
                f"error: cannot listen on {opts.listen[0]}:{opts.listen[1]}: {exc.strerror}", file=sys.stderr
            )
            raise SystemExit(1) from None
        print(
            f"Forwarding from {forwarder.host}:{forwarder.port}"
            f" -> service {opts.namespace}/{opts.service}:{port}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await forwarder.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
