"""`validate`, `show` and `schema`: the catalog commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from blumeops.output import OUTPUT_OPTION, emit_json

if TYPE_CHECKING:
    from blumeops.lab.loader import LoadResult

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.

LAB_ARGUMENT = click.argument("lab", required=False, type=click.Path(path_type=Path))


def report(result: LoadResult) -> None:
    """Print diagnostics as FILE:LINE:COL: message, errors to stderr."""
    for d in result.diagnostics:
        click.echo(str(d), err=d.severity == "error")


def load_or_exit(lab: Path | None, strict: bool = False) -> LoadResult:
    from blumeops.lab.loader import load_lab

    result = load_lab(lab, strict=strict, cache=True)
    if not result.ok:
        report(result)
        n = len(result.errors)
        click.echo(f"{result.path}: {n} error{'s' if n != 1 else ''}; nothing done", err=True)
        raise SystemExit(1)
    return result


@click.command()
@LAB_ARGUMENT
@click.option("--strict", is_flag=True, help="treat warnings as errors")
@OUTPUT_OPTION
def validate(lab: Path | None, strict: bool, output: str) -> None:
    """Check a lab: schema, references and cross-layer rules. Exit 0 valid, 1 invalid."""
    from blumeops.lab.loader import load_lab

    result = load_lab(lab, strict=strict, cache=True)
    if output == "json":
        emit_json({
            "valid": result.ok,
            "lab": str(result.path),
            "errors": [d.as_dict() for d in result.errors],
            "warnings": [d.as_dict() for d in result.warnings],
        })
    else:
        report(result)
        if result.ok:
            assert result.lab is not None
            lab_ = result.lab
            w = len(result.warnings)
            click.echo(f"{result.path}: valid: {len(lab_.hosts)} hosts, {len(lab_.services)} "
                       f"services, {len(lab_.domains)} domains"
                       + (f", {w} warning{'s' if w != 1 else ''}" if w else ""))
        else:
            n = len(result.errors)
            click.echo(f"{result.path}: {n} error{'s' if n != 1 else ''}", err=True)
    raise SystemExit(0 if result.ok else 1)


@click.command()
@LAB_ARGUMENT
@click.option("--output", "-o", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
def show(lab: Path | None, output: str) -> None:
    """Print the resolved catalog with every derived value filled in."""
    from blumeops.catalog.public import public_urls
    from blumeops.catalog.resolve import resolved_view

    result = load_or_exit(lab)
    assert result.lab is not None
    data = resolved_view(result.lab)
    # A published route's public URL beside its private one.
    for (service, key), url in public_urls(result.lab).items():
        data["services"][service]["routes"][key]["public_url"] = url
    if output == "json":
        emit_json(data)
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)


@click.command()
def schema() -> None:
    """Print the JSON Schema of the catalog format, for editors."""
    from blumeops.catalog.schema import catalog_schema

    click.echo(json.dumps(catalog_schema(), indent=2))
