"""The agent's list+watch survives what an API server restart looks like: dropped streams, 410 Gone,
connection refused. A tiny fake API server on 127.0.0.1 plays those faults in order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from localkube.agent import Informer
from localkube.json_client import KubeClient


def _pod(name: str, rv: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": rv}}


class FakeApi(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    lists = 0
    watches = 0

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if "watch=1" not in self.path:
            FakeApi.lists += 1
            items = [_pod("a", "1")] if FakeApi.lists == 1 else [_pod("b", "5")]  # "a" vanished meanwhile
            self._json(200, {"metadata": {"resourceVersion": str(FakeApi.lists * 10)}, "items": items})
            return
        FakeApi.watches += 1
        if FakeApi.watches == 1:  # one event, then the stream drops (server going down)
            event = json.dumps({"type": "ADDED", "object": _pod("c", "2")}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(event) + 1000))  # promise more than we send
            self.end_headers()
            self.wfile.write(event)
            self.wfile.flush()
            self.connection.shutdown(2)
        elif FakeApi.watches == 2:  # back up, but our resourceVersion is too old
            gone = {
                "type": "ERROR",
                "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
            }
            data = json.dumps(gone).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:  # a healthy, quiet stream that ends soon
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[KubeClient]:
    FakeApi.lists = FakeApi.watches = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        })
    )  # fmt: skip
    api = KubeClient(str(kubeconfig), timeout=2.0)
    yield api
    api.close()
    server.shutdown()
    server.server_close()


def test_informer_relists_after_dropped_stream_and_gone(fake_api: KubeClient) -> None:
    events: list[tuple[str, str]] = []
    relists: list[set[str]] = []
    informer = Informer(
        fake_api, "/api/v1/pods", lambda t, o: events.append((t, o["metadata"]["name"])),
        lambda snap: relists.append({o["metadata"]["name"] for o in snap.values()}),
    )  # fmt: skip
    informer.start()
    try:
        deadline = time.monotonic() + 10
        while FakeApi.lists < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        informer.stopped.set()
        informer.join(5)
    assert FakeApi.lists >= 2, "the informer did not relist after the stream dropped and 410 Gone"
    assert ("ADDED", "a") in events and ("ADDED", "c") in events and ("ADDED", "b") in events
    assert relists[:2] == [{"a"}, {"b"}]  # the relist shows "a" gone: the agent stops its worker
    assert {o["metadata"]["name"] for o in informer.items()} == {"b"}
