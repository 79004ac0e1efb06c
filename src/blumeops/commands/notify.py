"""`blumeops notify test [LAB]`: send a test message to every target of `notify:`.

The targets' URLs are resolved from their secret references for this one run and never
printed: each line names the target only.
"""

from __future__ import annotations

from pathlib import Path

import click

from blumeops.commands.catalog import LAB_ARGUMENT, load_or_exit
from blumeops.output import fail

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.


@click.group()
def notify() -> None:
    """Notifications: the catalog's notify: section."""


@notify.command("test")
@LAB_ARGUMENT
def test(lab: Path | None) -> None:
    """Send a test message to every notification target; exit 1 if any fails."""
    from blumeops.notify.hub import resolve_urls
    from blumeops.notify.send import send
    from blumeops.secrets.errors import SecretError

    result = load_or_exit(lab)
    assert result.lab is not None
    if result.lab.notify is None:
        fail(f"{result.path} has no notify: section; add one with targets, e.g.\n"
             "notify:\n  targets:\n    phone: {url: vault:notify/ntfy}")
    assert result.lab.notify is not None
    try:
        urls = resolve_urls(result.lab, result.path.parent)
    except SecretError as exc:
        fail(str(exc))
    failed = []
    for name, url in urls.items():
        try:
            ok = send(url, f"BlumeOps: test from lab {result.lab.lab}",
                      f"A test message to target '{name}'. If you read this, "
                      "notifications reach you.")
        except Exception as exc:  # an unusable URL: say which target, never the URL
            ok = False
            click.echo(f"{name}: failed ({type(exc).__name__})")
        else:
            click.echo(f"{name}: {'sent' if ok else 'failed (the receiver did not accept it)'}")
        if not ok:
            failed.append(name)
    if failed:
        fail(f"{len(failed)} of {len(urls)} targets failed: {', '.join(failed)}")
