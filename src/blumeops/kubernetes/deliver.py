"""`blumeops deliver` for clusters: the deploy branch ArgoCD follows and server-side apply.
`plan_*` says what would change, `apply_*` changes it. Each takes a loaded lab and does
its own I/O (git, the Kubernetes API)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from blumeops.catalog.model import Lab
from blumeops.core.errors import DeliveryError
from blumeops.kubernetes.hydrate import (
    HydrateError,
    HydrateResult,
    deploy_targets,
    hydrate_lab,
    plan_lab,
)
from blumeops.render import RenderContext, render_lab
from blumeops.source.git import _ENV, same_repository, work_tree_of

if TYPE_CHECKING:
    from blumeops.kubernetes.apply import ItemResult, KubeChange
    from blumeops.kubernetes.hydrate import DeployTarget

DEFAULT_DEPLOY_BRANCH = "blumeops-deploy"


# -- the deploy branch (ArgoCD) -------------------------------------------------------------

def source_commit(lab_file: Path) -> tuple[str, str]:
    """(commit id, subject) of the lab's git checkout; refuses uncommitted catalog edits,
    since a deploy commit must name the source commit it was rendered from."""
    tree = work_tree_of(lab_file)
    if tree is None:
        raise DeliveryError(f"{lab_file} is not in a git repository with a commit: deploy "
                            "commits name their source commit (or pass --commit)")
    if tree.dirty:
        raise DeliveryError(f"the lab in {tree.root} has uncommitted changes: commit them "
                            "first, so the deploy commit can name its source")
    proc = subprocess.run(["git", "-C", str(tree.root), "log", "-1", "--format=%H%x00%s"],
                          capture_output=True, text=True, env=_ENV, check=False,
                          stdin=subprocess.DEVNULL)
    sha, _, subject = proc.stdout.strip().partition("\x00")
    if proc.returncode != 0 or not sha:
        raise DeliveryError(f"cannot read the commit of {tree.root}")
    return sha, subject


def own_branch_conflict(lab_file: Path, targets: Iterable[DeployTarget]) -> str | None:
    """Why these deploy targets must not be written: one is the branch the lab's own
    checkout is on, in that checkout's repository (the checkout itself or one of its
    remotes). Deploy commits there would become the catalog's next commits, rendered
    manifests in the user's branch. None when every target is elsewhere."""
    tree = work_tree_of(lab_file)
    if tree is None:
        return None
    mine = [t for t in targets if t.branch == tree.branch]
    if not mine:
        return None
    proc = subprocess.run(["git", "-C", str(tree.root), "config", "--get-regexp",
                           r"^remote\..*\.(push)?url$"], capture_output=True, text=True,
                          env=_ENV, check=False, stdin=subprocess.DEVNULL)
    urls = [str(tree.root)] + [line.partition(" ")[2] for line in proc.stdout.splitlines()
                               if line.partition(" ")[2]]
    for target in mine:
        # Remote URLs relative to the checkout are relative to its root, as git reads them.
        if any(same_repository(url, target.repo_url, base_a=tree.root) for url in urls):
            return (f"cluster {target.cluster!r}: its deploy branch {target.branch!r} is the "
                    f"branch your checkout {tree.root} is on, in the same repository: deploy "
                    "commits would land on the catalog's own branch; choose another "
                    "deploy_branch")
    return None


def apply_deploy_branch(lab: Lab, lab_file: Path, state_dir: Path, *,
                        repo: str | None = None, branch: str | None = None,
                        commit: str | None = None, dry_run: bool = False
                        ) -> list[HydrateResult]:
    """Hydrate the deploy branch of every ArgoCD cluster (the catalog's, or `repo`);
    `dry_run` (the plan): build the commit and show its patch, push nothing."""

    if commit:
        sha, subject = commit, ""
    else:
        sha, subject = source_commit(lab_file)
    if not any(c.delivery == "argocd" for c in lab.clusters.values()):
        raise DeliveryError("the catalog has no cluster with 'delivery: argocd'")
    if branch is None and not any(c.deploy_branch for c in lab.clusters.values()):
        branch = DEFAULT_DEPLOY_BRANCH if repo else None
    if branch is None and repo is None and not any(
            c.deploy_branch and c.repo_url for c in lab.clusters.values()):
        raise DeliveryError("no deploy target: set clusters.NAME.repo_url and deploy_branch, "
                            "or pass --repo (and --branch)")

    conflict = own_branch_conflict(lab_file, deploy_targets(lab, branch, repo))
    if conflict is not None:
        raise DeliveryError(conflict)
    resources = render_lab(lab, RenderContext(source=lab_file.name),
                           only=("kubernetes", "argocd"))
    run = plan_lab if dry_run else hydrate_lab
    try:
        return run(lab, resources, sha, state_dir, subject=subject, branch=branch,
                   repo_url=repo)
    except HydrateError as exc:
        raise DeliveryError(str(exc)) from None


def plan_deploy_branch(lab: Lab, lab_file: Path, state_dir: Path, *,
                       repo: str | None = None, branch: str | None = None,
                       commit: str | None = None) -> list[HydrateResult]:
    """What `apply_deploy_branch` would commit, each with its patch."""
    return apply_deploy_branch(lab, lab_file, state_dir, repo=repo, branch=branch,
                               commit=commit, dry_run=True)


# -- direct delivery (server-side apply) ----------------------------------------------------

def _apply_clusters(lab: Lab, only: str | None) -> list[str]:
    names = [n for n, c in lab.clusters.items() if c.delivery == "apply"
             and (only is None or n == only)]
    if not names:
        raise DeliveryError("no cluster with 'delivery: apply'"
                            + (f" named {only!r}" if only else ""))
    return names


def plan_cluster(lab: Lab, cluster: str | None = None,
                 prune: bool = True) -> dict[str, list[KubeChange]]:
    """Per cluster: KubeChange for every object (server-side dry run) and every prune."""
    # lazy: keeps PyYAML out of start-up
    from blumeops.kubernetes.apply import KubeDelivery, KubeError
    from blumeops.kubernetes.manifests import manifests  # lazy: keeps PyYAML out of start-up

    resources = render_lab(lab, only=("kubernetes",))
    out: dict[str, list[KubeChange]] = {}
    for name in _apply_clusters(lab, cluster):
        kube = KubeDelivery(lab.lab, lab.clusters[name].context)
        try:
            out[name] = list(kube.plan(manifests(resources, name), prune=prune))
        except KubeError as exc:
            raise DeliveryError(f"cluster {name!r}: {exc}") from None
    return out


def apply_cluster(lab: Lab, cluster: str | None = None, prune: bool = True,
                  wait: float = 0.0) -> dict[str, list[ItemResult]]:
    """Per cluster: an ItemResult per applied or pruned object, in wave order."""
    # lazy: keeps PyYAML out of start-up
    from blumeops.kubernetes.apply import KubeDelivery, KubeError
    from blumeops.kubernetes.manifests import manifests  # lazy: keeps PyYAML out of start-up

    resources = render_lab(lab, only=("kubernetes",))
    out: dict[str, list[ItemResult]] = {}
    for name in _apply_clusters(lab, cluster):
        kube = KubeDelivery(lab.lab, lab.clusters[name].context)
        try:
            out[name] = list(kube.apply(manifests(resources, name), prune=prune, wait=wait))
        except KubeError as exc:
            raise DeliveryError(f"cluster {name!r}: {exc}") from None
    return out
