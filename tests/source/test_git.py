"""GitSource against real repositories made in tmp dirs with the real git CLI."""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import os
import select
import shutil
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
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


def loose_objects(repo: Path) -> int:
    out = subprocess.run(["git", "--git-dir", str(repo), "count-objects", "-v"], env=ENV,
                         capture_output=True, text=True, check=True).stdout
    return int(dict(line.split(": ") for line in out.splitlines())["count"])


def crowded_files(count: int = 30) -> dict[str, str]:
    """Files whose blobs all land in objects/17/: git estimates its loose objects from
    that one directory, so these look like ~7,700 loose objects, over gc.auto's 6,700."""
    files: dict[str, str] = {}
    n = 0
    while len(files) < count:
        text = f"filler {n}\n"
        n += 1
        if hashlib.sha1(f"blob {len(text)}\0{text}".encode()).hexdigest().startswith("17"):
            files[f"lab/fill/{n}.txt"] = text
    return files


def test_maintain_packs_the_clone(source: GitSource, origin: Path) -> None:
    source.fetch()
    source.maintain()  # nothing to do: cheap and harmless
    commit(origin, crowded_files(), "many objects")
    source.fetch()  # a small fetch arrives as loose objects
    before = loose_objects(source.cache_dir)
    assert before >= 30, before
    source.maintain()
    assert loose_objects(source.cache_dir) == 0
    assert source.newest() == git(origin, "rev-parse", "HEAD")  # packed refs still read
    assert len(source.log()) == 2


def test_fetch_runs_maintenance_every_gc_every_fetches(
    source: GitSource, origin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitmod, "GC_EVERY", 3)
    source.fetch()  # fetch 1
    commit(origin, crowded_files(), "many objects")
    source.fetch()  # fetch 2: no maintenance yet
    assert loose_objects(source.cache_dir) >= 30
    commit(origin, {"lab/lab.yaml": "lab: two\n"}, "second")
    source.fetch()  # fetch 3: maintenance
    assert loose_objects(source.cache_dir) == 0
    assert source.newest() == git(origin, "rev-parse", "HEAD")

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


