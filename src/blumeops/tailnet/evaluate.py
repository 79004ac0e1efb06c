"""An offline evaluator of the lab's Tailscale policy: may SRC reach DST:PORT, and SSH as USER?

Tailscale checks a policy's tests only when the policy is uploaded; this answers the same
questions before anything leaves the machine, with Tailscale's meaning of each selector:
a tag selects the devices carrying it, `autogroup:tagged` every tagged device, a user (or
group, `autogroup:member`, `autogroup:admin`, `autogroup:self`) the devices users own, an IP
or `hosts` alias the device with that address and a CIDR every device inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blumeops.tailnet.policy import Device, Policy
from blumeops.tailnet.syntax import ROLES, SyntaxProblem, ip_spec, is_range, network, protocol


@dataclass(frozen=True)
class Verdict:
    src: str
    dst: str
    expected: bool | None  # None for a plain question
    allowed: bool
    reason: str
    proto: str = "tcp"

    @property
    def passed(self) -> bool:
        return self.expected is None or self.expected == self.allowed


@dataclass(frozen=True)
class SSHVerdict:
    """One SSH test: from src to dst as user, expected accept/check/deny, got one of those."""

    src: str
    dst: str
    user: str
    expected: str | None
    got: str
    reason: str

    @property
    def passed(self) -> bool:
        return self.expected is None or self.expected == self.got


class UnknownTarget(ValueError):
    """A test names a device the lab does not have, or is not a single device."""


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a device (its tags, owner, address) or a user's device."""

    label: str
    tags: frozenset[str] = frozenset()
    owner: str | None = None  # the user, for untagged devices and user sources
    ip: str | None = None

    @property
    def user(self) -> str | None:
        return None if self.tags else self.owner


def _endpoint(device: Device) -> Endpoint:
    return Endpoint(device.name, frozenset(device.tags), device.owner, device.ip)


def device_for(policy: Policy, selector: str) -> Device | None:
    """The device a name, its own tag (`tag:NAME`), a `hosts` alias or its IP designates."""
    if selector in policy.devices:
        return policy.devices[selector]
    if selector.startswith("tag:"):
        device = policy.devices.get(selector[4:])
        if device is not None and selector in device.tags:
            return device
        return None
    address = policy.hosts.get(selector, selector)
    net = network(address)
    if net is not None and net.num_addresses == 1:
        for device in policy.devices.values():
            if device.ip is not None and network(device.ip) == net:
                return device
    return None


def resolve(policy: Policy, name: str, role: str = "device") -> Endpoint:
    """A test's src or dst as an endpoint; a range or an unknown name is an error."""
    device = device_for(policy, name)
    if device is not None:
        return _endpoint(device)
    if name.startswith("tag:"):
        return Endpoint(name, frozenset({name}))  # a device carrying this tag
    if "@" in name and not name.startswith(("group:", "autogroup:")):
        return Endpoint(name, owner=name)  # a device the user owns
    address = policy.hosts.get(name, name)
    if is_range(address):
        raise UnknownTarget(f"'{name}' is a range ({address}), not a device: "
                            "test a single address")
    if network(address) is not None:
        return Endpoint(name, ip=address)
    known = ", ".join(sorted(policy.devices)) or "none"
    raise UnknownTarget(f"unknown {role} '{name}' (known: {known})")


def matches(policy: Policy, selector: str, end: Endpoint, self_user: str | None = None) -> bool:
    """Whether a grant or SSH selector covers an endpoint."""
    if selector in ("*", "autogroup:danger-all"):
        return True
    if selector.startswith("tag:"):
        return selector in end.tags
    if selector == "autogroup:tagged":
        return bool(end.tags)
    user = end.user
    if selector == "autogroup:member":
        return user is not None and user in policy.members
    if selector == "autogroup:admin":
        return user is not None and user in policy.admins
    if selector in ROLES:
        return False  # other roles (owner, auditor, ...) are not declared in the catalog
    if selector == "autogroup:self":
        return user is not None and user == self_user
    if selector.startswith("autogroup:"):
        return False  # autogroup:internet, autogroup:shared: nothing inside the tailnet
    if selector.startswith("group:"):
        return user is not None and user in policy.groups.get(selector, ())
    if "@" in selector:
        return user == selector
    net = network(policy.hosts.get(selector, selector))
    if net is not None:
        address = network(end.ip) if end.ip else None
        return address is not None and address.num_addresses == 1 and address[0] in net
    return selector == end.label  # a bare device name (catalog-only policies)


