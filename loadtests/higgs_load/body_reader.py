"""Read a streamed HTTP response body as it arrives, with the time each read's bytes arrived.

The arrival time is the kernel's receive timestamp (SO_TIMESTAMPNS) where the socket gives one, not
the time this process got round to reading. One Locust process plays hundreds of listeners; when a
decode step hands them all a chunk at once, it reads them one after another, and a clock read after
recv() would charge the last ones with the time spent on the others. Each real listener is its own
device, so the moment the bytes reached this host is the better estimate of when it had the audio.
For TCP, recvmsg() reports the stamp of the last packet it consumed: the time the bytes read were
all there. Without a stamp (TLS sockets, other platforms, bytes buffered with the headers) the
reading process's clock is used, and the reader says so (`clock`).

Works on geventhttpclient's response internals (pinned): `_body_buffer`, `_sock`, `feed`. The simulator
has the same SO_TIMESTAMPNS parsing (higgs_sim.arrival) for the server's side; the two images ship
separately.
"""

from __future__ import annotations

import platform
import socket
import struct
import sys
import time

READ_SIZE = 65536
# Linux's asm-generic value (x86-64, arm64); Python's socket module does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
KERNEL_STAMPS = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "aarch64")
_ANCILLARY_SIZE = socket.CMSG_SPACE(16) if KERNEL_STAMPS else 0  # one struct timespec


def kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive timestamp (unix seconds) in recvmsg()'s ancillary data, if there is one."""
    for level, kind, blob in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(blob) >= 16:
            sec, nsec = struct.unpack("qq", blob[:16])
            if sec:
                return sec + nsec * 1e-9
    return None


class BodyReader:
    """`read()` returns the body bytes available now, waiting only until at least one byte arrives
    (b"" once the body is complete); `arrived` is when they arrived, on the time.perf_counter() clock.

    geventhttpclient's own read(n) blocks until n bytes are buffered, which would delay TTFA; this reads
    one socket receive at a time through the response's parser (chunked decoding included).
    """

    def __init__(self, resp) -> None:
        self.resp = resp
        self.arrived = time.perf_counter()  # bytes buffered with the headers arrived by now
        self.clock = "process"
        self._stamped = False
        sock = resp._sock
        if KERNEL_STAMPS and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self._stamped = True
            except OSError:
                pass

    def read(self) -> bytes:
        resp = self.resp
        while True:
            if resp._body_buffer:
                data = bytes(resp._body_buffer)
                del resp._body_buffer[:]
                return data
            if resp.message_complete:
                return b""
            sock = resp._sock
            if sock is None:
                raise ConnectionResetError("connection released before the body ended")
            data = self._receive(sock)
            if not data:
                raise ConnectionResetError("server closed the connection before the body ended")
            resp.feed(data)

    def _receive(self, sock) -> bytes:
        stamp = None
        if self._stamped:
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(READ_SIZE, _ANCILLARY_SIZE)
                stamp = kernel_time(ancillary)
            except NotImplementedError:  # TLS sockets have no recvmsg
                self._stamped = False
                data = sock.recv(READ_SIZE)
        else:
            data = sock.recv(READ_SIZE)
        now = time.perf_counter()
        if stamp is None:
            self.arrived, self.clock = now, "process"
        else:
            # The kernel stamps wall-clock time; carry its age over to the monotonic clock.
            self.arrived, self.clock = now - max(0.0, time.time() - stamp), "kernel"
        return data

    def read_all(self, limit: int = 65536) -> bytes:
        out = b""
        while len(out) < limit and (data := self.read()):
            out += data
        return out
