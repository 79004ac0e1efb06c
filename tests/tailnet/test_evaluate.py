"""The offline evaluator answers as Tailscale does, selector by selector.

Cases follow Tailscale's documented examples (the default SSH rule, autogroup:self for
members, `hosts` aliases, `tcp:`/`udp:`/`icmp:` entries) on a small tailnet of our own.
"""

from __future__ import annotations

import pytest

from blumeops.tailnet.evaluate import (
    UnknownTarget,
    check,
    port_matches,
    run_ssh_tests,
    run_tests,
    ssh_check,
)
from blumeops.tailnet.policy import Device, Policy

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def tailnet(grants: list[dict[str, object]] | None = None,
            ssh: list[dict[str, object]] | None = None) -> Policy:
    """Two servers (tagged), a router with an IP, Alice's and Bob's laptops (untagged)."""
    return Policy(
        groups={"group:eng": [ALICE, BOB]},
        tag_owners={"tag:server": ["autogroup:admin"], "tag:router": ["autogroup:admin"]},
        hosts={"router": "100.64.0.1", "lan": "192.168.1.0/24", "laptops": "100.64.1.0/24"},
        devices={
            "web": Device("web", ("tag:web", "tag:server")),
            "db": Device("db", ("tag:db", "tag:server")),
            "router": Device("router", ("tag:router",), ip="100.64.0.1"),
            "alice-mac": Device("alice-mac", (), owner=ALICE, ip="100.64.1.5"),
            "bob-mac": Device("bob-mac", (), owner=BOB, ip="100.64.2.7"),
        },
        admins=(ALICE,), members=(ALICE, BOB, CAROL),
        grants=grants or [], ssh=ssh or [],
    )


def allowed(policy: Policy, src: str, dst: str, proto: str = "tcp") -> bool:
    return check(policy, src, dst, proto=proto).allowed


def test_autogroup_tagged_covers_every_tagged_device() -> None:
    p = tailnet([{"src": [ALICE], "dst": ["autogroup:tagged"], "ip": ["tcp:22"]}])
    for device in ("web", "db", "router", "tag:server", "100.64.0.1"):
        assert allowed(p, ALICE, f"{device}:22"), device
    assert not allowed(p, ALICE, "bob-mac:22")  # a user's device is not tagged
    assert not allowed(p, BOB, "web:22")
    # ... and as a source: every tagged device, never a user.
    p = tailnet([{"src": ["autogroup:tagged"], "dst": ["tag:db"], "ip": ["tcp:5432"]}])
    assert allowed(p, "web", "db:5432") and allowed(p, "tag:router", "db:5432")
    assert not allowed(p, ALICE, "db:5432") and not allowed(p, "alice-mac", "db:5432")


def test_ip_literals_and_hosts_aliases_name_devices() -> None:
    p = tailnet([{"src": [ALICE], "dst": ["100.64.0.1"], "ip": ["tcp:443"]},
                 {"src": [BOB], "dst": ["router"], "ip": ["tcp:80"]}])
    # An IP literal selects the device with that address, however the test names it.
    assert allowed(p, ALICE, "router:443") and allowed(p, ALICE, "tag:router:443")
    assert allowed(p, ALICE, "100.64.0.1:443")
    assert not allowed(p, ALICE, "web:443")
    # A `hosts` alias selects the same device.
    assert allowed(p, BOB, "100.64.0.1:80") and not allowed(p, BOB, "100.64.0.1:443")
    # An address no catalog device has is still a device to Tailscale (a subnet host).
    assert not allowed(p, ALICE, "192.168.1.20:443")
    # As a source too: the IP (or its alias) is the device, whatever the test calls it.
    p = tailnet([{"src": ["router"], "dst": ["tag:db"], "ip": ["tcp:5432"]}])
    assert allowed(p, "router", "db:5432") and allowed(p, "100.64.0.1", "db:5432")
    assert allowed(p, "tag:router", "db:5432") and not allowed(p, "web", "db:5432")


def test_a_cidr_is_a_range_not_a_device() -> None:
    p = tailnet([{"src": ["group:eng"], "dst": ["laptops"], "ip": ["*"]},
                 {"src": [ALICE], "dst": ["192.168.1.0/24"], "ip": ["tcp:80"]}])
    assert allowed(p, BOB, "alice-mac:22")  # 100.64.1.5 is inside laptops
    assert not allowed(p, ALICE, "bob-mac:22")  # 100.64.2.7 is not
    assert not allowed(p, ALICE, "web:22")  # no address: no range holds it
    assert allowed(p, ALICE, "192.168.1.20:80")
    with pytest.raises(UnknownTarget, match="is a range"):
        check(p, ALICE, "192.168.1.0/24:80")
    with pytest.raises(UnknownTarget, match="is a range"):
        check(p, ALICE, "lan:80")


