"""Printing for commands: rich for people at a terminal, plain text when piped, JSON
for scripts. rich is imported only for a terminal: it costs ~50 ms, a sixth of a no-op
apply."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
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


def is_terminal() -> bool:
    return sys.stdout.isatty()


def say(text: str, style: str | None = None) -> None:
    """One line of output, coloured at a terminal."""
    if not is_terminal():
        click.echo(text)
        return
    from rich.markup import escape

    console().print(f"[{style}]{escape(text)}[/{style}]" if style else escape(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          style: Callable[[int, str], str | None] | None = None) -> None:
    """Aligned columns; `style(column, value)` may colour a cell at a terminal."""
    if not is_terminal():
        widths = [max([len(h), *(len(r[i].split("\n")[0]) for r in rows)])
                  for i, h in enumerate(headers)]
        for line in [list(headers), *[list(r) for r in rows]]:
            cells = [c.replace("\n", " ") for c in line]
            click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                       .rstrip())
        return
    from rich.markup import escape
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False, box=None)
    for h in headers:
        t.add_column(h)
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            colour = style(i, value) if style else None
            cells.append(f"[{colour}]{escape(value)}[/{colour}]" if colour else escape(value))
        t.add_row(*cells)
    console().print(t)


def fail(message: str, code: int = 1) -> None:
    """Print an error for a person and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
