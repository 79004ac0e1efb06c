"""`blumeops deliver`, `blumeops cluster`, `blumeops tailnet`: the cluster and the tailnet
one at a time (`plan`, `apply` and `status` show them with the hosts; `cluster health` is
the cluster part of `status`). kubernetes/deliver.py and tailnet/deliver.py hold the
functions they call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from blumeops.commands.catalog import LAB_ARGUMENT, load_or_exit
from blumeops.output import OUTPUT_OPTION, emit_json, fail, say, table

if TYPE_CHECKING:
    from blumeops.lab.loader import LoadResult

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.

STATE_OPTION = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None,
    help="state directory (default: $BLUMEOPS_STATE_DIR or ~/.local/state/blumeops/LAB)",
)


def _load(lab: Path | None, state_dir: Path | None) -> tuple[LoadResult, Path]:
    from blumeops.engine.paths import state_dir as default_state_dir

    result = load_or_exit(lab)
    assert result.lab is not None
    directory = default_state_dir(result.lab.lab, state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return result, directory


def _guard(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from blumeops.core.errors import DeliveryError

    try:
        return fn(*args, **kwargs)
    except DeliveryError as exc:
        fail(str(exc))


# -- deliver ---------------------------------------------------------------------------------

@click.command()
@LAB_ARGUMENT
@click.option("--repo", help="repository to push to (path or URL; default: the cluster's "
                             "repo_url)")
@click.option("--branch", help="deploy branch (default: the cluster's deploy_branch, else "
                               "blumeops-deploy)")
@click.option("--commit", "commit", help="source commit to name (default: the lab's HEAD)")
@click.option("--dry-run", is_flag=True,
              help="show the deploy commit's diff, push nothing (exit 2 when one is pending)")
@STATE_OPTION
@OUTPUT_OPTION
def deliver(lab: Path | None, repo: str | None, branch: str | None, commit: str | None,
            dry_run: bool, state_dir: Path | None, output: str) -> None:
    """Write the rendered manifests and Applications to the deploy branch ArgoCD follows,
    and push it (never forced). One commit per source commit; none when nothing changed.
    --repo changes where to push; the Applications keep the catalog's repo_url (the
    address ArgoCD reads the same repository at)."""
    from blumeops.kubernetes.deliver import apply_deploy_branch

    result, directory = _load(lab, state_dir)
    assert result.lab is not None
    results = _guard(apply_deploy_branch, result.lab, result.path, directory, repo=repo,
                     branch=branch, commit=commit, dry_run=dry_run)
    if output == "json":
        emit_json({"deliveries": [r.as_dict() for r in results]})
    else:
        for r in results:
            if r.patch:
                click.echo(r.patch.rstrip("\n"))
            say(r.summary(), "green" if r.changed else None)
    if dry_run and any(r.pending for r in results):
        raise SystemExit(2)


# -- cluster (delivery: apply) -----------------------------------------------------------------

@click.group()
def cluster() -> None:
    """Clusters delivered directly (`delivery: apply`): server-side apply, prune, health."""


@cluster.command("plan")
@LAB_ARGUMENT
@click.option("--cluster", "name", help="only this cluster")
@click.option("--no-prune", is_flag=True, help="do not list deletions")
@OUTPUT_OPTION
def cluster_plan(lab: Path | None, name: str | None, no_prune: bool, output: str) -> None:
    """What apply would change, from a server-side dry run. Exit 2 when changes are pending."""
    from blumeops.kubernetes.deliver import plan_cluster

    result = load_or_exit(lab)
    assert result.lab is not None
    plans = _guard(plan_cluster, result.lab, name, prune=not no_prune)
    pending = sum(1 for changes in plans.values() for c in changes if c.action != "unchanged")
    if output == "json":
        emit_json({"clusters": {n: [c.as_dict() for c in cs] for n, cs in plans.items()},
                   "pending": pending})
    else:
        marks = {"create": "+", "update": "~", "delete": "-"}
        for n, changes in plans.items():
            for c in changes:
                if c.action == "unchanged":
                    continue
                say(f"{marks[c.action]} {c.action} k8s@{n}/{c.kind}/"
                    f"{c.namespace + '/' if c.namespace else ''}{c.name}")
                if c.error:
                    say(f"    {c.error}", "red")
                if c.diff:
                    click.echo(c.diff.rstrip("\n"))
        click.echo(f"Plan: {pending} change{'s' if pending != 1 else ''} in the cluster.")
    raise SystemExit(2 if pending else 0)


@cluster.command("apply")
@LAB_ARGUMENT
@click.option("--cluster", "name", help="only this cluster")
@click.option("--no-prune", is_flag=True, help="keep objects no longer in the catalog")
@click.option("--wait", type=float, default=0.0, show_default=True,
              help="seconds to wait for each wave to be Healthy before the next")
@OUTPUT_OPTION
def cluster_apply(lab: Path | None, name: str | None, no_prune: bool, wait: float,
                  output: str) -> None:
    """Server-side apply (field manager blumeops) in waves, then prune this lab's leftovers."""
    from blumeops.kubernetes.deliver import apply_cluster

    result = load_or_exit(lab)
    assert result.lab is not None
    applied = _guard(apply_cluster, result.lab, name, prune=not no_prune, wait=wait)
    failed = [r for rs in applied.values() for r in rs if not r.ok]
    if output == "json":
        emit_json({"clusters": {n: [r.as_dict() for r in rs] for n, rs in applied.items()},
                   "failed": len(failed)})
    else:
        for n, rs in applied.items():
            for r in rs:
                say(f"  {'ok  ' if r.ok else 'FAIL'} k8s@{n} {r.key}: {r.message}",
                    None if r.ok else "red")
    raise SystemExit(1 if failed else 0)


