"""What the controller does for the cluster after each synced commit: hydrate the deploy
branch ArgoCD follows. A lab with no deploy target pays nothing (nothing is rendered or
imported); a failure is an event, never a failed sync of the hosts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from blumeops.catalog.model import Lab
from blumeops.kubernetes.hydrate import HydrateError, deploy_targets, hydrate_lab
from blumeops.render import RenderContext, render_lab

if TYPE_CHECKING:
    from blumeops.source.git import GitSource

EventSink = Callable[[str, str], object]  # (kind, message), like Store.event


def after_sync(lab: Lab, source_name: str, commit: str, subject: str, state_dir: Path,
               event: EventSink, source: GitSource | None = None) -> list[str]:
    """Hydrate every deploy target of `lab` for `commit`; returns one line per target.
    A deploy branch that is the branch the controller follows (`source`) is refused:
    deploy commits there would be synced as catalog commits."""
    if not any(c.delivery == "argocd" and c.repo_url and c.deploy_branch
               for c in lab.clusters.values()):
        return []

    if source is not None:
        for target in deploy_targets(lab):
            if target.branch == source.branch and source.repo_matches([target.repo_url]):
                message = (f"{commit[:12]}: cluster {target.cluster!r} names the branch the "
                           f"controller follows ({target.branch!r}) as its deploy branch; "
                           "choose another deploy_branch")
                event("deliver-failed", message)
                return [message]
    resources = render_lab(lab, RenderContext(source=source_name), only=("kubernetes", "argocd"))
    try:
        results = hydrate_lab(lab, resources, commit, state_dir, subject=subject)
    except HydrateError as exc:
        event("deliver-failed", f"{commit[:12]}: {exc}")
        return [str(exc)]
    lines = [r.summary() for r in results]
    for line in lines:
        event("delivered", line)
    return lines
