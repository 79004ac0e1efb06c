"""Tailscale policy syntax shared by the validator and the evaluator.

Only what Tailscale documents: `[proto:]ports` entries of a grant's `ip`, protocol names
and IANA numbers, the autogroups and where each may stand.
"""

from __future__ import annotations

import ipaddress
import re

# Protocol names Tailscale accepts, with their IANA numbers (numbers are accepted too).
PROTOCOLS = {"icmp": 1, "igmp": 2, "ipv4": 4, "ip-in-ip": 4, "tcp": 6, "egp": 8, "igp": 9,
             "udp": 17, "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": 58, "sctp": 132}

# Every autogroup, and the sections it may appear in (Tailscale rejects the others).
AUTOGROUPS = {
    "autogroup:member": "src/dst", "autogroup:tagged": "src/dst", "autogroup:admin": "src/dst",
    "autogroup:owner": "src/dst", "autogroup:it-admin": "src/dst",
    "autogroup:network-admin": "src/dst", "autogroup:billing-admin": "src/dst",
    "autogroup:auditor": "src/dst", "autogroup:shared": "src",
    "autogroup:self": "dst", "autogroup:internet": "dst",
    "autogroup:nonroot": "ssh-users", "autogroup:danger-all": "src/dst",
}
ROLES = ("autogroup:admin", "autogroup:owner", "autogroup:it-admin", "autogroup:network-admin",
         "autogroup:billing-admin", "autogroup:auditor")
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


class SyntaxProblem(ValueError):
    """A policy value Tailscale's API would reject."""


def protocol(name: str) -> int:
    """The IANA number of a protocol given by name or number."""
    if name.isdigit() and 0 <= int(name) <= 255:
        return int(name)
    if name.lower() in PROTOCOLS:
        return PROTOCOLS[name.lower()]
    raise SyntaxProblem(f"unknown protocol '{name}' (use tcp, udp, icmp, sctp or a number)")


def port_range(part: str) -> tuple[int, int]:
    """'443' -> (443, 443); '8000-8100' -> (8000, 8100); '*' -> (1, 65535)."""
    if part == "*":
        return 1, 65535
    low, _, high = part.partition("-")
    if not low.isdigit() or not (high or low).isdigit():
        raise SyntaxProblem(f"'{part}' is not a port, a range or '*'")
    lo, hi = int(low), int(high or low)
    for port in (lo, hi):
        if not 1 <= port <= 65535:
            raise SyntaxProblem(f"port {port} is outside 1-65535")
    if lo > hi:
        raise SyntaxProblem(f"port range '{part}' runs backwards")
    return lo, hi


def ip_spec(spec: str) -> tuple[int | None, list[tuple[int, int]]]:
    """A grant `ip` entry: (protocol number or None for any, port ranges).

    `*` alone is every protocol and port; `tcp:*` every TCP port; `22` TCP and UDP port 22.
    """
    if spec == "*":
        return None, [(1, 65535)]
    proto, sep, ports = spec.rpartition(":")
    number = protocol(proto) if sep and proto != "*" else None
    return number, [port_range(p) for p in ports.split(",")]


def network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """An IP literal or CIDR as a network (a single address is a /32 or /128)."""
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def is_range(value: str) -> bool:
    """Whether a value names a range of addresses rather than one device."""
    net = network(value)
    return net is not None and net.num_addresses > 1
