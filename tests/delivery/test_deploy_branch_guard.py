"""A deploy branch that is the branch the lab's own checkout is on (in that repository, or
in one of its remotes) is refused by `blumeops apply` and `blumeops deliver`, as the
controller's hook refuses it: deploy commits there would become catalog commits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from deliverylab import bare_origin, branch_log, git, lab_data
from k8s_standin import kube_stand_in, kubeconfig

from blumeops.cli import cli

TOKEN = "guard-token"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with kube_stand_in(TOKEN) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", api.url,
                                                        TOKEN, "kind-test")))
        yield


def _checkout(tmp_path: Path, repo_url: str | None, branch: str) -> Path:
    """The lab's checkout on `main`, with `origin` a bare repository it pushed to."""
    origin = bare_origin(tmp_path / "origin.git")
    repo = tmp_path / "src"
    repo.mkdir()
    (repo / "lab.yaml").write_text(yaml.safe_dump(lab_data(repo_url or str(repo), ("api",),
                                                           branch), sort_keys=False))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the lab")
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    return repo


def _refs(path: Path) -> str:
    return git(path, "for-each-ref", "--format=%(refname) %(objectname)")


@pytest.mark.parametrize("where", ["the checkout", "its origin"])
def test_apply_and_deliver_refuse_the_checkouts_own_branch(tmp_path: Path, where: str) -> None:
    origin = tmp_path / "origin.git"
    repo = _checkout(tmp_path, None if where == "the checkout" else str(origin), "main")
    state = tmp_path / "state"
    before = (_refs(repo), _refs(origin))

    plan = run("plan", str(repo / "lab.yaml"), "--state-dir", str(state))
    assert "note: apply will not write the deploy branch: cluster 'kind': its deploy " \
           "branch 'main' is the branch your checkout" in plan.output, plan.output
    applied = run("apply", str(repo / "lab.yaml"), "--state-dir", str(state), "--yes")
    assert applied.exit_code == 1, applied.output
    assert "deploy branch not written: cluster 'kind': its deploy branch 'main' is the " \
           "branch your checkout" in applied.output
    assert "choose another deploy_branch" in applied.output
    assert "Traceback" not in applied.output
    delivered = run("deliver", str(repo), "--state-dir", str(state))
    assert delivered.exit_code == 1 and "is the branch your checkout" in delivered.output
    assert (_refs(repo), _refs(origin)) == before  # nothing written, anywhere
    assert branch_log(origin, "main") == ["the lab"]
    assert git(repo, "status", "--porcelain") == ""


def test_another_branch_of_the_same_origin_is_delivered(tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    repo = _checkout(tmp_path, str(origin), "deploy")
    applied = run("apply", str(repo / "lab.yaml"), "--state-dir", str(tmp_path / "state"),
                  "--yes")
    assert applied.exit_code == 0, applied.output
    assert "is the branch your checkout" not in applied.output
    assert branch_log(origin, "main") == ["the lab"]
    [deploy] = branch_log(origin, "deploy")
    assert f"Source-Commit: {git(repo, 'rev-parse', 'HEAD')}" in deploy


def test_a_relative_remote_url_is_the_same_origin(tmp_path: Path) -> None:
    """`git remote add origin ../origin.git`: git reads it from the checkout's root, and so
    does the guard (not from wherever blumeops was started)."""
    origin = tmp_path / "origin.git"
    repo = _checkout(tmp_path, str(origin), "main")
    git(repo, "remote", "set-url", "origin", "../origin.git")
    before = (_refs(repo), _refs(origin))
    applied = run("apply", str(repo / "lab.yaml"), "--state-dir", str(tmp_path / "state"),
                  "--yes")
    assert applied.exit_code == 1, applied.output
    assert "is the branch your checkout" in applied.output
    assert (_refs(repo), _refs(origin)) == before
    assert branch_log(origin, "main") == ["the lab"]


def _alias(tmp_path: Path, origin: Path, kind: str) -> str:
    """Another name git accepts for the bare repository `origin`."""
    if kind == "symlink git completes with .git":
        (tmp_path / "alias.git").symlink_to(origin)
        return str(tmp_path / "alias")  # git tries alias/.git, alias, alias.git/.git, alias.git
    assert kind == "linked worktree"
    git(origin, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "elsewhere")
    return str(tmp_path / "wt")  # its refs are origin's refs


@pytest.mark.parametrize("kind", ["symlink git completes with .git", "linked worktree"])
def test_the_controller_refuses_its_own_branch_by_another_name(tmp_path: Path,
                                                                kind: str) -> None:
    """The controller follows `main` of a bare repository; the catalog names that same
    repository by a second name as the deploy repository, with deploy_branch main."""
    from blumeops.engine.controller import Controller, ControllerConfig

    origin = bare_origin(tmp_path / "origin.git")
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    git(work, "commit", "-q", "--allow-empty", "-m", "start")
    git(work, "push", "-q", str(origin), "main")
    alias = _alias(tmp_path, origin, kind)
    (work / "lab.yaml").write_text(yaml.safe_dump(lab_data(alias, ("api",), "main"),
                                                  sort_keys=False))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "the lab")
    git(work, "push", "-q", str(origin), "main")
    before = _refs(origin)
    controller = Controller(ControllerConfig(source_url=str(origin),
                                             state_dir=tmp_path / "state"))
    try:
        controller.tick()
        failed = [e for e in controller.events(20) if e["kind"] == "deliver-failed"]
        assert failed and "the branch the controller follows" in failed[0]["message"], \
            controller.events(20)
        assert not [e for e in controller.events(20) if e["kind"] == "delivered"]
    finally:
        controller.stop()
    assert _refs(origin) == before  # no deploy commit on main
    assert branch_log(origin, "main") == ["the lab", "start"]
