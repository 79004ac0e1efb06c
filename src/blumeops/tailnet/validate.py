"""Reject a policy the way Tailscale's API would, before its tests run.

Tailscale refuses to save a policy that names an unknown group, tag, user or autogroup, has
a port outside 1-65535 or a test that asserts nothing. Testing such a policy offline would
answer questions Tailscale never gets to; so these come first, each with where it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from blumeops.tailnet.policy import Policy
from blumeops.tailnet.syntax import (
    AUTOGROUPS,
    DURATION,
    SyntaxProblem,
    ip_spec,
    is_range,
    network,
    protocol,
)


@dataclass(frozen=True)
class Problem:
    section: str  # grants, tests, ssh, sshTests, autoApprovers
    index: int  # position in that section of the derived policy (0-based)
    message: str

    def __str__(self) -> str:
        return f"{self.section}[{self.index}]: {self.message}"


class PolicyInvalid(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class _Checker:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def selector(self, value: str, where: str) -> Iterator[str]:
        """Problems with one src/dst selector; `where` is src, dst or ssh-users."""
        p = self.policy
        if value == "*":
            return
        if value.startswith("autogroup:"):
            allowed = AUTOGROUPS.get(value)
            if allowed is None:
                known = ", ".join(sorted(AUTOGROUPS))
                yield f"unknown autogroup '{value}' (known: {known})"
            elif where not in allowed.split("/"):
                yield f"'{value}' cannot be used in {where} (only in {allowed})"
        elif value.startswith("group:"):
            if value not in p.groups:
                yield f"unknown group '{value}' (declared: {', '.join(sorted(p.groups)) or 'none'})"
        elif value.startswith("tag:"):
            if value not in p.tag_owners:
                yield f"unknown tag '{value}': it has no entry in tagOwners"
        elif "@" in value:
            if value not in p.members:
                yield (f"unknown user '{value}': not a member of the tailnet "
                       "(name it in a group, tailnet.admins or tailnet.users)")
        elif value in p.hosts or network(value) is not None:
            return
        elif value in p.devices:
            yield (f"device '{value}' carries no tags and has no IP address: name it by its "
                   "owner, autogroup:self or an IP")
        else:
            yield f"unknown host '{value}': not a tag, group, user, IP or `hosts` alias"

    def selectors(self, values: list[str], where: str) -> Iterator[str]:
        for value in values:
            yield from self.selector(value, where)

    def grant(self, grant: dict[str, Any]) -> Iterator[str]:
        yield from self.selectors(list(grant["src"]), "src")
        yield from self.selectors(list(grant["dst"]), "dst")
        for spec in grant.get("ip") or []:
            try:
                ip_spec(spec)
            except SyntaxProblem as exc:
                yield f"ip '{spec}': {exc}"
        if not grant.get("ip") and not grant.get("app"):
            yield "a grant needs 'ip' or 'app'"

    def test_dst(self, dst: str) -> Iterator[str]:
        host, sep, port = dst.rpartition(":")
        if not sep or not host:
            yield f"'{dst}' is not HOST:PORT"
            return
        if port != "*" and not port.isdigit():
            yield f"'{dst}': port '{port}' is not a number"
        elif port.isdigit() and not 1 <= int(port) <= 65535:
            yield f"'{dst}': port {port} is outside 1-65535"
        address = self.policy.hosts.get(host, host)
        if is_range(address):
            yield f"'{dst}': {host} is a range ({address}), not a device; test one address"
        elif not (host in self.policy.devices or host in self.policy.hosts):
            yield from self.selector(host, "dst")

    def test(self, test: dict[str, Any]) -> Iterator[str]:
        src = str(test["src"])
        if src.startswith(("group:", "autogroup:")) or src == "*":
            yield f"test src '{src}' must be one user, tag, host or IP"
        elif src not in self.policy.devices:
            yield from self.selector(src, "src")
        if not test.get("accept") and not test.get("deny"):
            yield f"test from '{src}' has neither 'accept' nor 'deny'"
        if test.get("proto"):
            try:
                protocol(str(test["proto"]))
            except SyntaxProblem as exc:
                yield str(exc)
        for dst in [*test.get("accept", []), *test.get("deny", [])]:
            yield from self.test_dst(dst)

    def ssh(self, rule: dict[str, Any]) -> Iterator[str]:
        src, dst = list(rule["src"]), list(rule["dst"])
        yield from self.selectors(src, "src")
        if "*" in dst:
            yield "an SSH rule's dst cannot be '*': name tags, users or autogroup:self"
        yield from self.selectors([d for d in dst if d != "*"], "dst")
        for user in rule["users"]:
            if user.startswith("autogroup:"):
                yield from self.selector(user, "ssh-users")
        period = rule.get("checkPeriod")
        if period is not None:
            if rule["action"] != "check":
                yield "checkPeriod is only for rules with action 'check'"
            elif period != "always" and not DURATION.match(str(period)):
                yield f"checkPeriod '{period}' is not a duration such as 12h or 'always'"
        users = [d for d in dst if "@" in d and not d.startswith(("group:", "autogroup:"))]
        if (users and any(s != users[0] for s in src)) or len(set(users)) > 1:
            yield ("an SSH rule reaches a user's devices only from that same user; "
                   "use autogroup:self for 'everyone to their own devices'")
        if any(s.startswith("tag:") for s in src) and any(
                not d.startswith("tag:") and d != "autogroup:tagged" for d in dst):
            yield "a tagged source may only SSH to tagged devices"

    def ssh_test(self, test: dict[str, Any]) -> Iterator[str]:
        src = str(test["src"])
        if src not in self.policy.devices:
            yield from self.selector(src, "src")
        for dst in test["dst"]:
            if dst not in self.policy.devices:
                yield from self.selector(dst, "dst")
        if not (test.get("accept") or test.get("check") or test.get("deny")):
            yield f"SSH test from '{src}' has none of 'accept', 'check' or 'deny'"

    def approvers(self) -> Iterator[Problem]:
        routes = self.policy.auto_approvers.get("routes", {})
        for i, (cidr, who) in enumerate(routes.items()):
            if network(cidr) is None:
                yield Problem("autoApprovers", i, f"route '{cidr}' is not an IP range")
            for msg in self.selectors(who, "src"):
                yield Problem("autoApprovers", i, msg)
        for msg in self.selectors(self.policy.auto_approvers.get("exitNode", []), "src"):
            yield Problem("autoApprovers", len(routes), msg)


def problems(policy: Policy) -> list[Problem]:
    """Everything Tailscale's API would refuse in this policy, in section order."""
    c = _Checker(policy)
    out: list[Problem] = []
    for section, items, fn in (("grants", policy.grants, c.grant), ("tests", policy.tests, c.test),
                               ("ssh", policy.ssh, c.ssh),
                               ("sshTests", policy.ssh_tests, c.ssh_test)):
        for i, item in enumerate(items):
            out.extend(Problem(section, i, msg) for msg in fn(item))
    out.extend(c.approvers())
    return out


def validate(policy: Policy) -> None:
    """Raise PolicyInvalid listing every problem, or return quietly."""
    found = problems(policy)
    if found:
        raise PolicyInvalid(found)
