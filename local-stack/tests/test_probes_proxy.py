"""Probes, the service resolver's endpoint computation and the TCP forwarder, on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localkube.probes import ContainerProber, ProbeContext, ProbeSpec, ProbeTracker, run_probe
from localkube.proxy import RoundRobin, TcpForwarder, parse_listen
from localkube.services import ServiceNotFound, endpoints_from_pods, endpoints_from_slices, find_service_port
from tests.support.ports import free_port


class _Handler(BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self) -> None:
        code = 200 if (self.path == "/ok" or (self.path == "/toggle" and _Handler.healthy)) else 503
        body = f"{self.path} {self.headers.get('X-Probe', '')}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def ctx(port: int) -> ProbeContext:
    return ProbeContext(
        "127.0.0.1",
        {"name": "c", "ports": [{"name": "http", "containerPort": port}]},
        {"PATH": "/usr/bin:/bin"},
    )


def test_http_tcp_exec_probes(http_server: int) -> None:
    c = ctx(http_server)
    assert run_probe({"httpGet": {"path": "/ok", "port": "http"}}, c, 1.0) == (True, "")
    ok, message = run_probe({"httpGet": {"path": "/bad", "port": http_server}}, c, 1.0)
    assert not ok and "statuscode: 503" in message
    assert run_probe({"tcpSocket": {"port": http_server}}, c, 1.0)[0]
    assert not run_probe({"tcpSocket": {"port": free_port()}}, c, 0.5)[0]  # a port nobody listens on
    assert run_probe({"exec": {"command": ["true"]}}, c, 1.0)[0]
    ok, message = run_probe({"exec": {"command": ["sh", "-c", "echo nope; exit 3"]}}, c, 1.0)
    assert not ok and message == "nope"
    ok, message = run_probe({"exec": {"command": ["sleep", "5"]}}, c, 0.2)
    assert not ok and "timed out" in message


def test_probe_never_leaves_loopback() -> None:
    ok, message = run_probe({"httpGet": {"host": "10.0.0.1", "port": 80}}, ctx(80), 1.0)
    assert not ok and "outside 127.0.0.0/8" in message


def test_tracker_thresholds() -> None:
    t = ProbeTracker(success_threshold=2, failure_threshold=3, result=False)
    assert not t.observe(True) and not t.result
    assert t.observe(True) and t.result
    assert not t.observe(False) and not t.observe(False) and t.result
    assert t.observe(False) and not t.result


def test_prober_startup_gates_readiness_and_liveness_fails(http_server: int) -> None:
    _Handler.healthy = True
    changes: list[str] = []
    failures: list[tuple[str, str]] = []
    specs = [
        ProbeSpec.from_probe(
            "startup", {"httpGet": {"path": "/ok", "port": http_server}, "periodSeconds": 0.1}
        ),
        ProbeSpec.from_probe(
            "readiness", {"httpGet": {"path": "/toggle", "port": http_server}, "periodSeconds": 0.1}
        ),
        ProbeSpec.from_probe(
            "liveness",
            {
                "httpGet": {"path": "/toggle", "port": http_server},
                "periodSeconds": 0.1,
                "failureThreshold": 2,
            },
        ),
    ]
    prober = ContainerProber(
        specs, ctx(http_server), lambda: changes.append("x"), lambda k, r, m: failures.append((k, m))
    )
    assert not prober.ready and not prober.started
    prober.start()
    try:
        deadline = time.monotonic() + 5
        while not prober.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert prober.started and prober.ready and prober.failed is None
        _Handler.healthy = False
        while prober.failed is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert prober.failed == "Container c failed liveness probe"
        assert any(kind == "liveness" and "503" in m for kind, m in failures)
    finally:
        prober.stop()
        prober.join(2)
        _Handler.healthy = True


# --- service endpoints ---------------------------------------------------------------------------
def _pod(name: str, ip: str, ready: bool, labels: dict | None = None, phase: str = "Running") -> dict:
    return {
        "metadata": {"name": name, "labels": labels or {"app": "a"}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8000}]}]},
        "status": {"phase": phase, "podIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


SERVICE = {
    "metadata": {"name": "svc"},
    "spec": {"selector": {"app": "a"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
}


def test_endpoints_from_ready_selected_pods() -> None:
    pods = [
        _pod("a", "127.42.1.2", True),
        _pod("b", "127.42.1.3", False),
        _pod("c", "127.42.2.2", True, {"app": "other"}),
        _pod("d", "127.42.2.3", True, phase="Succeeded"),
        _pod("e", "10.1.2.3", True),  # never outside loopback
    ]
    port = find_service_port(SERVICE, 80)
    assert find_service_port(SERVICE, "web") is port
    assert endpoints_from_pods(SERVICE, port, pods) == [("127.42.1.2", 8000)]
    numeric = {"name": "", "port": 80, "targetPort": 9000}
    assert endpoints_from_pods(SERVICE, numeric, pods) == [("127.42.1.2", 9000)]
    with pytest.raises(ServiceNotFound, match=r"no port 81 \(ports: web:80\)"):
        find_service_port(SERVICE, 81)


def test_endpoints_from_slices_ready_only() -> None:
    slices = [
        {
            "ports": [{"name": "web", "port": 8000}],
            "endpoints": [
                {"addresses": ["127.42.1.2"], "conditions": {"ready": True}},
                {"addresses": ["127.42.1.3"], "conditions": {"ready": False}},
            ],
        }
    ]
    assert endpoints_from_slices({"name": "web", "port": 80}, slices) == [("127.42.1.2", 8000)]


# --- forwarder -----------------------------------------------------------------------------------
def test_round_robin_and_loopback_only() -> None:
    rr = RoundRobin()
    assert rr.choose() is None
    rr.set([("127.0.0.3", 1), ("127.0.0.2", 1), ("8.8.8.8", 53)])
    assert [rr.choose() for _ in range(3)] == [("127.0.0.2", 1), ("127.0.0.3", 1), ("127.0.0.2", 1)]
    with pytest.raises(ValueError, match=r"outside 127\.0\.0\.0/8"):
        TcpForwarder("0.0.0.0", 1, rr.choose)
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)


def test_forwarder_pipes_both_ways(http_server: int) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        rr = RoundRobin()
        rr.set([("127.0.0.1", http_server)])
        fwd = TcpForwarder("127.0.0.1", 0, rr.choose)
        await fwd.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", fwd.port)
            w.write(b"GET /ok HTTP/1.0\r\nX-Probe: via-proxy\r\n\r\n")
            await w.drain()
            answer = await asyncio.wait_for(r.read(), 5)
            w.close()
            rr.set([])  # no endpoint: the connection is closed at once
            r2, w2 = await asyncio.open_connection("127.0.0.1", fwd.port)
            empty = await asyncio.wait_for(r2.read(), 5)
            w2.close()
            return answer, empty
        finally:
            await fwd.close()

    answer, empty = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"/ok via-proxy")
    assert empty == b""