class _Challenge(http.server.BaseHTTPRequestHandler):
    """A forge that wants credentials: 401 with a Basic challenge for every request."""

    seen: list[str | None]

    def do_GET(self) -> None:
        self.server.seen.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="forge"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def challenge() -> Iterator[tuple[str, list[str | None]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Challenge)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


# Runs in a child whose controlling terminal is a pty the test reads: a git that
# prompted ("Username for ...") would write there and wait for an answer.
_FETCH_ON_A_TTY = """
import sys
from pathlib import Path
from blumeops.source.git import GitSource, SourceError
try:
    GitSource(sys.argv[1], "main", ".", Path(sys.argv[2])).fetch(timeout=30)
except SourceError as exc:
    print("ERROR:", exc, flush=True)
"""


def _set_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_git_never_prompts(challenge: tuple[str, list[str | None]], tmp_path: Path) -> None:
    base, seen = challenge
    url = f"{base}/owner/repo.git"
    master, slave = os.openpty()
    start = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", _FETCH_ON_A_TTY, url, str(tmp_path / "cache")],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        preexec_fn=_set_controlling_tty)
    os.close(slave)
    output = b""
    while time.monotonic() - start < 20:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the pty
                chunk = b""
            output += chunk
            if not chunk and child.poll() is not None:
                break
        elif child.poll() is not None:
            break
    elapsed = time.monotonic() - start
    if child.poll() is None:
        child.kill()
    child.wait()
    os.close(master)
    text = output.decode(errors="replace")
    assert "Username for" not in text and "Password for" not in text, text
    assert elapsed < 10, (elapsed, text)
    assert seen, "git never reached the server"
    assert not any(seen), seen  # no credentials were sent (none was asked for)
    assert f"ERROR: cannot fetch branch 'main' from {url}: Authentication failed" in text, text


def test_timeout_is_reported(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ssh that connects and then never answers, as a firewalled forge does.
    pidfile = tmp_path / "ssh.pid"
    hang = tmp_path / "hanging-ssh"
    hang.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    hang.chmod(0o755)
    monkeypatch.setattr(gitmod, "_ENV", {**gitmod._ENV, "GIT_SSH_COMMAND": str(hang)})
    src = GitSource("ssh://git@127.0.0.1:2222/x.git", "main", ".", tmp_path / "cache")
    start = time.monotonic()
    with pytest.raises(SourceError) as info:
        src.fetch(timeout=1)
    assert time.monotonic() - start < 5
    assert str(info.value) == ("cannot fetch branch 'main' from ssh://git@127.0.0.1:2222/x.git: "
                               "git took over 1s and was stopped")
    # The hanging ssh went with git, not left behind.
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"ssh stand-in {pid} outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_unreachable_ssh_remote_names_the_reason(tmp_path: Path) -> None:
    # Real ssh (BatchMode), a loopback port nobody listens on.
    src = GitSource("ssh://git@127.0.0.1:1/x.git", "main", ".", tmp_path / "cache")
    with pytest.raises(SourceError) as info:
        src.fetch(timeout=20)
    assert str(info.value) == ("cannot fetch branch 'main' from ssh://git@127.0.0.1:1/x.git: "
                               "ssh: connect to host 127.0.0.1 port 1: Connection refused")


def test_password_in_url_is_never_shown(tmp_path: Path) -> None:
    src = GitSource("https://erich:hunter2-pw@127.0.0.1:9/o/r.git", "main", ".",
                    tmp_path / "cache")
    with pytest.raises(SourceError) as info:
        src.fetch(timeout=20)
    message = str(info.value)
    assert "hunter2" not in message and "hunter2" not in repr(src)
    assert message.startswith("cannot fetch branch 'main' from https://erich:***@127.0.0.1:9/")
    assert "Failed to connect to 127.0.0.1 port 9" in message, message


def test_missing_file_url_repository(tmp_path: Path) -> None:
    src = GitSource(f"file://{tmp_path}/nowhere", "main", ".", tmp_path / "cache")
    with pytest.raises(SourceError) as info:
        src.fetch()
    assert str(info.value) == f"file://{tmp_path}/nowhere is not a git repository"


@pytest.mark.parametrize(("stderr", "reason"), [
    ("ssh: connect to host h port 22: Connection refused\nfatal: Could not read from remote "
     "repository.\n\nPlease make sure you have the correct access rights\nand the repository "
     "exists.\n", "ssh: connect to host h port 22: Connection refused"),
    ("fatal: Could not read from remote repository.\n\nPlease make sure you have the "
     "correct access rights\nand the repository exists.\n",
     "Could not read from remote repository."),
    ("fatal: unable to access 'https://u:tok@h/r.git/': Could not resolve host: h\n",
     "unable to access 'https://u:***@h/r.git/': Could not resolve host: h"),
    ("", ""),
])
def test_git_reason(stderr: str, reason: str) -> None:
    assert gitmod.git_reason(stderr) == reason


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
    "https://forge.ops.eblu.me//eblume/./blumeops.git",  # the same path, as a server reads it
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


def test_local_repository_identity_is_the_git_dir_git_reaches(origin: Path,
                                                             tmp_path: Path) -> None:
    """Names git accepts for one repository match; a neighbour does not."""
    git(origin, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "other")
    (tmp_path / "link.git").symlink_to(origin / ".git")
    subprocess.run(["git", "clone", "-q", "--separate-git-dir", str(tmp_path / "sep.git"),
                    str(origin), str(tmp_path / "sep")], env=ENV, check=True)
    src = GitSource(str(origin), "main", "lab", tmp_path / "cache")
    assert src.repo_matches([str(tmp_path / "wt")])  # a linked worktree shares the refs
    assert src.repo_matches([str(tmp_path / "link")])  # git tries link.git
    assert src.repo_matches([f"file://{tmp_path}/x/../link.git/"])
    assert not src.repo_matches([str(tmp_path / "sep")])  # a clone is another repository
    assert gitmod.same_repository(str(tmp_path / "sep"), str(tmp_path / "sep.git"))
    assert gitmod.same_repository("../origin", str(origin), base_a=tmp_path / "wt")


def test_file_url_source_matches_its_path(origin: Path, tmp_path: Path) -> None:
    src = GitSource(f"file://{origin}", "main", "lab", tmp_path / "cache")
    assert src.repo_matches([str(origin)])
    assert src.repo_matches([f"file://{origin}.git"])
    assert not src.repo_matches([str(tmp_path)])
