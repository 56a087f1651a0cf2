"""The part of the kubelet API that `kubectl logs` needs, served by the agent for each fake node.

The API server reaches a node's kubelet at ``<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>``
(here ``127.42.<i+1>.1:10250``) over TLS with its kubelet client certificate. This server answers
``GET /containerLogs/{namespace}/{pod}/{container}`` (``follow``, ``tailLines``, ``limitBytes``,
``previous``) from the container log files, and ``/healthz``. Its serving certificate is
self-signed (made once with ``openssl``); clients must present a certificate of the cluster CA.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("localkube.kubelet_server")

LogLocator = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]] | None]


def ensure_serving_cert(directory: Path, ips: list[str]) -> tuple[Path, Path]:
    """A self-signed serving certificate for the node IPs (regenerated when the IP list changes)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, stamp = directory / "kubelet.crt", directory / "kubelet.key", directory / "ips"
    wanted = ",".join(sorted(ips))
    if cert.exists() and key.exists() and stamp.exists() and stamp.read_text() == wanted:
        return cert, key
    san = ",".join(f"IP:{ip}" for ip in ips) or "IP:127.0.0.1"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=localkube-kubelet",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    key.chmod(0o600)
    stamp.write_text(wanted)
    return cert, key


def tail_bytes(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def make_handler(locate: LogLocator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _plain(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                self._plain(200, "ok")
                return
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._plain(404, f"the local node agent serves only /containerLogs/..., not {url.path}")
                return
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            previous = query.get("previous") == "true"
            found = locate(parts[1], parts[2], parts[3], previous)
            if found is None:
                what = "previous terminated container" if previous else "container"
                self._plain(404, f'{what} "{parts[3]}" in pod "{parts[2]}" has no logs on this node')
                return
            path, running = found
            data = path.read_bytes() if path.exists() else b""
            data = tail_bytes(data, int(query.get("tailLines", "-1")))
            limit = int(query.get("limitBytes", "0") or 0)
            if limit > 0:
                data = data[:limit]
            follow = query.get("follow") == "true" and not previous
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if not follow:
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(data)
            self._follow(path, path.stat().st_size if path.exists() else 0, running)

        def _chunk(self, data: bytes) -> None:
            if data:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        def _follow(self, path: Path, offset: int, running: Callable[[], bool]) -> None:
            """Stream appended bytes until the container stops (or the client goes away)."""
            idle_after_exit = 0
            try:
                while idle_after_exit < 5:
                    size = path.stat().st_size if path.exists() else 0
                    if size < offset:  # a new instance started: its log replaced the file
                        offset = 0
                    if size > offset:
                        with open(path, "rb") as f:
                            f.seek(offset)
                            chunk = f.read(size - offset)
                        offset = size
                        self._chunk(chunk)
                        idle_after_exit = 0
                    elif not running():
                        idle_after_exit += 1
                    time.sleep(0.2)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class KubeletServer:
    """One TLS listener per node IP, all answering from the same log files."""

    def __init__(
        self, ips: list[str], port: int, cert: Path, key: Path, client_ca: str | None, locate: LogLocator
    ) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        if client_ca:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.servers: list[ThreadingHTTPServer] = []
        handler = make_handler(locate)
        for ip in ips:
            server = ThreadingHTTPServer((ip, port), handler)
            server.daemon_threads = True
            server.socket = self.ctx.wrap_socket(server.socket, server_side=True)
            self.servers.append(server)

    def start(self) -> None:
        for server in self.servers:
            addr = server.server_address
            threading.Thread(target=server.serve_forever, name=f"kubelet-api-{addr[0]}", daemon=True).start()
            log.info("kubelet API (container logs) on https://%s:%d", addr[0], addr[1])

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