@cluster.command("health")
@LAB_ARGUMENT
@STATE_OPTION
@OUTPUT_OPTION
def cluster_health(lab: Path | None, state_dir: Path | None, output: str) -> None:
    """Each cluster's services (their workloads, or their ArgoCD Application) and its
    app-of-apps: Healthy, Progressing, ... The cluster part of `blumeops status`."""
    from blumeops.commands.session import session
    from blumeops.core.health import Health, worst
    from blumeops.engine.targets import cluster_health as read_health

    with session(lab, state_dir) as s:
        if not s.spec.clusters:
            fail("the catalog has no cluster blumeops reads")
        healths = read_health(s.runtime)
    if output == "json":
        emit_json({n: {k: {"health": h.value, "detail": d} for k, (h, d) in items.items()}
                   for n, items in healths.items()})
    else:
        table(["CLUSTER", "NAME", "HEALTH", "DETAIL"],
              [[n, k, h.value, d] for n, items in healths.items()
               for k, (h, d) in sorted(items.items())])
    everything = [h for items in healths.values() for h, _ in items.values()]
    raise SystemExit(0 if everything and worst(everything) is Health.healthy else 1)


# -- tailnet -----------------------------------------------------------------------------------

@click.group()
def tailnet() -> None:
    """The tailnet policy: compare with the live one, push it (Tailscale API)."""


def _print_plan(plan: Any) -> None:
    if plan.their_edit:
        say(f"! the live policy changed outside blumeops: {plan.reason}", "yellow")
        click.echo(plan.their_edit.rstrip("\n"))
    if plan.diff:
        say(f"~ update tailscale@{plan.tailnet}/policy", "yellow")
        click.echo(plan.diff.rstrip("\n"))
    else:
        click.echo(f"tailscale@{plan.tailnet}: {plan.reason}")


@tailnet.command("diff")
@LAB_ARGUMENT
@STATE_OPTION
@OUTPUT_OPTION
def tailnet_diff(lab: Path | None, state_dir: Path | None, output: str) -> None:
    """The live policy against the catalog's, and any edit made outside blumeops.
    Exit 2 when they differ."""
    from blumeops.tailnet.deliver import plan_tailnet

    result, directory = _load(lab, state_dir)
    assert result.lab is not None
    plan = _guard(plan_tailnet, result.lab, result.path.parent, directory)
    if output == "json":
        emit_json(plan.as_dict())
    else:
        _print_plan(plan)
    raise SystemExit(0 if plan.action == "unchanged" else 2)


@tailnet.command("push")
@LAB_ARGUMENT
@click.option("--overwrite", is_flag=True, help="push over an edit made outside blumeops")
@click.option("--take-theirs", is_flag=True,
              help="accept the live policy as seen (bring its edit into the catalog)")
@STATE_OPTION
@OUTPUT_OPTION
def tailnet_push(lab: Path | None, overwrite: bool, take_theirs: bool,
                 state_dir: Path | None, output: str) -> None:
    """Validate (Tailscale's endpoint and the offline tests), then push with If-Match.
    A dry run until the catalog sets `tailnet: {push: true}`. Exit 1 when refused."""
    from blumeops.tailnet.deliver import apply_tailnet

    result, directory = _load(lab, state_dir)
    assert result.lab is not None
    pushed = _guard(apply_tailnet, result.lab, result.path.parent, directory,
                    overwrite=overwrite, take_theirs=take_theirs)
    if output == "json":
        emit_json(pushed.as_dict())
    else:
        if pushed.result in ("refused", "dry-run"):
            _print_plan(pushed.plan)
        say(f"tailscale@{pushed.tailnet}: {pushed.result}: {pushed.message}",
            "red" if pushed.result == "refused" else None)
    raise SystemExit(1 if pushed.result == "refused" else 0)
