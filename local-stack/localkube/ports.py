"""Which process listens on a TCP port, read from /proc (no ss/lsof needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .daemons import proc_info

_LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    port: int
    address: str
    inode: int
    pid: int | None  # None when the owner is not visible (another user's process, another namespace)
    command: str


def _decode_address(hex_addr: str) -> str:
    if len(hex_addr) == 8:  # IPv4, little-endian
        raw = bytes.fromhex(hex_addr)[::-1]
        return ".".join(str(b) for b in raw)
    words = [bytes.fromhex(hex_addr[i : i + 8])[::-1] for i in range(0, 32, 8)]
    raw = b"".join(words)
    return ":".join(raw[i : i + 2].hex() for i in range(0, 16, 2))


def _listening_sockets() -> list[tuple[int, str, int]]:
    """(port, address, inode) of every TCP socket in LISTEN state, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            addr, port_hex = fields[1].rsplit(":", 1)
            found.append((int(port_hex, 16), _decode_address(addr), int(fields[9])))
    return found


def _socket_owners(inodes: set[int]) -> dict[int, int]:
    """Map socket inode -> pid by scanning /proc/<pid>/fd."""
    owners: dict[int, int] = {}
    if not inodes:
        return owners
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    owners.setdefault(inode, int(entry))
    return owners


def listeners_on(ports: set[int]) -> list[Listener]:
    """Every listening socket on one of `ports`, with its owning process when visible."""
    sockets = [s for s in _listening_sockets() if s[0] in ports]
    owners = _socket_owners({inode for _, _, inode in sockets})
    out = []
    for port, address, inode in sockets:
        pid = owners.get(inode)
        info = proc_info(pid) if pid is not None else None
        out.append(Listener(port, address, inode, pid, info.cmdline if info else ""))
    return out


def describe_owner(listener: Listener) -> str:
    if listener.pid is None:
        return "a process this user cannot see"
    command = listener.command if len(listener.command) <= 100 else listener.command[:97] + "..."
    return f"pid {listener.pid} ({command or 'unknown command'})"