def test_autogroup_member_self_and_admin() -> None:
    # Tailscale's documented default: members reach their own devices.
    p = tailnet([{"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"]},
                 {"src": ["autogroup:admin"], "dst": ["tag:server"], "ip": ["tcp:22"]}])
    assert allowed(p, ALICE, "alice-mac:22") and allowed(p, BOB, "bob-mac:8080")
    assert not allowed(p, ALICE, "bob-mac:22") and not allowed(p, BOB, "alice-mac:22")
    assert not allowed(p, "web", "alice-mac:22")  # a tagged device is no member
    assert allowed(p, "alice-mac", "alice-mac:22")  # a user's device speaks as the user
    # autogroup:admin: Alice is an admin, Bob is not.
    assert allowed(p, ALICE, "web:22") and not allowed(p, BOB, "web:22")
    # Roles the catalog does not declare select no one; danger-all selects everyone.
    p = tailnet([{"src": ["autogroup:auditor"], "dst": ["*"], "ip": ["*"]},
                 {"src": ["autogroup:danger-all"], "dst": ["tag:web"], "ip": ["tcp:80"]}])
    assert not allowed(p, ALICE, "db:22") and allowed(p, CAROL, "web:80")
    # autogroup:member as a destination: devices members own.
    p = tailnet([{"src": ["tag:server"], "dst": ["autogroup:member"], "ip": ["tcp:22"]}])
    assert allowed(p, "web", "bob-mac:22") and not allowed(p, "web", "router:22")


def test_proto() -> None:
    p = tailnet([{"src": [ALICE], "dst": ["router"], "ip": ["udp:53", "tcp:443"]},
                 {"src": [BOB], "dst": ["router"], "ip": ["53"]},
                 {"src": [CAROL], "dst": ["router"], "ip": ["icmp:*"]}])
    assert allowed(p, ALICE, "router:53", "udp") and not allowed(p, ALICE, "router:53")
    assert allowed(p, ALICE, "router:443") and not allowed(p, ALICE, "router:443", "udp")
    # A bare port is TCP and UDP; not ICMP.
    assert allowed(p, BOB, "router:53") and allowed(p, BOB, "router:53", "udp")
    assert not allowed(p, BOB, "router:*", "icmp")
    assert allowed(p, CAROL, "router:*", "icmp") and not allowed(p, CAROL, "router:22")
    assert allowed(p, CAROL, "router:1", "1")  # IANA numbers work as names do
    assert port_matches("*", 9, "sctp") and port_matches("6:22", 22)


def test_app_only_grants_give_no_network_access() -> None:
    p = tailnet([{"src": [ALICE], "dst": ["tag:web"],
                  "app": {"example.com/cap/web": [{"role": "admin"}]}}])
    assert not allowed(p, ALICE, "web:443")


def test_policy_tests_with_proto() -> None:
    p = tailnet([{"src": [ALICE], "dst": ["router"], "ip": ["udp:53"]}])
    p.tests = [{"src": ALICE, "proto": "udp", "accept": ["router:53"]},
               {"src": ALICE, "accept": ["router:53"]}]
    assert [v.passed for v in run_tests(p)] == [True, False]


# --- SSH ----------------------------------------------------------------------------------

DEFAULT_SSH = {"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"],
               "users": ["autogroup:nonroot", "root"]}


def test_ssh_default_rule_checks_own_devices() -> None:
    p = tailnet(ssh=[DEFAULT_SSH])
    assert ssh_check(p, ALICE, "alice-mac", "root").got == "check"
    assert ssh_check(p, ALICE, "bob-mac", "alice").got == "deny"
    assert ssh_check(p, ALICE, "web", "alice").got == "deny"


def test_ssh_check_wins_over_accept_and_nonroot_excludes_root() -> None:
    p = tailnet(ssh=[
        {"action": "check", "src": ["group:eng"], "dst": ["tag:server"], "users": ["root"]},
        {"action": "accept", "src": ["group:eng"], "dst": ["tag:server"],
         "users": ["autogroup:nonroot"]},
        {"action": "accept", "src": ["autogroup:admin"], "dst": ["tag:server"],
         "users": ["root"]},
    ])
    assert ssh_check(p, BOB, "web", "deploy").got == "accept"
    assert ssh_check(p, BOB, "web", "root").got == "check"
    # The admin rule would accept, but a check rule matches too: Tailscale checks first.
    assert ssh_check(p, ALICE, "web", "root").got == "check"
    assert ssh_check(p, ALICE, "web", "root").reason == "ssh rule #1"
    assert ssh_check(p, CAROL, "web", "deploy").got == "deny"


def test_ssh_localpart_and_tagged_sources() -> None:
    p = tailnet(ssh=[
        {"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"],
         "users": ["localpart:*@example.com"]},
        {"action": "accept", "src": ["tag:server"], "dst": ["*"], "users": ["root"]},
    ])
    assert ssh_check(p, BOB, "db", "bob").got == "accept"
    assert ssh_check(p, BOB, "db", "alice").got == "deny"
    # A tagged device may never SSH into a user's device, even under a '*' rule.
    assert ssh_check(p, "web", "db", "root").got == "accept"
    assert ssh_check(p, "web", "alice-mac", "root").got == "deny"


def test_ssh_tests() -> None:
    p = tailnet(ssh=[DEFAULT_SSH])
    p.ssh_tests = [{"src": ALICE, "dst": ["alice-mac"], "check": ["alice", "root"],
                    "accept": ["bob"], "deny": []}]
    verdicts = run_ssh_tests(p)
    assert [(v.user, v.expected, v.got, v.passed) for v in verdicts] == [
        ("bob", "accept", "check", False), ("alice", "check", "check", True),
        ("root", "check", "check", True)]
    p.ssh_tests = [{"src": ALICE, "dst": ["nowhere"], "deny": ["root"]}]
    [v] = run_ssh_tests(p)
    assert not v.passed and "unknown device 'nowhere'" in v.reason
