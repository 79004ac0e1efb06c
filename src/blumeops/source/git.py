"""The lab's git source: a private bare clone of one branch, fetched and checked out by commit.

The controller syncs what was committed, never a working tree: uncommitted edits in the
origin are invisible here, and every sync names the exact commit it applied. Everything
goes through the real `git` CLI (no shell), isolated from the user's git configuration so
that a stray `url.insteadOf` or credential helper on the box cannot change what is synced,
and so that git never waits on a prompt nobody will answer.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# The followed repository's password, for `blumeops controller` (never on its command line).
SOURCE_PASSWORD_ENV = "BLUMEOPS_SOURCE_PASSWORD"
FETCH_TIMEOUT = 120.0  # seconds: network operations (clone, fetch)
LOCAL_TIMEOUT = 30.0  # seconds: operations on the local clone
GC_EVERY = 200  # fetches between `git gc --auto` runs

# Inherited GIT_* variables that may stay: transport settings, never repository selection
# (a controller started from a git hook would otherwise inherit GIT_DIR and friends).
_KEEP_GIT_ENV = re.compile(r"GIT_(SSH|SSH_COMMAND|SSH_VARIANT|SSL_\w+|PROXY_\w+|HTTP_\w+|TRACE\w*)")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# scp-like ssh address: [user@]host:path (no scheme, host is not a single drive letter).
_SCP = re.compile(r"(?:[^@/]+@)?(?P<host>[^:/]{2,}):(?P<path>.*)")
_URL_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# Field separators for --format: git never puts NUL in these fields.
_FORMAT = "%H%x00%h%x00%an%x00%ae%x00%aI%x00%s"


class SourceError(Exception):
    """The source could not be read; the message says why, for a person (git's words last)."""


@dataclass(frozen=True)
class CommitInfo:
    """What a person wants to see about a commit: who, when, what."""

    id: str
    short: str
    author: str
    email: str
    time: str  # ISO 8601 with the author's offset
    subject: str


def _git_env() -> dict[str, str]:
    """An environment in which git never prompts and ignores system/global config.

    HOME stays, so ssh still finds ~/.ssh (keys, known_hosts, config).
    """
    env = {k: v for k, v in os.environ.items()
           if (not k.startswith("GIT_") or _KEEP_GIT_ENV.fullmatch(k))
           and k != SOURCE_PASSWORD_ENV}
    env.update({
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    })
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        # BatchMode: fail instead of asking for a passphrase or about an unknown host key.
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


_ENV = _git_env()
# Per-command config: no credential helper, no hooks.
_BASE = ["git", "-c", "credential.helper=", "-c", "core.hooksPath=" + os.devnull,
         "-c", "advice.detachedHead=false"]
# A URL's password reaches git in this variable, answered by _HELPER: never in argv
# (any local user reads /proc/*/cmdline; the environment only its owner).
_PASSWORD_ENV = "BLUMEOPS_GIT_PASSWORD"
_HELPER = ("!f() { test \"$1\" = get && printf 'password=%s\\n' \"$" + _PASSWORD_ENV
           + "\"; }; f")


def _split_credentials(url: str) -> tuple[str, str | None]:
    """(URL without its password, the password) for scheme://user:pass@host URLs."""
    if "://" not in url:
        return url, None
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def with_password(url: str, password: str) -> str:
    """`url` (http(s), with a user name, no password) with `password` in it, for GitSource,
    which hands it to git through the environment. SourceError when it cannot take one."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.username:
        raise SourceError(f"{SOURCE_PASSWORD_ENV} is set: the source must be an http(s) URL "
                          f"with a user name (https://USER@host/owner/repo.git), got "
                          f"{redact(url)}")
    if parts.password is not None:
        raise SourceError(f"{SOURCE_PASSWORD_ENV} is set and the source URL holds a password "
                          "too: keep only the variable")
    netloc = f"{parts.username}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def credential_args(password: str | None, env: dict[str, str]) -> list[str]:
    """git options that hand `password` to git through `env` (updated in place): a
    credential helper reading the environment. [] when there is no password."""
    if password is None:
        return []
    env[_PASSWORD_ENV] = password
    return ["-c", f"credential.helper={_HELPER}"]


# Lines git adds after the real reason of a failed fetch: advice, not a cause.
_BOILERPLATE = ("please make sure you have the correct access rights",
                "and the repository exists.")
_PREFIX = re.compile(r"^(?:fatal|error|remote|warning): ", re.IGNORECASE)
# userinfo with a password in a URL: scheme://user:secret@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*):[^/@\s]*@")


def redact(text: str) -> str:
    """`text` with the password of any URL in it replaced by `***`."""
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)


def git_reason(stderr: str) -> str:
    """Git's own reason for a failure, on one line: its messages without the advice
    it appends ("Please make sure you have the correct access rights..."), without
    `fatal: ` prefixes, with passwords in URLs redacted. '' when git said nothing."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reasons = [_PREFIX.sub("", line) for line in lines
               if line.lower() not in _BOILERPLATE]
    if len(reasons) > 1:  # the generic line only adds to a specific one (e.g. ssh's)
        reasons = [r for r in reasons if r != "Could not read from remote repository."]
    unique = list(dict.fromkeys(reasons))
    return redact("; ".join(unique[-3:]))


