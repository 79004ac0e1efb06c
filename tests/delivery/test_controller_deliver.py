"""The controller hydrates the deploy branch of examples/blumeops after each synced commit."""

from __future__ import annotations

import shutil
from pathlib import Path

from deliverylab import bare_origin, branch_files, branch_log, git

from blumeops.engine.controller import Controller, ControllerConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "blumeops"
FORGE_URL = "repo_url: ssh://forgejo@forge.ops.eblu.me:2222/eblume/blumeops.git"


def _source(root: Path, origin: Path) -> Path:
    """A git repository holding examples/blumeops, its cluster's repo_url on disk."""
    repo = root / "src"
    shutil.copytree(EXAMPLE, repo / "lab")
    lab = repo / "lab" / "lab.yaml"
    text = lab.read_text()
    assert FORGE_URL in text
    lab.write_text(text.replace(FORGE_URL, f"repo_url: {origin}"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the lab")
    return repo


def _commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_controller_hydrates_one_deploy_commit_per_source_commit(tmp_path: Path) -> None:
    origin = bare_origin(tmp_path / "deploy.git")
    repo = _source(tmp_path, origin)
    controller = Controller(ControllerConfig(source_url=str(repo), lab_path="lab",
                                             state_dir=tmp_path / "state"))
    try:
        assert controller.tick()
        first = git(repo, "rev-parse", "HEAD")
        [message] = branch_log(origin, "blumeops-deploy")
        assert f"Source-Commit: {first}" in message
        files = branch_files(origin, "blumeops-deploy")
        assert "rendered/argocd/minikube/kiwix.yaml" in files
        assert "rendered/kubernetes/minikube/grafana/deployment-grafana.yaml" in files
        kinds = [e["kind"] for e in controller.events(20)]
        assert "delivered" in kinds

        # A commit that changes nothing in the cluster: no deploy commit.
        native = repo / "lab" / "services" / "native.yaml"
        native.write_text(native.read_text() + "\n# a comment\n")
        _commit(repo, "comment only")
        assert controller.tick()
        assert len(branch_log(origin, "blumeops-deploy")) == 1

        # Removing a service removes its manifests and Application from the branch.
        k8s = repo / "lab" / "services" / "kubernetes.yaml"
        text = k8s.read_text()
        start = text.index("  kiwix:\n")
        end = text.index("  cloudnative-pg:\n")
        k8s.write_text(text[:start] + text[end:])
        third = _commit(repo, "drop kiwix")
        assert controller.tick()
        log = branch_log(origin, "blumeops-deploy")
        assert len(log) == 2 and f"Source-Commit: {third}" in log[0]
        files = branch_files(origin, "blumeops-deploy")
        assert not any("kiwix" in f for f in files)
        assert controller.status()["applied"] == third
    finally:
        controller.stop()


def test_a_failed_push_is_an_event_not_a_failed_sync(tmp_path: Path) -> None:
    repo = _source(tmp_path, tmp_path / "no-such-origin.git")
    controller = Controller(ControllerConfig(source_url=str(repo), lab_path="lab",
                                             state_dir=tmp_path / "state"))
    try:
        assert controller.tick()
        status = controller.status()
        assert status["applied"] == git(repo, "rev-parse", "HEAD")
        failed = [e for e in controller.events(20) if e["kind"] == "deliver-failed"]
        assert failed and "no-such-origin.git" in failed[0]["message"]
    finally:
        controller.stop()


def test_the_followed_branch_is_never_a_deploy_branch(tmp_path: Path) -> None:
    repo = tmp_path / "src"
    _source(tmp_path, tmp_path / "unused.git")
    lab = repo / "lab" / "lab.yaml"
    text = lab.read_text().replace(str(tmp_path / "unused.git"), str(repo))
    lab.write_text(text.replace("deploy_branch: blumeops-deploy", "deploy_branch: main"))
    head = _commit(repo, "deploy to main")
    controller = Controller(ControllerConfig(source_url=str(repo), lab_path="lab",
                                             state_dir=tmp_path / "state"))
    try:
        assert controller.tick()
        failed = [e for e in controller.events(20) if e["kind"] == "deliver-failed"]
        assert failed and "the branch the controller follows" in failed[0]["message"]
        assert git(repo, "rev-parse", "HEAD") == head  # nothing written to main
    finally:
        controller.stop()
