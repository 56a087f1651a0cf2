"""The trace's t_received is when the request reached the server's socket (the kernel's receive stamp),
not when the event loop got round to it: the reference the load-test instrument is measured against."""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from higgs_sim.arrival import KERNEL_STAMPS, SO_TIMESTAMPNS, kernel_time
from tests.support.simulator import Sim, launch, wait_for_trace

pytestmark = pytest.mark.skipif(
    not KERNEL_STAMPS, reason="kernel receive stamps are a Linux x86-64/arm64 feature"
)

BODY = b"{}"  # a 400 (no model, no messages) that still gets a trace line


def head(request_id: str, length: int = len(BODY)) -> bytes:
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
        f"X-Request-Id: {request_id}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    header, _, body = buf.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    length = next(
        int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), body


@pytest.fixture(scope="module")
def arrival_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sim, Path]]:
    tmp = tmp_path_factory.mktemp("arrival")
    trace = tmp / "trace.jsonl"
    sim = launch(
        ["--model", "bosonai/higgs-audio-v2-generation-3B-base", "--sim-trace-file", str(trace)], tmp
    )
    try:
        sim.wait_healthy()
        yield sim, trace
    finally:
        sim.stop()


def test_a_request_waiting_on_a_busy_loop_is_stamped_on_arrival(arrival_sim: tuple[Sim, Path]) -> None:
    sim, trace = arrival_sim
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as sock:
        os.kill(sim.proc.pid, signal.SIGSTOP)  # the loop cannot read: the request waits in the socket
        try:
            sent = time.time()
            sock.sendall(head("frozen-1") + BODY)
            time.sleep(0.4)
        finally:
            os.kill(sim.proc.pid, signal.SIGCONT)
        status, body = read_response(sock)
    assert status == 400, body
    rec = wait_for_trace(trace, "frozen-1")
    assert rec["t_received"] == pytest.approx(sent, abs=0.05)
    assert rec["t_handler"] - rec["t_received"] >= 0.35


def test_next_request_on_a_connection_is_stamped_by_its_own_bytes(arrival_sim: tuple[Sim, Path]) -> None:
    """A body that arrives after the handler started must not become the next request's arrival."""
    sim, trace = arrival_sim
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as sock:
        head_sent = time.time()
        sock.sendall(head("late-body"))
        time.sleep(0.3)
        sock.sendall(BODY)
        assert read_response(sock)[0] == 400
        time.sleep(0.2)
        sent = time.time()
        sock.sendall(head("next-1") + BODY)
        assert read_response(sock)[0] == 400
    first, second = wait_for_trace(trace, "late-body"), wait_for_trace(trace, "next-1")
    assert first["t_received"] == pytest.approx(head_sent, abs=0.05)
    assert sent - 0.001 <= second["t_received"] <= second["t_handler"] < sent + 0.5


def test_kernel_time_reads_the_timespec() -> None:
    blob = struct.pack("qq", 1_800_000_000, 250_000_000)
    assert kernel_time([(socket.SOL_SOCKET, SO_TIMESTAMPNS, blob)]) == pytest.approx(1_800_000_000.25)
    assert kernel_time([(socket.SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("qq", 0, 0))]) is None
    assert kernel_time([(socket.IPPROTO_IP, 1, blob)]) is None
    assert kernel_time([]) is None