def _run_group(cmd: list[str], env: dict[str, str], timeout: float
               ) -> subprocess.CompletedProcess[str]:
    """Run git in a process group of its own, stdin closed; on timeout kill the whole
    group, so the ssh (or https helper) git started does not outlive it."""
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _is_url(url: str) -> bool:
    return bool(_URL_SCHEME.match(url)) or (
        not url.startswith(("/", ".", "~")) and _SCP.fullmatch(url) is not None
    )


def _safe_lab_path(lab_path: str) -> PurePosixPath:
    path = PurePosixPath(lab_path or ".")
    if path.is_absolute() or ".." in path.parts:
        raise SourceError(f"lab path {lab_path!r} must be relative and inside the repository")
    return path


class GitSource:
    """One branch of one repository, mirrored into `cache_dir` (a bare repository).

    Thread-safe: fetches are serialised, and checkouts use their own index file (but two
    checkouts into the same `dest` at once are the caller's to avoid).
    """

    def __init__(self, url: str, branch: str, lab_path: str, cache_dir: Path) -> None:
        if not branch or branch.startswith("-") or ".." in branch or " " in branch:
            raise SourceError(f"invalid branch name {branch!r}")
        if not url:
            raise SourceError("no repository given")
        self.is_local = not _is_url(url)
        full = str(Path(url).expanduser().resolve()) if self.is_local else url
        self.shown_url = redact(full)  # for messages: no password from the URL
        # The password goes to git through the environment, never its command line.
        self.url, password = _split_credentials(full)
        self._env = dict(_ENV)
        self._extra = credential_args(password, self._env)
        self.branch = branch
        self.lab_path = _safe_lab_path(lab_path)
        self.cache_dir = Path(cache_dir).resolve()
        self._ref = f"refs/heads/{branch}"
        self._lock = threading.Lock()
        self._fetches = 0

    def __repr__(self) -> str:
        return (f"GitSource({self.shown_url!r}, branch={self.branch!r}, "
                f"lab_path={str(self.lab_path)!r})")

    # -- running git ----------------------------------------------------------------------

    def _run(self, args: list[str], *, what: str, timeout: float = LOCAL_TIMEOUT,
             check: bool = True, bare: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [*_BASE, *self._extra, *(["--git-dir", str(self.cache_dir)] if bare else []),
               *args]
        try:
            proc = _run_group(cmd, env or self._env, timeout)
        except FileNotFoundError:
            raise SourceError(f"{what}: the git command is not installed") from None
        except subprocess.TimeoutExpired:
            raise SourceError(f"{what}: git took over {timeout:g}s and was stopped") from None
        if check and proc.returncode != 0:
            detail = git_reason(proc.stderr) or f"git exited with status {proc.returncode}"
            raise SourceError(f"{what}: {detail}")
        return proc

    def _ensure_cache(self) -> None:
        if (self.cache_dir / "HEAD").is_file():
            return
        if self.cache_dir.exists() and any(self.cache_dir.iterdir()):
            raise SourceError(f"cache directory {self.cache_dir} exists and is not a git "
                              "repository; remove it or choose another state directory")
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        self._run(["init", "--quiet", "--bare", str(self.cache_dir)],
                  what=f"cannot create the clone in {self.cache_dir}", bare=False)
        # HEAD names our branch, so "HEAD" and bare `git log` mean the followed branch.
        self._run(["symbolic-ref", "HEAD", self._ref], what="cannot set up the clone")

    def _fetched(self) -> None:
        if not (self.cache_dir / "HEAD").is_file():
            raise SourceError(f"{self.shown_url} has not been fetched yet")

    # -- the API --------------------------------------------------------------------------

    def fetch(self, timeout: float = FETCH_TIMEOUT) -> str:
        """Bring the branch up to date (cloning on first use); return its newest commit."""
        if self.is_local and not Path(self.url).exists():
            raise SourceError(f"repository {self.shown_url} does not exist")
        with self._lock:
            self._ensure_cache()
            # '+': follow force-pushes too; the caller can tell with is_ancestor().
            proc = self._run(
                ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc",
                 "--", self.url, f"+{self._ref}:{self._ref}"],
                what=f"cannot fetch branch {self.branch!r} from {self.shown_url}",
                timeout=timeout, check=False,
            )
            if proc.returncode != 0:
                raise SourceError(self._fetch_error(proc.stderr))
            self._fetches += 1
            if self._fetches % GC_EVERY == 0:
                self.maintain()
            return self.newest()

    def maintain(self) -> None:
        """Pack loose objects when git thinks it is time (cheap when it is not).

        Fetches skip git's auto-gc so the hot path never pauses; this runs it every
        GC_EVERY fetches instead, or whenever the caller likes. In the foreground (git
        would detach it by default): done when this returns, bound by the timeout, and
        never a process left running behind the controller.
        """
        self._run(["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"],
                  what=f"cannot pack the clone in {self.cache_dir}", timeout=FETCH_TIMEOUT)

    def _fetch_error(self, stderr: str) -> str:
        if "couldn't find remote ref" in stderr:
            return f"branch {self.branch!r} not found in {self.shown_url}"
        if "does not appear to be a git repository" in stderr or (
            "not a git repository" in stderr
        ):
            return f"{self.shown_url} is not a git repository"
        detail = git_reason(stderr) or "git fetch failed"
        return f"cannot fetch branch {self.branch!r} from {self.shown_url}: {detail}"

    def newest(self) -> str:
        """The branch's newest commit as of the last fetch (no network)."""
        self._fetched()
        try:  # a loose ref (what fetch writes) saves a process: ~2 ms of a ~12 ms fetch
            sha = (self.cache_dir / self._ref).read_text().strip()
            if _SHA.fullmatch(sha):
                return sha
        except OSError:
            pass
        proc = self._run(["rev-parse", "--verify", "--quiet", f"{self._ref}^{{commit}}"],
                         what="cannot read the branch", check=False)
        sha = proc.stdout.strip()
        if proc.returncode != 0 or not _SHA.fullmatch(sha):
            raise SourceError(f"branch {self.branch!r} has not been fetched from {self.shown_url}")
        return sha

    def resolve(self, ref: str) -> str:
        """A full commit id for `ref` (a sha, short sha, branch or tag in the clone)."""
        self._fetched()
        if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
            raise SourceError(f"unknown commit {ref!r}")
        proc = self._run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                         what=f"unknown commit {ref!r}", check=False)
        sha = proc.stdout.strip()
        if proc.returncode != 0 or not _SHA.fullmatch(sha):
            detail = git_reason(proc.stderr)
            raise SourceError(f"unknown commit {ref!r} in {self.shown_url}"
                              + (f": {detail}" if detail else ""))
        return sha

    def checkout(self, commit: str, dest: Path) -> Path:
        """Replace `dest` with the tree of `commit`; return the lab path inside it.

        Built beside `dest` and renamed into place, so a reader never sees half a tree and
        a failed checkout leaves the previous one untouched. (Two renames: for a moment
        `dest` is absent; point readers at the returned path, not a fixed one.)
        """
        sha = self.resolve(commit)
        dest = Path(dest).absolute()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide the lab from services run as others
            self._materialise(sha, tmp)
            if not (tmp / self.lab_path).exists():
                raise SourceError(f"commit {sha[:12]} has no {str(self.lab_path)!r} "
                                  f"(the lab path) in {self.shown_url}")
            old = None
            if dest.exists() or dest.is_symlink():
                old = dest.with_name(f"{tmp.name}.old")
                dest.rename(old)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return dest / self.lab_path

    def _materialise(self, sha: str, work_tree: Path) -> None:
        # A private index file: concurrent checkouts must not share the bare repo's index.
        fd, index = tempfile.mkstemp(prefix=".index.", dir=work_tree.parent)
        os.close(fd)
        os.unlink(index)  # git wants to create it itself
        env = {**self._env, "GIT_INDEX_FILE": index}
        try:
            self._run(["--work-tree", str(work_tree), "checkout", "--quiet", sha, "--", "."],
                      what=f"cannot check out {sha[:12]}", env=env)
        finally:
            Path(index).unlink(missing_ok=True)

    def commit_info(self, commit: str) -> CommitInfo:
        """Author, time and subject of one commit."""
        sha = self.resolve(commit)
        proc = self._run(["log", "-1", f"--format={_FORMAT}", sha, "--"],
                         what=f"cannot read commit {sha[:12]}")
        return _parse_info(proc.stdout.rstrip("\n"))

    def log(self, limit: int = 20) -> list[CommitInfo]:
        """The branch's newest `limit` commits, newest first."""
        self.newest()
        proc = self._run(["log", f"--max-count={max(limit, 0)}", f"--format={_FORMAT}%x1e",
                          self._ref, "--"], what=f"cannot read the log of {self.branch!r}")
        return [_parse_info(rec.strip("\n")) for rec in proc.stdout.split("\x1e")
                if rec.strip()]

    def is_ancestor(self, a: str, b: str) -> bool:
        """True when `a` is `b` or in its history (so b is a fast-forward from a)."""
        sha_a, sha_b = self.resolve(a), self.resolve(b)
        proc = self._run(["merge-base", "--is-ancestor", sha_a, sha_b],
                         what="cannot compare commits", check=False)
        if proc.returncode in (0, 1):
            return proc.returncode == 0
        raise SourceError(f"cannot compare {sha_a[:12]} and {sha_b[:12]}: "
                          f"{git_reason(proc.stderr)}")

    def repo_matches(self, full_name_or_urls: list[str]) -> bool:
        """Whether a webhook's repository (any of its names or URLs) designates this source.

        URLs match by host and path whatever the scheme, user or port (ssh vs https of
        the same forge). A bare `owner/name` matches the last two components of our path:
        the forge may be reached by another host name (tailnet vs public) than the one
        in its payload, and the webhook is already authenticated by its signature.
        """
        mine = _repo_key(self.url)
        mine_name = _tail2(mine[1])
        for candidate in full_name_or_urls:
            if not isinstance(candidate, str) or not candidate.strip():
                continue
            candidate = candidate.strip()
            if _is_full_name(candidate):
                if mine_name and _norm_path(candidate) == mine_name.lower():
                    return True
                continue
            if _repo_key(candidate) == mine:
                return True
        return False


