"""Homebrew services: a formula run by `brew services` instead of a command of ours.

A service with `brew: FORMULA` on a macOS or Linux host is one `brew@HOST` resource, a
one-line Brewfile (`brew "FORMULA", restart_service: :changed`): what `brew bundle`
reads, and what the brew driver (drivers/brew.py) converges: the formula installed and
its service started. The formula's own `service do` block says how it runs, so a brew
service takes no command, environment or secrets; its configuration files go through
`files:` like any native service's.
"""

from __future__ import annotations

from blumeops.catalog.model import Lab
from blumeops.core.resources import Resource
from blumeops.render import RenderContext


def brewfile_line(formula: str) -> str:
    return f'brew "{formula}", restart_service: :changed\n'


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    out = []
    for name, svc in lab.services.items():
        host = svc.native
        if svc.brew is None or host is None or host not in lab.hosts \
                or not lab.hosts[host].managed:
            continue
        out.append(Resource(f"brew@{host}", "formula", name, brewfile_line(svc.brew),
                            f"native/{host}/brew/{name}.Brewfile", service=name,
                            depends_on=tuple(svc.depends_on), meta={"formula": svc.brew}))
    return out
