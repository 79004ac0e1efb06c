"""ArgoCD's deploy branch, hydrated into real bare git repositories on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deliverylab import (
    bare_origin,
    branch_files,
    branch_log,
    git,
    lab_data,
    load,
    rendered,
    stand_in_forge,
)

from blumeops.kubernetes import hydrate
from blumeops.kubernetes.hydrate import HydrateError, Hydrator, deploy_targets, hydrate_lab

SRC1 = "1" * 40
SRC2 = "2" * 40


def _deliver(tmp_path: Path, origin: str, services: tuple[str, ...] = ("api", "web"),
             source: str = SRC1, state: str = "state") -> list[hydrate.HydrateResult]:
    lab = load(tmp_path / "lab", lab_data(origin, services))
    return hydrate_lab(lab, rendered(lab), source, tmp_path / state, subject="add things")


def test_deploy_commit_holds_manifests_and_names_the_source_commit(tmp_path: Path) -> None:
    origin = bare_origin(tmp_path / "origin.git")
    [result] = _deliver(tmp_path, str(origin))
    assert result.changed and result.commit == git(origin, "rev-parse", "refs/heads/deploy")
    files = branch_files(origin, "deploy")
    assert "rendered/kubernetes/kind/api/deployment-api.yaml" in files
    assert "rendered/argocd/kind/web.yaml" in files and "rendered/argocd/kind/t-apps.yaml" in files
    assert set(result.added) == files
    [message] = branch_log(origin, "deploy")
    assert SRC1 in message and message.startswith(f"Deploy {SRC1[:12]}: add things")
    # ArgoCD follows the deploy branch, not the source branch's HEAD.
    root = yaml.safe_load(git(origin, "show", "deploy:rendered/argocd/kind/t-apps.yaml"))
    assert root["spec"]["source"]["targetRevision"] == "deploy"
    child = yaml.safe_load(git(origin, "show", "deploy:rendered/argocd/kind/api.yaml"))
    assert child["spec"]["source"] == {"repoURL": str(origin), "targetRevision": "deploy",
                                       "path": "rendered/kubernetes/kind/api"}


def test_unchanged_render_makes_no_commit_and_is_cheap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap by count, not by seconds (bench/ measures those): a no-change hydration
    runs one git command, the fetch, and builds nothing."""
    origin = bare_origin(tmp_path / "origin.git")
    [first] = _deliver(tmp_path, str(origin))
    gits: list[str] = []
    builds: list[object] = []
    real_git, real_build = Hydrator._git, Hydrator._build

    def counted_git(self: Hydrator, args: list[str], **kw: Any) -> Any:
        gits.append(next(a for a in args if not a.startswith("-")))
        return real_git(self, args, **kw)

    def counted_build(self: Hydrator, *args: Any, **kw: Any) -> str:
        builds.append(args)
        return real_build(self, *args, **kw)

    monkeypatch.setattr(Hydrator, "_git", counted_git)
    monkeypatch.setattr(Hydrator, "_build", counted_build)
    [again] = _deliver(tmp_path, str(origin), source=SRC2)
    assert not again.changed and again.tip == first.commit
    assert len(branch_log(origin, "deploy")) == 1
    assert (gits, builds) == (["fetch"], [])
    # A fresh state dir (no remembered digest) compares trees and still commits nothing.
    gits.clear()
    [fresh] = _deliver(tmp_path, str(origin), source=SRC2, state="state2")
    assert not fresh.changed and len(branch_log(origin, "deploy")) == 1
    assert len(builds) == 1 and "push" not in gits, gits


def test_removed_service_disappears_and_foreign_files_stay(tmp_path: Path) -> None:
    origin = bare_origin(tmp_path / "origin.git")
    _deliver(tmp_path, str(origin))
    # Someone adds a README to the deploy branch, outside what blumeops owns.
    clone = tmp_path / "other"
    git(tmp_path, "clone", "-q", "-b", "deploy", str(origin), str(clone))
    (clone / "README.md").write_text("deploy branch, written by blumeops\n")
    git(clone, "add", "README.md")
    git(clone, "commit", "-q", "-m", "readme")
    git(clone, "push", "-q", "origin", "deploy")
    [result] = _deliver(tmp_path, str(origin), services=("api",), source=SRC2)
    files = branch_files(origin, "deploy")
    assert not any("/web" in f for f in files), files
    assert "rendered/argocd/kind/web.yaml" in result.deleted
    assert "rendered/kubernetes/kind/web/deployment-web.yaml" in result.deleted
    assert "rendered/kubernetes/kind/api/deployment-api.yaml" in files
    assert "README.md" in files
    assert len(branch_log(origin, "deploy")) == 3


