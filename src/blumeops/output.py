"""Printing for commands: rich for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

OUTPUT_OPTION = click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text",
    show_default=True, help="text for people, json for scripts",
)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps whole lines (URLs, ids) instead of rich's 80-column default.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width)


def fail(message: str, code: int = 1) -> None:
    """Print an error for a person and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
