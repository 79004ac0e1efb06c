"""`blumeops acl`: ask the lab's tailnet policy questions offline, before uploading it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from blumeops.commands.catalog import load_or_exit
from blumeops.output import OUTPUT_OPTION, emit_json

if TYPE_CHECKING:
    from blumeops.tailnet.policy import Policy


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
    """Run the policy's tests. Exit 0 when all pass, 1 when any fails."""
    from blumeops.tailnet.evaluate import run_tests

    verdicts = run_tests(_policy(lab))
    failed = [v for v in verdicts if not v.passed]
    if output == "json":
        emit_json({
            "passed": not failed,
            "tests": [{"src": v.src, "dst": v.dst,
                       "expect": "accept" if v.expected else "deny",
                       "allowed": v.allowed, "passed": v.passed, "reason": v.reason}
                      for v in verdicts],
        })
    else:
        for v in verdicts:
            word = "PASS" if v.passed else "FAIL"
            expect = "accept" if v.expected else "deny"
            got = "allowed" if v.allowed else "denied"
            click.echo(f"{word}  {v.src} -> {v.dst}: expected {expect}, {got} ({v.reason})")
        if not verdicts:
            click.echo("no policy tests declared (tailnet.tests)")
        else:
            click.echo(f"{len(verdicts) - len(failed)} passed, {len(failed)} failed")
    raise SystemExit(1 if failed else 0)


@acl.command("check")
@click.argument("args", nargs=-1, required=True)
@OUTPUT_OPTION
def check(args: tuple[str, ...], output: str) -> None:
    """May SRC reach DST:PORT? Usage: acl check [LAB] SRC DST:PORT.

    Exit 0 allowed, 1 denied, 2 for an unknown device or bad arguments.
    """
    from blumeops.tailnet.evaluate import UnknownTarget
    from blumeops.tailnet.evaluate import check as evaluate

    if len(args) == 2:
        lab, src, dst = None, args[0], args[1]
    elif len(args) == 3:
        lab, src, dst = Path(args[0]), args[1], args[2]
    else:
        raise click.UsageError("expected [LAB] SRC DST:PORT")
    policy = _policy(lab)
    try:
        verdict = evaluate(policy, src, dst)
    except UnknownTarget as exc:
        if output == "json":
            emit_json({"src": src, "dst": dst, "error": str(exc)})
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    if output == "json":
        emit_json({"src": src, "dst": dst, "allowed": verdict.allowed,
                   "reason": verdict.reason})
    else:
        word = "allowed" if verdict.allowed else "denied"
        click.echo(f"{src} -> {dst}: {word} ({verdict.reason})")
    raise SystemExit(0 if verdict.allowed else 1)
