"""What a process listens on, read from /proc (Linux): sockets the tests must not find."""

from __future__ import annotations

import os


def tcp_listen_ports(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `pid` listens on, IPv4 and IPv6."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return set()
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            address, port = parts[1].split(":")
            if parts[3] == "0A" and f"socket:[{parts[9]}]" in inodes:
                out.add((_address(address), int(port, 16)))
    return out


def _address(hex_address: str) -> str:
    if len(hex_address) == 8:  # IPv4, little-endian
        return ".".join(str(int(hex_address[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return hex_address  # IPv6: the raw form is enough to compare
