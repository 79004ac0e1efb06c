"""`blumeops acl`: ask the lab's tailnet policy questions offline, before uploading it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from blumeops.commands.catalog import load_or_exit
from blumeops.output import OUTPUT_OPTION, emit_json

if TYPE_CHECKING:
    from blumeops.tailnet.policy import Policy

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.


def _policy(lab: Path | None) -> Policy:
    from blumeops.tailnet.policy import derive_policy

    result = load_or_exit(lab)
    assert result.lab is not None
    return derive_policy(result.lab)


@click.group()
def acl() -> None:
    """Check the derived Tailscale policy: its own tests, or one question."""


@acl.command("test")
@click.argument("lab", required=False, type=click.Path(path_type=Path))
@OUTPUT_OPTION
def test(lab: Path | None, output: str) -> None:
    """Run the policy's tests and SSH tests. Exit 0 when all pass, 1 when any fails."""
    from blumeops.tailnet.evaluate import run_ssh_tests, run_tests

    # Loading already refused a policy Tailscale's API would refuse (rule tailnet-policy,
    # with file:line), so the tests below only ever run on a policy Tailscale would take.
    policy = _policy(lab)
    verdicts = run_tests(policy)
    ssh = run_ssh_tests(policy)
    failed = [v for v in verdicts if not v.passed]
    ssh_failed = [v for v in ssh if not v.passed]
    if output == "json":
        emit_json({
            "passed": not failed and not ssh_failed,
            "tests": [{"src": v.src, "dst": v.dst, "proto": v.proto,
                       "expect": "accept" if v.expected else "deny",
                       "allowed": v.allowed, "passed": v.passed, "reason": v.reason}
                      for v in verdicts],
            "ssh_tests": [{"src": v.src, "dst": v.dst, "user": v.user, "expect": v.expected,
                           "got": v.got, "passed": v.passed, "reason": v.reason}
                          for v in ssh],
        })
    else:
        for v in verdicts:
            word = "PASS" if v.passed else "FAIL"
            expect = "accept" if v.expected else "deny"
            got = "allowed" if v.allowed else "denied"
            proto = "" if v.proto == "tcp" else f" ({v.proto})"
            click.echo(f"{word}  {v.src} -> {v.dst}{proto}: expected {expect}, {got} "
                       f"({v.reason})")
        for s in ssh:
            word = "PASS" if s.passed else "FAIL"
            click.echo(f"{word}  ssh {s.src} -> {s.user}@{s.dst}: expected {s.expected}, "
                       f"got {s.got} ({s.reason})")
        if not verdicts and not ssh:
            click.echo("no policy tests declared (tailnet.tests, tailnet.sshTests)")
        else:
            total = len(verdicts) + len(ssh)
            bad = len(failed) + len(ssh_failed)
            click.echo(f"{total - bad} passed, {bad} failed")
    raise SystemExit(1 if failed or ssh_failed else 0)


@acl.command("check")
@click.argument("args", nargs=-1, required=True)
@click.option("--proto", default="tcp", show_default=True,
              help="IP protocol: tcp, udp, icmp, ... or a number")
@click.option("--ssh-user", default=None, metavar="USER",
              help="ask Tailscale SSH instead: may SRC log in to DST as USER (DST has no port)")
@OUTPUT_OPTION
def check(args: tuple[str, ...], proto: str, ssh_user: str | None, output: str) -> None:
    """May SRC reach DST:PORT? Usage: acl check [LAB] SRC DST:PORT.

    Exit 0 allowed (for SSH: accept or check), 1 denied, 2 for an unknown device or bad
    arguments.
    """
    from blumeops.tailnet.evaluate import UnknownTarget
    from blumeops.tailnet.evaluate import check as evaluate
    from blumeops.tailnet.syntax import SyntaxProblem, protocol

    if len(args) == 2:
        lab, src, dst = None, args[0], args[1]
    elif len(args) == 3:
        lab, src, dst = Path(args[0]), args[1], args[2]
    else:
        raise click.UsageError("expected [LAB] SRC DST:PORT")
    try:
        protocol(proto)
    except SyntaxProblem as exc:
        raise click.UsageError(str(exc)) from None
    policy = _policy(lab)
    try:
        if ssh_user is not None:
            _ssh_question(policy, src, dst, ssh_user, output)
        verdict = evaluate(policy, src, dst, proto=proto)
    except UnknownTarget as exc:
        if output == "json":
            emit_json({"src": src, "dst": dst, "error": str(exc)})
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except SyntaxProblem as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    if output == "json":
        emit_json({"src": src, "dst": dst, "proto": proto, "allowed": verdict.allowed,
                   "reason": verdict.reason})
    else:
        word = "allowed" if verdict.allowed else "denied"
        click.echo(f"{src} -> {dst}: {word} ({verdict.reason})")
    raise SystemExit(0 if verdict.allowed else 1)


def _ssh_question(policy: Policy, src: str, dst: str, user: str, output: str) -> None:
    """Answer `acl check --ssh-user` and exit: 0 accept or check, 1 deny."""
    from blumeops.tailnet.evaluate import ssh_check

    verdict = ssh_check(policy, src, dst, user)
    if output == "json":
        emit_json({"src": src, "dst": dst, "user": user, "ssh": verdict.got,
                   "reason": verdict.reason})
    else:
        click.echo(f"ssh {src} -> {user}@{dst}: {verdict.got} ({verdict.reason})")
    raise SystemExit(1 if verdict.got == "deny" else 0)
