"""`blumeops acl test|check` and the offline evaluator they run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from blumeops.cli import cli
from blumeops.tailnet.evaluate import UnknownTarget, check, port_matches, run_tests
from blumeops.tailnet.policy import Device, Policy
from conftest import EXAMPLES, write_lab

LAB = str(EXAMPLES / "blumeops")


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_example_policy_tests_pass() -> None:
    result = run("acl", "test", LAB)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(lines) == 30 and all(line.startswith("PASS") for line in lines)
    assert "guest@eblu.me -> tag:indri:3001: expected deny, denied" in result.output
    assert "guest@eblu.me -> tag:indri:443 (udp): expected deny, denied" in result.output
    # SSH tests run too: check mode on the servers, accept on one's own laptop.
    assert "PASS  ssh erich@eblu.me -> root@tag:indri: expected check, got check" \
        in result.output
    assert "PASS  ssh erich@eblu.me -> erich@gilbert: expected accept, got accept" \
        in result.output
    assert "PASS  ssh guest@eblu.me -> erich@gilbert: expected deny, got deny" in result.output


def test_example_policy_tests_json() -> None:
    result = run("acl", "test", LAB, "--output", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["passed"] is True
    passed = {(t["src"], t["dst"]): t for t in data["tests"]}
    test = passed[("tag:indri", "tag:sifaka:22")]
    assert test["expect"] == "accept" and test["allowed"] and test["passed"]
    assert test["reason"].startswith("grant #")
    ssh = {(t["src"], t["dst"], t["user"]): t for t in data["ssh_tests"]}
    assert ssh[("erich@eblu.me", "tag:indri", "root")]["got"] == "check"


def _demo_with(tmp_path: Path, tailnet: dict[str, Any]) -> Any:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo" / "lab.yaml").read_text())
    data["tailnet"] = {"name": "tn.ts.net", **tailnet}
    write_lab(tmp_path, data)
    return run("acl", "test", str(tmp_path))


def test_failing_test_exits_1(tmp_path: Path) -> None:
    result = _demo_with(tmp_path, {
        "groups": {"ops": ["a@x.org", "b@x.org"]},
        "grants": [{"src": ["group:ops"], "dst": ["box"], "ip": ["tcp:22"]}],
        "tests": [{"src": "b@x.org", "accept": ["box:8080"]},
                  {"src": "a@x.org", "deny": ["box:22"]}],
        "ssh": [{"action": "accept", "src": ["group:ops"], "dst": ["tag:box"],
                 "users": ["autogroup:nonroot"]}],
        "sshTests": [{"src": "a@x.org", "dst": ["box"], "deny": ["deploy"], "accept": ["root"]}]})
    assert result.exit_code == 1, result.output
    assert "FAIL  b@x.org -> box:8080: expected accept, denied (no grant matches)" \
        in result.output
    assert "FAIL  a@x.org -> box:22: expected deny, allowed (grant #1)" in result.output
    assert "FAIL  ssh a@x.org -> deploy@box: expected deny, got accept (ssh rule #1)" \
        in result.output
    assert "FAIL  ssh a@x.org -> root@box: expected accept, got deny" in result.output
    assert "0 passed, 4 failed" in result.output


def test_invalid_policy_is_refused_before_testing(tmp_path: Path) -> None:
    """A policy Tailscale would refuse stops `acl test` (validate reports it too)."""
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo" / "lab.yaml").read_text())
    data["tailnet"] = {"name": "tn.ts.net", "groups": {"ops": ["a@x.org"]},
                       "tests": [{"src": "a@x.org"}]}
    write_lab(tmp_path, data)
    result = run("acl", "test", str(tmp_path))
    assert result.exit_code == 1
    assert "tests[0]: test from 'a@x.org' has neither 'accept' nor 'deny' [tailnet-policy]" \
        in result.output
    assert f"{tmp_path / 'lab.yaml'}:" in result.output  # file:line of the offending test
    assert "PASS" not in result.output and "FAIL" not in result.output  # nothing was tested
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("src", "dst", "code", "word"), [
    ("guest@eblu.me", "indri:443", 0, "allowed"),
    ("guest@eblu.me", "indri:3001", 1, "denied"),
    ("erich@eblu.me", "indri:3001", 0, "allowed"),
    ("indri", "grafana:443", 0, "allowed"),
    ("guest@eblu.me", "gilbert:22", 1, "denied"),
    ("gilbert", "sifaka:22", 0, "allowed"),  # erich's laptop: his grants apply
])
def test_check(src: str, dst: str, code: int, word: str) -> None:
    result = run("acl", "check", LAB, src, dst)
    assert result.exit_code == code, result.output
    assert f"{src} -> {dst}: {word}" in result.output
    as_json = json.loads(run("acl", "check", LAB, src, dst, "-o", "json").output)
    assert as_json["allowed"] is (code == 0)


def test_check_unknown_device_exits_2() -> None:
    result = run("acl", "check", LAB, "guest@eblu.me", "nowhere:22")
    assert result.exit_code == 2
    assert "unknown device 'nowhere'" in result.output
    assert run("acl", "check", LAB, "guest@eblu.me", "indri").exit_code == 2  # no port


def test_check_bad_lab_exits_1(tmp_path: Path) -> None:
    write_lab(tmp_path, "lab: x\nhosts: {}\n")
    assert run("acl", "check", str(tmp_path), "a", "b:1").exit_code == 1


def test_cli_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "blumeops", "acl", "test", LAB],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "30 passed, 0 failed" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "blumeops", "acl", "check", LAB,
                           "guest@eblu.me", "sifaka:22", "-o", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["allowed"] is False


# --- the evaluator ------------------------------------------------------------------------


def test_port_specs() -> None:
    assert port_matches("*", 22) and port_matches("tcp:*", 22)
    assert port_matches("tcp:443", 443) and not port_matches("tcp:443", 80)
    assert port_matches("tcp:80,443", 443) and port_matches("8000-8100", 8080)
    assert not port_matches("udp:53", 53) and not port_matches("icmp:*", 1)


def test_tags_and_groups() -> None:
    policy = Policy(
        groups={"group:ops": ["a@x.org"]},
        grants=[{"src": ["group:ops"], "dst": ["tag:web"], "ip": ["tcp:443"]}],
        devices={"w1": Device("w1", ("tag:web",)), "db": Device("db", ())},
        tests=[{"src": "a@x.org", "accept": ["w1:443", "tag:web:443"], "deny": ["db:443"]}],
    )
    assert all(v.passed for v in run_tests(policy))
    assert not check(policy, "b@x.org", "w1:443").allowed
    with pytest.raises(UnknownTarget):
        check(policy, "a@x.org", "nope:1")


def test_check_proto_and_ssh() -> None:
    # The family grant is TCP 443: HTTP/3 (UDP 443) is denied, TCP allowed.
    assert run("acl", "check", LAB, "guest@eblu.me", "indri:443", "--proto", "udp").exit_code == 1
    assert run("acl", "check", LAB, "guest@eblu.me", "indri:443", "--proto", "tcp").exit_code == 0
    result = run("acl", "check", LAB, "erich@eblu.me", "indri", "--ssh-user", "root")
    assert result.exit_code == 0 and "ssh erich@eblu.me -> root@indri: check" in result.output
    result = run("acl", "check", LAB, "guest@eblu.me", "gilbert", "--ssh-user", "erich", "-o",
                 "json")
    assert result.exit_code == 1 and json.loads(result.output)["ssh"] == "deny"
    assert run("acl", "check", LAB, "a", "indri:1", "--proto", "tpc").exit_code == 2