def port_matches(spec: str, port: int | None, proto: str = "tcp") -> bool:
    """Whether a grant's `ip` entry covers a port of a protocol.

    `*` covers everything; a bare port list covers TCP and UDP; ICMP has no ports, so an
    `icmp:` entry covers any ICMP test whatever port it names.
    """
    try:
        number, ranges = ip_spec(spec)
        wanted = protocol(proto)
    except SyntaxProblem:
        return False
    if spec == "*":
        return True
    if number is None:
        if wanted not in (6, 17):
            return False
    elif number != wanted:
        return False
    if wanted == 1 or port is None:
        return True
    return any(lo <= port <= hi for lo, hi in ranges)


def split_dst(dst: str) -> tuple[str, int | None]:
    """'host:443' -> ('host', 443); 'host:*' -> ('host', None) for portless protocols."""
    host, sep, port = dst.rpartition(":")
    if not sep or not host:
        raise UnknownTarget(f"'{dst}' is not HOST:PORT")
    if port == "*":
        return host, None
    if not port.isdigit():
        raise UnknownTarget(f"'{dst}' is not HOST:PORT")
    if not 1 <= int(port) <= 65535:
        raise UnknownTarget(f"port {port} in '{dst}' is outside 1-65535")
    return host, int(port)


def check(policy: Policy, src: str, dst: str, expected: bool | None = None,
          proto: str = "tcp") -> Verdict:
    """Whether `src` may reach `dst` (HOST:PORT) over `proto` under the policy's grants."""
    host, port = split_dst(dst)
    target = resolve(policy, host)
    who = resolve(policy, src, "source")
    for i, grant in enumerate(policy.grants):
        ports = grant.get("ip") or []
        if not ports:
            continue  # app capabilities only: no network access
        if (any(matches(policy, s, who) for s in grant["src"])
                and any(matches(policy, d, target, who.user) for d in grant["dst"])
                and any(port_matches(p, port, proto) for p in ports)):
            return Verdict(src, dst, expected, True, f"grant #{i + 1}", proto)
    return Verdict(src, dst, expected, False, "no grant matches", proto)


def _user_matches(users: list[str], user: str, src: Endpoint) -> bool:
    for entry in users:
        if entry == user or (entry == "autogroup:nonroot" and user != "root"):
            return True
        if entry.startswith("localpart:*@") and src.user is not None:
            local, _, domain = src.user.partition("@")
            if f"localpart:*@{domain}" == entry and user == local:
                return True
    return False


def ssh_check(policy: Policy, src: str, dst: str, user: str,
              expected: str | None = None) -> SSHVerdict:
    """What Tailscale SSH does when `src` connects to `dst` as local `user`.

    A matching check rule wins over a matching accept rule: Tailscale puts check rules
    first and the first match decides (Headscale sorts them the same way to match). With
    neither the connection is denied. A tagged device may never SSH into a user's device,
    whatever the rules say.
    """
    who = resolve(policy, src, "source")
    target = resolve(policy, dst)
    if who.tags and not target.tags:
        return SSHVerdict(src, dst, user, expected, "deny",
                          "a tagged source cannot SSH to a user's device")
    found: dict[str, int] = {}
    for i, rule in enumerate(policy.ssh):
        if (any(matches(policy, s, who) for s in rule["src"])
                and any(matches(policy, d, target, who.user) for d in rule["dst"])
                and _user_matches(rule["users"], user, who)):
            found.setdefault(rule["action"], i)
    for action in ("check", "accept"):
        if action in found:
            return SSHVerdict(src, dst, user, expected, action, f"ssh rule #{found[action] + 1}")
    return SSHVerdict(src, dst, user, expected, "deny", "no ssh rule matches")


def run_tests(policy: Policy) -> list[Verdict]:
    """Run the policy's own tests; each accept/deny entry becomes one verdict."""
    out = []
    for test in policy.tests:
        proto = test.get("proto") or "tcp"
        for dst in test.get("accept", []):
            out.append(_safe(policy, test, dst, True, proto))
        for dst in test.get("deny", []):
            out.append(_safe(policy, test, dst, False, proto))
    return out


def run_ssh_tests(policy: Policy) -> list[SSHVerdict]:
    """Run the policy's SSH tests: one verdict per destination and user."""
    out = []
    for test in policy.ssh_tests:
        for dst in test["dst"]:
            for expected in ("accept", "check", "deny"):
                for user in test.get(expected, []):
                    try:
                        out.append(ssh_check(policy, test["src"], dst, user, expected))
                    except UnknownTarget as exc:
                        out.append(SSHVerdict(test["src"], dst, user, expected, "error",
                                              str(exc)))
    return out


def _safe(policy: Policy, test: dict[str, Any], dst: str, expected: bool,
          proto: str) -> Verdict:
    try:
        return check(policy, test["src"], dst, expected, proto)
    except UnknownTarget as exc:
        return Verdict(test["src"], dst, expected, not expected, str(exc), proto)
