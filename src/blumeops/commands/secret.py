"""`blumeops secret`: the lab's age vault (set, get, ls, rm).

LAB comes first and is optional, like every other command: with one argument
(`secret get NAME`) LAB defaults to ./lab.yaml or ./lab/; with two it is
`secret get LAB NAME`. The vault lives beside the lab file. Only `get` prints a value.
"""

from __future__ import annotations

import secrets as random
import sys
from pathlib import Path
from typing import NoReturn

import click

from blumeops.catalog.paths import resolve_lab_path
from blumeops.output import OUTPUT_OPTION, emit_json, fail
from blumeops.secrets.errors import SecretError
from blumeops.secrets.vault import Vault, check_name

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.

LAB_OR_NAME = click.argument("first", metavar="[LAB]")
NAME_ARG = click.argument("second", metavar="NAME", required=False)


def die(message: str) -> NoReturn:
    fail(message)
    raise SystemExit(1)  # not reached: fail exits


def _split(first: str, second: str | None) -> tuple[str | None, str]:
    """(LAB, NAME) from one or two positional arguments: one alone is NAME."""
    return (None, first) if second is None else (first, second)


def open_vault(lab: str | Path | None) -> Vault:
    path = resolve_lab_path(lab)
    if not path.exists():
        where = "" if lab is not None else " (pass LAB, or run where lab.yaml is)"
        die(f"no lab at {path}{where}")
    return Vault(path.resolve().parent)


def _notes(vault: Vault) -> None:
    for note in vault.notes:
        click.echo(note, err=True)
    vault.notes.clear()


@click.group()
def secret() -> None:
    """Secrets in the lab's age vault (vault.age beside lab.yaml).

    LAB is optional and comes first: `blumeops secret get NAME` uses ./lab.yaml or
    ./lab/; `blumeops secret get LAB NAME` names it. The private key lives outside the
    repository, in $BLUMEOPS_AGE_KEY or ~/.config/blumeops/age.key.
    """


@secret.command("set")
@LAB_OR_NAME
@NAME_ARG
@click.option("--value", help="the value (visible in shell history: prefer stdin)")
@click.option("--generate", is_flag=True,
              help="store a random url-safe value (32 bytes); it is not printed")
def set_(first: str, second: str | None, value: str | None, generate: bool) -> None:
    """Store NAME. The value comes from --value, --generate, stdin or a hidden prompt.

    \b
    blumeops secret set demo/api-token --generate
    printf %s "$TOKEN" | blumeops secret set examples/demo demo/api-token
    """
    lab, name = _split(first, second)
    if value is not None and generate:
        die("give --value or --generate, not both")
    try:
        check_name(name)
    except SecretError as exc:
        die(str(exc))
    vault = open_vault(lab)
    if generate:
        value = random.token_urlsafe(32)
    elif value is None:
        stdin = sys.stdin
        if stdin.isatty():
            value = click.prompt(f"value for {name}", hide_input=True,
                                 confirmation_prompt=True, err=True)
        else:
            value = stdin.read()
            # `echo x |` adds one newline; a value that needs one can use --value.
            value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        die(f"empty value for {name}: nothing stored")
    try:
        new = vault.set(name, value)
    except SecretError as exc:
        _notes(vault)
        die(str(exc))
    _notes(vault)
    click.echo(f"{'added' if new else 'updated'} {name} in {vault.path}")


@secret.command()
@LAB_OR_NAME
@NAME_ARG
@click.option("--no-newline", "-n", is_flag=True, help="print the value without a newline")
def get(first: str, second: str | None, no_newline: bool) -> None:
    """Print the value of NAME (the one command that shows a value)."""
    lab, name = _split(first, second)
    vault = open_vault(lab)
    try:
        value = vault.get(name)
    except SecretError as exc:
        die(str(exc))
    click.echo(value, nl=not no_newline)


def referenced(lab: Path | None) -> dict[str, list[str]]:
    """vault NAME -> services referencing it, if the catalog loads (else empty)."""
    from blumeops.lab.loader import load_lab

    result = load_lab(lab)
    if result.lab is None:
        return {}
    refs: dict[str, list[str]] = {}
    for service, svc in sorted(result.lab.services.items()):
        for ref in svc.secrets.values():
            if ref.ref.startswith("vault:"):
                refs.setdefault(ref.ref.removeprefix("vault:"), []).append(service)
    return refs


@secret.command("ls")
@click.argument("lab", required=False, type=click.Path(path_type=Path))
@OUTPUT_OPTION
def ls(lab: Path | None, output: str) -> None:
    """List secret names (never values), and names the catalog uses but the vault lacks.

    Exit 0 even when some are missing; `validate` and `plan` are the gates.
    """
    vault = open_vault(lab)
    try:
        names = vault.names()
    except SecretError as exc:
        die(str(exc))
    used = referenced(lab)
    missing = {n: services for n, services in sorted(used.items()) if n not in names}
    if output == "json":
        emit_json({
            "vault": str(vault.path),
            "names": names,
            "missing": [{"name": n, "services": s} for n, s in missing.items()],
        })
        return
    if names:
        click.echo("\n".join(names))
    else:
        click.echo(f"no secrets in {vault.path}", err=True)
    for n, services in missing.items():
        click.echo(f"missing: {n} (used by {', '.join(services)}); add it with "
                   f"`blumeops secret set {f'{lab} ' if lab else ''}{n}`", err=True)


@secret.command("rm")
@LAB_OR_NAME
@NAME_ARG
def rm(first: str, second: str | None) -> None:
    """Remove NAME from the vault."""
    lab, name = _split(first, second)
    vault = open_vault(lab)
    try:
        vault.remove(name)
    except SecretError as exc:
        die(str(exc))
    _notes(vault)
    click.echo(f"removed {name} from {vault.path}")