def _parse_info(line: str) -> CommitInfo:
    parts = line.split("\x00")
    if len(parts) != 6:
        raise SourceError(f"unexpected output from git log: {line[:80]!r}")
    return CommitInfo(*parts)


# -- repository identity ------------------------------------------------------------------

def _norm_path(path: str, lower: bool = True) -> str:
    """Forges ignore case and a trailing `.git` or `/`; a local file system may not."""
    path = unquote(path).strip()
    if path.startswith("/"):  # `a//b`, `a/./b` and `a/x/../b` name `a/b`
        path = posixpath.normpath(path)
    path = path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    path = path.strip("/")
    return path.lower() if lower else path


def _tail2(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else ""


def _is_full_name(text: str) -> bool:
    """`owner/name`: no scheme, no host, exactly two components."""
    return (not _URL_SCHEME.match(text) and ":" not in text and not text.startswith("/")
            and len([p for p in text.strip("/").split("/") if p]) == 2)


def _git_common_dir(path: Path) -> Path | None:
    """The repository git reaches at local `path`, as git finds it (`path/.git`, `path`,
    `path.git/.git`, `path.git`): its common git dir with symlinks resolved, so a work
    tree, its `.git`, a linked worktree, a separate git dir and a symlink to any of them
    are one repository. None when there is none."""
    for suffix in ("/.git", "", ".git/.git", ".git"):
        candidate = Path(f"{path}{suffix}")
        if not candidate.exists():
            continue
        try:
            proc = subprocess.run(
                ["git", "--git-dir", str(candidate), "rev-parse", "--path-format=absolute",
                 "--git-common-dir"], capture_output=True, text=True, env=_ENV,
                timeout=LOCAL_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip()).resolve()
    return None


def _local_path(url: str, base: Path | None) -> Path | None:
    """The path a local path or file:// URL names (relative ones against `base`, else the
    working directory); None for a network URL."""
    if url.lower().startswith("file:"):
        return Path(unquote(urlsplit(url).path))
    if _is_url(url):
        return None
    path = Path(url).expanduser()
    return path if path.is_absolute() or base is None else base / path


def _repo_key(url: str, base: Path | None = None) -> tuple[str, str]:
    """(host, path) identifying a repository: host '' for local paths and file:// URLs,
    whose path is the repository git would reach there (see _git_common_dir)."""
    local = _local_path(url, base)
    if local is not None:
        found = _git_common_dir(local)
        resolved = str(found if found is not None else local.resolve())
        return ("", _norm_path(resolved, lower=False))
    if _URL_SCHEME.match(url):
        parts = urlsplit(url)
        return ((parts.hostname or "").lower(), _norm_path(parts.path))
    scp = _SCP.fullmatch(url)
    if scp:
        return (scp["host"].lower(), _norm_path(scp["path"]))
    return ("", _norm_path(url))


def same_repository(a: str, b: str, base_a: Path | None = None,
                    base_b: Path | None = None) -> bool:
    """Whether two URLs or paths name one repository (not merely equal strings): local
    ones by the git dir they reach, network ones by host and normalised path whatever
    the scheme, user or port. Relative paths are taken against `base_a`/`base_b`."""
    return _repo_key(a, base_a) == _repo_key(b, base_b)


@dataclass(frozen=True)
class WorkTree:
    """A lab found inside a git work tree: what `blumeops up` follows."""

    root: Path
    branch: str
    lab_path: str  # relative to root
    dirty: bool


def work_tree_of(path: Path) -> WorkTree | None:
    """The git work tree holding `path` and its checked-out branch, or None."""
    directory = path if path.is_dir() else path.parent

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                                  text=True, env=_git_env(), timeout=LOCAL_TIMEOUT,
                                  check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    branch = git("symbolic-ref", "--short", "-q", "HEAD")
    if not top or not branch or git("rev-parse", "--verify", "-q", "HEAD") is None:
        return None
    root = Path(top)
    rel = path.resolve().relative_to(root.resolve())
    status = git("status", "--porcelain", "--", str(directory))
    return WorkTree(root, branch, rel.as_posix() or ".", bool(status))