def _other_writer(tmp_path: Path, origin: Path, name: str) -> None:
    clone = tmp_path / f"writer-{name}"
    if not clone.exists():
        git(tmp_path, "clone", "-q", "-b", "deploy", str(origin), str(clone))
    git(clone, "pull", "-q", "--ff-only")
    (clone / f"{name}.md").write_text(f"{name}\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", f"other writer: {name}")
    git(clone, "push", "-q", "origin", "deploy")


def test_push_race_retries_on_the_new_tip_and_keeps_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = bare_origin(tmp_path / "origin.git")
    _deliver(tmp_path, str(origin))
    real_push = Hydrator._push
    raced: list[str] = []

    def push_after_someone_else(self: Hydrator, commit: str) -> bool:
        if not raced:  # another writer lands between our fetch and our push
            raced.append(commit)
            _other_writer(tmp_path, origin, "race")
        return real_push(self, commit)

    monkeypatch.setattr(Hydrator, "_push", push_after_someone_else)
    [result] = _deliver(tmp_path, str(origin), services=("api", "web", "db"), source=SRC2)
    assert raced and result.retried and result.changed
    log = branch_log(origin, "deploy")
    assert log[0].startswith(f"Deploy {SRC2[:12]}") and log[1] == "other writer: race"
    files = branch_files(origin, "deploy")
    assert "race.md" in files and "rendered/argocd/kind/db.yaml" in files
    # The first candidate was rebuilt on the new tip: not what reached the branch.
    assert result.commit != raced[0]


def test_push_rejected_twice_is_reported_never_forced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = bare_origin(tmp_path / "origin.git")
    _deliver(tmp_path, str(origin))
    real_push = Hydrator._push
    count = iter(range(10))

    def always_beaten(self: Hydrator, commit: str) -> bool:
        _other_writer(tmp_path, origin, f"w{next(count)}")
        return real_push(self, commit)

    monkeypatch.setattr(Hydrator, "_push", always_beaten)
    with pytest.raises(HydrateError, match="rejected twice"):
        _deliver(tmp_path, str(origin), services=("api",), source=SRC2)
    log = branch_log(origin, "deploy")
    assert log[0] == "other writer: w1" and log[1] == "other writer: w0"


