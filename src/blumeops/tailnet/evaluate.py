"""An offline evaluator of the lab's Tailscale policy: may SRC reach DST:PORT?

Tailscale checks a policy's tests only when the policy is uploaded; this answers the same
questions before anything leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from blumeops.tailnet.policy import Device, Policy


@dataclass(frozen=True)
class Verdict:
    src: str
    dst: str
    expected: bool | None  # None for a plain question
    allowed: bool
    reason: str

    @property
    def passed(self) -> bool:
        return self.expected is None or self.expected == self.allowed


class UnknownTarget(ValueError):
    """A test names a device the lab does not have."""


def device_for(policy: Policy, selector: str) -> Device | None:
    """The device a name or its own tag (`tag:NAME`) designates, if any."""
    if selector in policy.devices:
        return policy.devices[selector]
    if selector.startswith("tag:"):
        device = policy.devices.get(selector[4:])
        if device is not None and selector in device.tags:
            return device
    return None


def principal(policy: Policy, src: str) -> set[str]:
    """Every selector that matches `src`: a user email, a device (by name or tag), a tag."""
    device = device_for(policy, src)
    if device is not None:
        return {device.name, *device.tags}
    if src.startswith(("tag:", "group:")):
        return {src}
    selectors = {src, "autogroup:member"}
    selectors.update(g for g, members in policy.groups.items() if src in members)
    return selectors


def port_matches(spec: str, port: int) -> bool:
    """Whether a grant's `ip` entry ('*', 'tcp:443', '80,443', '8000-8100') covers a TCP port."""
    proto, _, ports = spec.rpartition(":")
    if proto and proto not in ("tcp", "*"):
        return False
    for part in ports.split(","):
        if part == "*":
            return True
        low, _, high = part.partition("-")
        try:
            if int(low) <= port <= int(high or low):
                return True
        except ValueError:
            continue
    return False


def split_dst(dst: str) -> tuple[str, int]:
    host, sep, port = dst.rpartition(":")
    if not sep or not port.isdigit():
        raise UnknownTarget(f"'{dst}' is not HOST:PORT")
    return host, int(port)


def check(policy: Policy, src: str, dst: str, expected: bool | None = None) -> Verdict:
    """Whether `src` may reach `dst` (HOST:PORT) under the policy's grants."""
    host, port = split_dst(dst)
    device = device_for(policy, host)
    if device is not None:
        targets = {device.name, *device.tags}
    elif host.startswith("tag:"):  # Tailscale tests may name a tag as destination
        targets = {host}
    else:
        known = ", ".join(sorted(policy.devices)) or "none"
        raise UnknownTarget(f"unknown device '{host}' (known: {known})")
    who = principal(policy, src)
    for i, grant in enumerate(policy.grants):
        src_ok = "*" in grant["src"] or bool(who.intersection(grant["src"]))
        dst_ok = "*" in grant["dst"] or bool(targets.intersection(grant["dst"]))
        if src_ok and dst_ok and any(port_matches(p, port) for p in grant["ip"]):
            return Verdict(src, dst, expected, True, f"grant #{i + 1}")
    return Verdict(src, dst, expected, False, "no grant matches")


def run_tests(policy: Policy) -> list[Verdict]:
    """Run the policy's own tests; each accept/deny entry becomes one verdict."""
    out = []
    for test in policy.tests:
        for dst in test.get("accept", []):
            out.append(_safe(policy, test["src"], dst, True))
        for dst in test.get("deny", []):
            out.append(_safe(policy, test["src"], dst, False))
    return out


def _safe(policy: Policy, src: str, dst: str, expected: bool) -> Verdict:
    try:
        return check(policy, src, dst, expected)
    except UnknownTarget as exc:
        return Verdict(src, dst, expected, not expected, str(exc))
