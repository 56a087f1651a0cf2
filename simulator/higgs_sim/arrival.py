"""When a request reached the server: the kernel's receive timestamp of its first bytes.

The trace's t_received is the start of the server's own TTFA, the reference the load-test instrument
is checked against. Stamped when the handler starts, it would leave out the time the request waited
in the socket while this one event loop wrote a decode step's chunks to hundreds of other streams,
which is server latency a client does see. So the event loop (`new_event_loop`) turns on
SO_TIMESTAMPNS for its listening and accepted TCP sockets and reads them with recvmsg(), and each
transport remembers when the first bytes since the last `take_arrival` arrived. Where there is no
stamp (other platforms, other loops, a test client) `take_arrival` returns None and the caller uses
its own clock.

Built on asyncio's selector transport (private API, stable since 3.7: `_make_socket_transport`,
`_read_ready__data_received`). The load-test package has the same SO_TIMESTAMPNS parsing
(higgs_load.body_reader) for the client's side; the two images ship separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import socket
import struct
import sys
from asyncio import selector_events
from typing import Any

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


class _StampingTransport(selector_events._SelectorSocketTransport):  # type: ignore[name-defined]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_arrival: float | None = None
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._stamped = True
        except OSError:
            self._stamped = False

    def _read_ready__data_received(self) -> None:
        # asyncio's own method, with recvmsg() in place of recv() to get the receive timestamp.
        if self._conn_lost:
            return
        try:
            if self._stamped:
                data, ancillary, _flags, _addr = self._sock.recvmsg(self.max_size, _ANCILLARY_SIZE)
            else:
                data, ancillary = self._sock.recv(self.max_size), []
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._read_ready__on_eof()
            return
        if self.first_arrival is None:
            self.first_arrival = kernel_time(ancillary)
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")


class StampingEventLoop(asyncio.SelectorEventLoop):
    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        server = await super().create_server(*args, **kwargs)
        if KERNEL_STAMPS:
            # Accepted sockets inherit the option, so a request that arrives before the loop accepts
            # its connection is stamped too (the kernel stamps only while some socket asks for it).
            for sock in server.sockets:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return server

    def _make_socket_transport(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: asyncio.AbstractServer | None = None,
    ) -> asyncio.Transport:
        if not KERNEL_STAMPS or sock.type != socket.SOCK_STREAM:
            transport: asyncio.Transport = super()._make_socket_transport(  # type: ignore[misc]
                sock, protocol, waiter, extra=extra, server=server
            )
            return transport
        return _StampingTransport(self, sock, protocol, waiter, extra, server)


def new_event_loop() -> asyncio.AbstractEventLoop:
    return StampingEventLoop()


def take_arrival(transport: object) -> float | None:
    """When the bytes received since the last call began to arrive (unix seconds), and start afresh.

    Called when a request's handler starts (its arrival) and again when it ends, so the next request on
    a keep-alive connection is stamped by its own first bytes, not by a late body read of this one."""
    arrival = getattr(transport, "first_arrival", None)
    if arrival is not None:
        transport.first_arrival = None  # type: ignore[attr-defined]
    return arrival
