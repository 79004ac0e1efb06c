"""The `blumeops` command. Subcommands live in blumeops.commands and load lazily, so
`blumeops validate` does not pay for importing the engine, drivers or HTTP stack."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

# name -> "module:function"; each module owns its command's options.
COMMANDS: dict[str, str] = {
    "validate": "blumeops.commands.catalog:validate",
    "show": "blumeops.commands.catalog:show",
    "schema": "blumeops.commands.catalog:schema",
    "render": "blumeops.commands.render:render",
    "acl": "blumeops.commands.acl:acl",
    "plan": "blumeops.commands.lifecycle:plan",
    "apply": "blumeops.commands.lifecycle:apply",
    "up": "blumeops.commands.lifecycle:up",
    "down": "blumeops.commands.lifecycle:down",
    "status": "blumeops.commands.lifecycle:status",
    "check": "blumeops.commands.lifecycle:check",
    "secret": "blumeops.commands.secret:secret",
    "notify": "blumeops.commands.notify:notify",
    "controller": "blumeops.commands.controller:controller",
    "history": "blumeops.commands.controller:history",
    "sync": "blumeops.commands.controller:sync",
    "rollback": "blumeops.commands.controller:rollback",
    "resume": "blumeops.commands.controller:resume",
    "deliver": "blumeops.commands.deliver:deliver",
    "cluster": "blumeops.commands.deliver:cluster",
    "tailnet": "blumeops.commands.deliver:tailnet",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if _available(n))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _available(cmd_name):
            return None
        module, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attr)
        return command  # type: ignore[no-any-return]


def _available(name: str) -> bool:
    module = COMMANDS[name].partition(":")[0]
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="blumeops")
def cli() -> None:
    """BlumeOps: run a homelab as code. One catalog, one loop."""


def main() -> None:
    cli()
