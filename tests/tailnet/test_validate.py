"""Before testing, the policy is refused where Tailscale's API would refuse it."""

from __future__ import annotations

from typing import Any

import pytest

from blumeops.tailnet.evaluate import port_matches
from blumeops.tailnet.policy import Device, Policy
from blumeops.tailnet.syntax import SyntaxProblem, ip_spec
from blumeops.tailnet.validate import PolicyInvalid, problems, validate

A = "a@example.com"


def policy(**sections: Any) -> Policy:
    return Policy(groups={"group:ops": [A]}, tag_owners={"tag:web": ["autogroup:admin"]},
                  hosts={"nas": "100.64.0.9", "lan": "192.168.1.0/24"},
                  devices={"web": Device("web", ("tag:web",)),
                           "laptop": Device("laptop", (), owner=A)},
                  members=(A,), admins=(A,), **sections)


def messages(p: Policy) -> list[str]:
    return [str(x) for x in problems(p)]


def test_a_good_policy_passes() -> None:
    p = policy(grants=[{"src": ["group:ops", "autogroup:member"], "dst": ["tag:web", "nas", "lan",
                                                                         "autogroup:self"],
                        "ip": ["tcp:443", "udp:53", "icmp:*", "8000-8100", "*"]}],
               tests=[{"src": A, "proto": "udp", "accept": ["nas:53"], "deny": []}],
               ssh=[{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"],
                     "users": ["autogroup:nonroot", "root"], "checkPeriod": "12h"}],
               ssh_tests=[{"src": A, "dst": ["web"], "accept": [], "check": ["root"], "deny": []}],
               auto_approvers={"routes": {"192.168.1.0/24": ["tag:web"]}, "exitNode": [A]})
    assert messages(p) == []
    validate(p)


@pytest.mark.parametrize(("sections", "message"), [
    ({"tests": [{"src": A, "accept": [], "deny": []}]},
     "tests[0]: test from 'a@example.com' has neither 'accept' nor 'deny'"),
    ({"grants": [{"src": ["autogroup:members"], "dst": ["*"], "ip": ["*"]}]},
     "grants[0]: unknown autogroup 'autogroup:members'"),
    ({"grants": [{"src": ["group:opz"], "dst": ["*"], "ip": ["*"]}]},
     "grants[0]: unknown group 'group:opz' (declared: group:ops)"),
    ({"grants": [{"src": [A], "dst": ["tag:wbe"], "ip": ["*"]}]},
     "grants[0]: unknown tag 'tag:wbe': it has no entry in tagOwners"),
    ({"grants": [{"src": ["b@example.com"], "dst": ["*"], "ip": ["*"]}]},
     "grants[0]: unknown user 'b@example.com'"),
    ({"grants": [{"src": [A], "dst": ["*"], "ip": ["tcp:70000"]}]},
     "grants[0]: ip 'tcp:70000': port 70000 is outside 1-65535"),
    ({"grants": [{"src": [A], "dst": ["*"], "ip": ["tcp:0"]}]},
     "grants[0]: ip 'tcp:0': port 0 is outside 1-65535"),
    ({"grants": [{"src": [A], "dst": ["*"], "ip": ["tpc:22"]}]},
     "grants[0]: ip 'tpc:22': unknown protocol 'tpc'"),
    ({"grants": [{"src": ["autogroup:self"], "dst": ["*"], "ip": ["*"]}]},
     "'autogroup:self' cannot be used in src (only in dst)"),
    ({"grants": [{"src": [A], "dst": ["laptop"], "ip": ["*"]}]},
     "device 'laptop' carries no tags and has no IP address"),
    ({"grants": [{"src": [A], "dst": ["mystery"], "ip": ["*"]}]},
     "unknown host 'mystery'"),
    ({"tests": [{"src": A, "accept": ["web:99999"], "deny": []}]},
     "tests[0]: 'web:99999': port 99999 is outside 1-65535"),
    ({"tests": [{"src": A, "accept": ["lan:80"], "deny": []}]},
     "'lan:80': lan is a range (192.168.1.0/24), not a device"),
    ({"tests": [{"src": "c@example.com", "accept": ["web:80"], "deny": []}]},
     "tests[0]: unknown user 'c@example.com'"),
    ({"tests": [{"src": "group:ops", "accept": ["web:80"], "deny": []}]},
     "test src 'group:ops' must be one user, tag, host or IP"),
    ({"tests": [{"src": A, "proto": "tcpp", "accept": ["web:80"], "deny": []}]},
     "unknown protocol 'tcpp'"),
    ({"ssh": [{"action": "accept", "src": [A], "dst": ["*"], "users": ["root"]}]},
     "ssh[0]: an SSH rule's dst cannot be '*'"),
    ({"ssh": [{"action": "accept", "src": [A], "dst": ["tag:web"], "users": ["root"],
               "checkPeriod": "1h"}]},
     "checkPeriod is only for rules with action 'check'"),
    ({"ssh": [{"action": "check", "src": [A], "dst": ["tag:web"], "users": ["root"],
               "checkPeriod": "soon"}]},
     "checkPeriod 'soon' is not a duration"),
    ({"ssh": [{"action": "accept", "src": ["tag:web"], "dst": [A], "users": ["root"]}]},
     "a tagged source may only SSH to tagged devices"),
    ({"ssh": [{"action": "accept", "src": ["group:ops"], "dst": [A], "users": ["root"]}]},
     "an SSH rule reaches a user's devices only from that same user"),
    ({"ssh": [{"action": "accept", "src": [A], "dst": ["tag:web"],
               "users": ["autogroup:root"]}]},
     "unknown autogroup 'autogroup:root'"),
    ({"ssh_tests": [{"src": A, "dst": ["web"], "accept": [], "check": [], "deny": []}]},
     "sshTests[0]: SSH test from 'a@example.com' has none of 'accept', 'check' or 'deny'"),
    ({"auto_approvers": {"routes": {"10.0.0.0/33": [A]}}},
     "autoApprovers[0]: route '10.0.0.0/33' is not an IP range"),
    ({"auto_approvers": {"exitNode": ["tag:exit"]}},
     "unknown tag 'tag:exit'"),
])
def test_refused(sections: dict[str, Any], message: str) -> None:
    found = messages(policy(**sections))
    assert any(message in m for m in found), found
    with pytest.raises(PolicyInvalid):
        validate(policy(**sections))


def test_ip_spec_syntax() -> None:
    assert ip_spec("*") == (None, [(1, 65535)])
    assert ip_spec("tcp:80,443") == (6, [(80, 80), (443, 443)])
    assert ip_spec("udp:8000-8100") == (17, [(8000, 8100)])
    for bad in ("tcp:443-80", "tcp:x", "tcp:65536"):
        with pytest.raises(SyntaxProblem):
            ip_spec(bad)
    assert not port_matches("tcp:65536", 1)  # never matches what Tailscale would refuse
