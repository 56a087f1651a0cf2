"""BodyReader: each read's arrival time is when the bytes reached the socket (the kernel's stamp), not
when this process got round to reading them; over TLS it falls back to the process clock and says so.

A real HTTP exchange on 127.0.0.1: a server thread sends a chunked body one chunk at a time, and the
test holds back its read, as a load generator busy with other streams would."""

from __future__ import annotations

import queue
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from geventhttpclient import HTTPClient

from higgs_load.body_reader import KERNEL_STAMPS, BodyReader

HOLD_S = 0.3


class ChunkServer(threading.Thread):
    """Answers one request with a chunked body, sending each chunk when the test puts it in `go`."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls = tls
        self.go: queue.Queue[bytes | None] = queue.Queue()
        self.sent: list[float] = []  # perf_counter just before each chunk went out

    def run(self) -> None:
        conn, _ = self.listener.accept()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: audio/pcm\r\nTransfer-Encoding: chunked\r\n\r\n")
            while (chunk := self.go.get(timeout=10)) is not None:
                self.sent.append(time.perf_counter())
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.sendall(b"0\r\n\r\n")
        self.listener.close()


def exchange(server: ChunkServer, **client_kw: object) -> list[tuple[bytes, float, str, float]]:
    """Two chunks, each read HOLD_S after it was sent: (data, arrived, clock, read at) per read."""
    server.start()
    client = HTTPClient("127.0.0.1", server.port, network_timeout=10, **client_kw)  # type: ignore[arg-type]
    try:
        resp = client.request("GET", "/")
        reader = BodyReader(resp)
        reads = []
        for chunk in (b"\x01\x00" * 100, b"\x02\x00" * 50):
            server.go.put(chunk)
            time.sleep(HOLD_S)  # not gevent's: nothing reads the socket meanwhile
            data = reader.read()
            reads.append((data, reader.arrived, reader.clock, time.perf_counter()))
        server.go.put(None)
        assert reader.read() == b"" and resp.message_complete
        return reads
    finally:
        client.close()
        server.join(timeout=10)


@pytest.mark.skipif(not KERNEL_STAMPS, reason="kernel receive stamps are a Linux x86-64/arm64 feature")
def test_arrival_is_the_kernel_stamp_not_the_read() -> None:
    server = ChunkServer()
    reads = exchange(server)
    assert [r[0] for r in reads] == [b"\x01\x00" * 100, b"\x02\x00" * 50]
    for (_data, arrived, clock, read_at), sent in zip(reads, server.sent, strict=True):
        assert clock == "kernel"
        assert sent <= arrived < sent + 0.05  # when it came, not...
        assert read_at - arrived >= HOLD_S - 0.01  # ...when it was read


def test_tls_falls_back_to_the_process_clock(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = ChunkServer(tls)
    reads = exchange(server, ssl=True, insecure=True, ssl_options={"ca_certs": str(cert)})
    assert [r[0] for r in reads] == [b"\x01\x00" * 100, b"\x02\x00" * 50]
    for (_data, arrived, clock, read_at), sent in zip(reads, server.sent, strict=True):
        assert clock == "process"  # TLS sockets have no recvmsg: stamped when read
        assert arrived >= sent + HOLD_S - 0.01 and arrived <= read_at