def test_https_password_never_in_argv_output_errors_or_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-pw-7f3a9c"
    origin = bare_origin(tmp_path / "forge" / "lab.git")
    argv: list[list[str]] = []
    real_run, real_group = subprocess.run, hydrate._run_group

    def spy_run(cmd: list[str], *a: object, **k: object) -> object:
        argv.append(list(cmd))
        return real_run(cmd, *a, **k)  # type: ignore[call-overload]

    def spy_group(cmd: list[str], *a: object) -> object:
        argv.append(list(cmd))
        return real_group(cmd, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(hydrate.subprocess, "run", spy_run)
    monkeypatch.setattr(hydrate, "_run_group", spy_group)
    with stand_in_forge(tmp_path / "forge", "bob", canary) as (port, seen):
        # The catalog names the repository as ArgoCD reads it; the password comes only
        # with the push URL (`blumeops deliver --repo`).
        lab = load(tmp_path / "lab", lab_data(f"http://127.0.0.1:{port}/lab.git"))
        url = f"http://bob:{canary}@127.0.0.1:{port}/lab.git"
        [result] = hydrate_lab(lab, rendered(lab), SRC1, tmp_path / "state", repo_url=url)
        assert result.changed and canary not in str(result.as_dict())
        assert "***" in result.repo
        # The password really went to the forge (from the credential helper).
        assert any(h.startswith("Basic ") for h in seen)
        assert "rendered/argocd/kind/api.yaml" in branch_files(origin, "deploy")
        # A wrong password: the error names the forge, never the password.
        with pytest.raises(HydrateError) as err:
            hydrate_lab(lab, rendered(lab), SRC2, tmp_path / "state",
                        repo_url=url.replace(canary, canary + "-wrong"))
        assert canary not in str(err.value) and "127.0.0.1" in str(err.value)
        # A catalog whose repo_url holds the password: refused before anything is pushed.
        leaky = load(tmp_path / "leaky", lab_data(url))
        with pytest.raises(HydrateError, match="hold the password") as leak:
            hydrate_lab(leaky, rendered(leaky), SRC2, tmp_path / "state")
        assert canary not in str(leak.value)
    assert argv and not any(canary in " ".join(cmd) for cmd in argv)
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    assert canary not in git(origin, "log", "-p", "--all")


def test_targets_follow_the_catalog(tmp_path: Path) -> None:
    lab = load(tmp_path / "a", lab_data("/srv/x.git", branch=None))
    assert deploy_targets(lab) == []  # no deploy branch: the user commits renders by hand
    [target] = deploy_targets(lab, branch="b")
    assert target.owned == ("rendered/kubernetes/kind", "rendered/argocd/kind")
    with pytest.raises(HydrateError, match="invalid deploy branch"):
        Hydrator(hydrate.DeployTarget("kind", "/x", "-evil", ""), tmp_path)


def test_dry_run_shows_the_patch_and_pushes_nothing(tmp_path: Path) -> None:
    origin = bare_origin(tmp_path / "origin.git")
    _deliver(tmp_path, str(origin))
    tip = git(origin, "rev-parse", "refs/heads/deploy")
    lab = load(tmp_path / "lab", lab_data(str(origin), ("api", "web", "db")))
    [plan] = hydrate.plan_lab(lab, rendered(lab), SRC2, tmp_path / "state")
    assert plan.pending and not plan.changed
    assert "rendered/argocd/kind/db.yaml" in plan.added
    assert "+++ b/rendered/kubernetes/kind/db/deployment-db.yaml" in plan.patch
    assert "+  name: db" in plan.patch
    assert git(origin, "rev-parse", "refs/heads/deploy") == tip
    [same] = hydrate.plan_lab(load(tmp_path / "lab2", lab_data(str(origin))),
                              rendered(lab), SRC2, tmp_path / "state")
    assert same.pending  # the plan is against the branch, which still lacks db


def test_a_password_in_the_rendered_files_is_never_pushed(tmp_path: Path) -> None:
    origin = bare_origin(tmp_path / "origin.git")
    target = hydrate.DeployTarget("kind", f"https://bob:pw-canary-9@127.0.0.1:9/{origin}",
                                  "deploy", "rendered")
    files = {"rendered/argocd/kind/api.yaml": "repoURL: https://bob:pw-canary-9@forge/x\n"}
    with pytest.raises(HydrateError, match="hold the password") as err:
        Hydrator(target, tmp_path / "state").hydrate(files, SRC1)
    assert "pw-canary-9" not in str(err.value)


def test_a_percent_encoded_password_reaches_the_forge_decoded(tmp_path: Path) -> None:
    """A password with '@', ':' or '%' is percent-encoded in the URL; git decodes it, so
    the credential helper hands git the decoded one. Either form in the rendered files
    is refused."""
    from urllib.parse import quote

    password = "p@ss:w%rd/9"
    encoded = quote(password, safe="")
    forge = tmp_path / "forge"
    forge.mkdir()
    origin = bare_origin(forge / "lab.git")
    with stand_in_forge(forge, "bob", password) as (port, seen):
        lab = load(tmp_path / "lab", lab_data(f"http://127.0.0.1:{port}/lab.git"))
        url = f"http://bob:{encoded}@127.0.0.1:{port}/lab.git"
        [result] = hydrate_lab(lab, rendered(lab), SRC1, tmp_path / "state", repo_url=url)
        assert result.changed and "rendered/argocd/kind/api.yaml" in branch_files(origin,
                                                                                 "deploy")
        for leaked in (password, encoded):
            target = hydrate.DeployTarget("kind", url, "deploy", "rendered")
            files = {"rendered/argocd/kind/api.yaml": f"repoURL: http://bob:{leaked}@x/\n"}
            with pytest.raises(HydrateError, match="hold the password"):
                Hydrator(target, tmp_path / "state2").hydrate(files, SRC2)
    assert any(h.startswith("Basic ") for h in seen)
