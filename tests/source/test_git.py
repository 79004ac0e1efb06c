"""GitSource against real repositories made in tmp dirs with the real git CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import blumeops.source.git as gitmod
from blumeops.source.git import GitSource, SourceError

ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com",
         "-c", "init.defaultBranch=main", "-C", str(repo), *args],
        env=ENV, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"lab/lab.yaml": "lab: one\n", "README": "hi\n"}, "first lab")
    return repo


@pytest.fixture
def source(origin: Path, tmp_path: Path) -> GitSource:
    return GitSource(str(origin), "main", "lab", tmp_path / "state" / "git")


def test_fetch_returns_newest_commit(source: GitSource, origin: Path) -> None:
    assert source.fetch() == git(origin, "rev-parse", "HEAD")
    assert (source.cache_dir / "HEAD").is_file()
    assert source.newest() == git(origin, "rev-parse", "HEAD")


def test_new_commit_after_fetch(source: GitSource, origin: Path) -> None:
    first = source.fetch()
    second = commit(origin, {"lab/lab.yaml": "lab: two\n"}, "second")
    assert source.newest() == first  # nothing seen until the next fetch
    assert source.fetch() == second
    assert source.is_ancestor(first, second)
    assert not source.is_ancestor(second, first)


def test_force_push_is_followed(source: GitSource, origin: Path) -> None:
    first = source.fetch()
    second = commit(origin, {"lab/lab.yaml": "lab: two\n"}, "second")
    assert source.fetch() == second
    git(origin, "reset", "-q", "--hard", first)
    third = commit(origin, {"lab/lab.yaml": "lab: three\n"}, "rewritten")
    assert source.fetch() == third
    assert not source.is_ancestor(second, third)


def test_checkout_is_the_commit_not_the_working_tree(
    source: GitSource, origin: Path, tmp_path: Path
) -> None:
    sha = source.fetch()
    (origin / "lab" / "lab.yaml").write_text("lab: uncommitted\n")
    (origin / "lab" / "untracked.yaml").write_text("x: 1\n")
    git(origin, "add", "lab/untracked.yaml")  # staged but not committed
    lab = source.checkout(sha, tmp_path / "work")
    assert lab == tmp_path / "work" / "lab"
    assert (lab / "lab.yaml").read_text() == "lab: one\n"
    assert not (lab / "untracked.yaml").exists()
    assert (tmp_path / "work" / "README").read_text() == "hi\n"
    assert not (tmp_path / "work" / ".git").exists()


def test_checkout_older_commit_replaces_dest(
    source: GitSource, origin: Path, tmp_path: Path
) -> None:
    first = git(origin, "rev-parse", "HEAD")
    commit(origin, {"lab/lab.yaml": "lab: two\n", "lab/extra.yaml": "e: 1\n"}, "second")
    source.fetch()
    dest = tmp_path / "work"
    assert (source.checkout("main", dest) / "extra.yaml").exists()
    (dest / "stray").write_text("left over")
    lab = source.checkout(first[:8], dest)
    assert (lab / "lab.yaml").read_text() == "lab: one\n"
    assert not (lab / "extra.yaml").exists()
    assert not (dest / "stray").exists()  # dest is replaced, not merged into
    # No temp or old trees left beside dest.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["origin", "state", "work"]


def test_checkout_keeps_modes_and_symlinks(
    source: GitSource, origin: Path, tmp_path: Path
) -> None:
    script = origin / "lab" / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (origin / "lab" / "link.yaml").symlink_to("lab.yaml")
    sha = commit(origin, {}, "script and link")
    source.fetch()
    lab = source.checkout(sha, tmp_path / "work")
    assert os.access(lab / "run.sh", os.X_OK)
    assert (lab / "link.yaml").is_symlink()
    assert (lab / "link.yaml").read_text() == "lab: one\n"


def test_unknown_commit(source: GitSource, tmp_path: Path) -> None:
    source.fetch()
    dest = tmp_path / "work"
    source.checkout("main", dest)
    for bad in ("0" * 40, "deadbeef", "no-such-branch", "--help", ""):
        with pytest.raises(SourceError, match="unknown commit"):
            source.checkout(bad, dest)
    assert (dest / "lab" / "lab.yaml").exists()  # the previous checkout survives
    with pytest.raises(SourceError, match="unknown commit"):
        source.commit_info("f" * 40)
    with pytest.raises(SourceError, match="unknown commit"):
        source.resolve("nope")


def test_commit_without_lab_path_keeps_previous_checkout(
    source: GitSource, origin: Path, tmp_path: Path
) -> None:
    good = source.fetch()
    git(origin, "rm", "-q", "-r", "lab")
    bad = commit(origin, {"other": "x\n"}, "lab removed")
    source.fetch()
    dest = tmp_path / "work"
    source.checkout(good, dest)
    with pytest.raises(SourceError, match="has no 'lab'"):
        source.checkout(bad, dest)
    assert (dest / "lab" / "lab.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["origin", "state", "work"]


def test_missing_repository(tmp_path: Path) -> None:
    src = GitSource(str(tmp_path / "nowhere"), "main", "lab", tmp_path / "cache")
    with pytest.raises(SourceError) as info:
        src.fetch()
    assert str(info.value) == f"repository {tmp_path / 'nowhere'} does not exist"
    url = GitSource(f"file://{tmp_path}/nowhere", "main", "lab", tmp_path / "cache")
    with pytest.raises(SourceError) as info:
        url.fetch()
    message = str(info.value)
    assert "nowhere" in message and "Traceback" not in message
    assert "\n" not in message


def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    src = GitSource(str(tmp_path / "plain"), "main", "lab", tmp_path / "cache")
    with pytest.raises(SourceError, match="is not a git repository"):
        src.fetch()


def test_branch_not_found(origin: Path, tmp_path: Path) -> None:
    src = GitSource(str(origin), "release", "lab", tmp_path / "cache")
    with pytest.raises(SourceError) as info:
        src.fetch()
    assert str(info.value) == f"branch 'release' not found in {origin}"


def test_not_fetched_yet(source: GitSource) -> None:
    with pytest.raises(SourceError, match="has not been fetched yet"):
        source.newest()
    with pytest.raises(SourceError, match="has not been fetched yet"):
        source.log()


def test_file_url_and_other_branch(origin: Path, tmp_path: Path) -> None:
    git(origin, "checkout", "-q", "-b", "staging")
    staged = commit(origin, {"lab/lab.yaml": "lab: staging\n"}, "staging only")
    git(origin, "checkout", "-q", "main")
    src = GitSource(f"file://{origin}", "staging", "lab", tmp_path / "cache")
    assert src.is_local is False
    assert src.fetch() == staged
    lab = src.checkout(staged, tmp_path / "work")
    assert (lab / "lab.yaml").read_text() == "lab: staging\n"
    # Only the followed branch is mirrored.
    with pytest.raises(SourceError, match="unknown commit"):
        src.resolve("main")


def test_relative_local_path_is_made_absolute(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    src = GitSource("origin", "main", ".", Path("cache"))
    assert src.url == str(origin) and src.is_local
    sha = src.fetch()
    monkeypatch.chdir("/")  # later calls do not depend on the working directory
    assert src.checkout(sha, tmp_path / "work") == tmp_path / "work"


def test_bare_origin(origin: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(origin), str(bare)],
                   env=ENV, check=True)
    src = GitSource(str(bare), "main", "lab", tmp_path / "cache")
    assert src.fetch() == git(origin, "rev-parse", "HEAD")


def test_commit_info_and_log(source: GitSource, origin: Path) -> None:
    first = git(origin, "rev-parse", "HEAD")
    second = commit(origin, {"lab/lab.yaml": "lab: two\n"}, "Add a service: grafana")
    source.fetch()
    info = source.commit_info(second[:7])
    assert info.id == second
    assert second.startswith(info.short)
    assert (info.author, info.email) == ("Ada Lovelace", "ada@example.com")
    assert info.subject == "Add a service: grafana"
    assert "T" in info.time and info.time[-6] in "+-"  # ISO 8601 with an offset
    assert [c.id for c in source.log()] == [second, first]
    assert [c.id for c in source.log(limit=1)] == [second]
    assert source.log(limit=0) == []


def test_maintain_packs_the_clone(source: GitSource, origin: Path) -> None:
    source.fetch()
    source.maintain()  # nothing to do: cheap and harmless
    for i in range(3):
        commit(origin, {f"lab/f{i}.yaml": f"n: {i}\n"}, f"c{i}")
        source.fetch()
    subprocess.run(["git", "--git-dir", str(source.cache_dir), "gc", "-q"], env=ENV, check=True)
    assert source.newest() == git(origin, "rev-parse", "HEAD")  # packed refs still read
    assert len(source.log()) == 4


def test_resolve(source: GitSource, origin: Path) -> None:
    sha = source.fetch()
    assert source.resolve(sha) == sha
    assert source.resolve(sha[:7]) == sha
    assert source.resolve("main") == sha
    assert source.resolve("HEAD") == sha


def test_user_git_config_is_ignored(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A global insteadOf that would redirect the fetch, and a GIT_DIR from a hook.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f'[url "{tmp_path}/elsewhere"]\n\tinsteadOf = {origin}\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "bogus"))
    # The environment is computed once at import: recompute it under this one.
    monkeypatch.setattr(gitmod, "_ENV", gitmod._git_env())
    src = GitSource(str(origin), "main", "lab", tmp_path / "cache")
    assert src.fetch() == git(origin, "rev-parse", "HEAD")
    assert "GIT_DIR" not in gitmod._ENV


def test_git_never_prompts(tmp_path: Path) -> None:
    # An https URL on loopback nobody listens on: fails fast, never waits for input.
    src = GitSource("https://127.0.0.1:9/owner/repo.git", "main", ".", tmp_path / "cache")
    start = time.monotonic()
    with pytest.raises(SourceError, match="cannot fetch branch 'main' from https://"):
        src.fetch(timeout=20)
    assert time.monotonic() - start < 20


def test_timeout_is_reported(source: GitSource, tmp_path: Path) -> None:
    src = GitSource("ssh://127.0.0.1:9/x.git", "main", ".", tmp_path / "cache2")
    # Whether ssh fails fast or hangs, the error is one clear line.
    with pytest.raises(SourceError) as info:
        src.fetch(timeout=5)
    assert "\n" not in str(info.value)


def test_concurrent_fetches(source: GitSource, origin: Path) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(source.fetch())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(results) == {git(origin, "rev-parse", "HEAD")}


def test_cache_dir_that_is_not_a_repo(origin: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "junk").write_text("x")
    with pytest.raises(SourceError, match="is not a git repository"):
        GitSource(str(origin), "main", "lab", cache).fetch()


@pytest.mark.parametrize("lab_path", ["/etc", "../up", "lab/../../x"])
def test_lab_path_must_stay_inside(origin: Path, tmp_path: Path, lab_path: str) -> None:
    with pytest.raises(SourceError, match="must be relative"):
        GitSource(str(origin), "main", lab_path, tmp_path / "cache")


@pytest.mark.parametrize("branch", ["", "-x", "a..b", "a b"])
def test_bad_branch_names(origin: Path, tmp_path: Path, branch: str) -> None:
    with pytest.raises(SourceError, match="invalid branch"):
        GitSource(str(origin), branch, "lab", tmp_path / "cache")


def test_demo_lab_is_fast(tmp_path: Path) -> None:
    """A no-change fetch and a checkout of the demo lab stay in tens of milliseconds."""
    repo = tmp_path / "repo"
    shutil.copytree(DEMO, repo / "examples" / "demo")
    git(repo, "init", "-q", "-b", "main")
    sha = commit(repo, {}, "demo")
    src = GitSource(str(repo), "main", "examples/demo", tmp_path / "cache")
    assert src.fetch() == sha

    def best(fn: object, n: int = 5) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    fetch = best(src.fetch)
    checkout = best(lambda: src.checkout(sha, tmp_path / "work"))
    assert (tmp_path / "work" / "examples" / "demo" / "lab.yaml").is_file()
    # Generous bounds for busy CI machines; typical here: ~12 ms and ~10 ms.
    assert fetch < 0.25, fetch
    assert checkout < 0.5, checkout


# -- repo_matches -------------------------------------------------------------------------

def url_source(url: str, tmp_path: Path) -> GitSource:
    return GitSource(url, "main", ".", tmp_path / "cache")


@pytest.mark.parametrize("url", [
    "https://forge.ops.eblu.me/eblume/blumeops.git",
    "https://forge.ops.eblu.me/eblume/blumeops",
    "https://forge.ops.eblu.me/eblume/blumeops/",
    "ssh://forgejo@forge.ops.eblu.me:2200/eblume/blumeops.git",
    "forgejo@forge.ops.eblu.me:eblume/blumeops.git",
    "https://user@Forge.Ops.Eblu.Me:443/Eblume/BlumeOps.git",
])
def test_repo_matches_same_repo_any_form(url: str, tmp_path: Path) -> None:
    payload_urls = [
        "https://forge.ops.eblu.me/eblume/blumeops.git",  # clone_url
        "ssh://forgejo@forge.ops.eblu.me:2200/eblume/blumeops.git",  # ssh_url
        "https://forge.ops.eblu.me/eblume/blumeops",  # html_url
    ]
    src = url_source(url, tmp_path)
    for candidate in payload_urls:
        assert src.repo_matches([candidate]), candidate


def test_repo_matches_by_full_name(tmp_path: Path) -> None:
    # The controller may reach the forge by its tailnet name, the payload names the public one.
    src = url_source("ssh://forgejo@indri:2200/eblume/blumeops.git", tmp_path)
    assert src.repo_matches(["eblume/blumeops", "https://forge.ops.eblu.me/eblume/blumeops.git"])
    assert not src.repo_matches(["https://forge.ops.eblu.me/eblume/blumeops.git"])
    assert src.repo_matches(["EBlume/BlumeOps"])


def test_repo_does_not_match_others(tmp_path: Path) -> None:
    src = url_source("https://github.com/eblume/blumeops.git", tmp_path)
    assert not src.repo_matches(["eblume/dotfiles", "https://github.com/eblume/dotfiles.git",
                                 "git@github.com:eblume/dotfiles.git"])
    assert not src.repo_matches(["https://gitlab.com/eblume/blumeops.git"])
    assert not src.repo_matches(["https://github.com/other/blumeops.git", "other/blumeops"])
    assert not src.repo_matches([])
    assert not src.repo_matches(["", "  "])


def test_local_source_matches_by_path_or_full_name(origin: Path, tmp_path: Path) -> None:
    repo = tmp_path / "git" / "eblume" / "blumeops.git"
    repo.mkdir(parents=True)
    src = GitSource(str(repo), "main", "lab", tmp_path / "cache")
    assert src.repo_matches([str(repo)])
    assert src.repo_matches([f"file://{repo}/"])
    assert src.repo_matches(["eblume/blumeops"])
    assert src.repo_matches(["https://forge.example/x/y.git", "eblume/blumeops"])
    assert not src.repo_matches(["eblume/other", "https://forge.example/eblume/other.git"])
    assert not src.repo_matches([str(origin)])


def test_file_url_source_matches_its_path(origin: Path, tmp_path: Path) -> None:
    src = GitSource(f"file://{origin}", "main", "lab", tmp_path / "cache")
    assert src.repo_matches([str(origin)])
    assert src.repo_matches([f"file://{origin}.git"])
    assert not src.repo_matches([str(tmp_path)])
