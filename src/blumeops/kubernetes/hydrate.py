"""The "rendered manifests" pattern: write a cluster's manifests and Applications to a
deploy branch, one commit per source commit, and push it.

ArgoCD then applies plain YAML a reviewer can read, from a branch only blumeops writes.
The work happens in a private bare repository in the state dir (never the user's
checkout): fetch the branch, build the new tree with one `git fast-import` (the owned
directories deleted and written whole, so removed services disappear), compare trees,
and push without force. A push rejected because someone else pushed first is retried
once on the new tip; a second rejection is reported. Git runs as `source.git` runs it:
no prompts, no user config, reasons from git's own words with passwords redacted.
A password in an https URL is handed to git through a credential helper reading the
environment, so it is never on a command line.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from blumeops.catalog.model import Lab
from blumeops.core.resources import Resource
from blumeops.source.git import (
    _BASE,
    _ENV,
    FETCH_TIMEOUT,
    LOCAL_TIMEOUT,
    _is_url,
    _run_group,
    _split_credentials,
    credential_args,
    git_reason,
    redact,
)

COMMITTER = "blumeops <blumeops@localhost>"
REMOTE_REF = "refs/blumeops/remote"  # the deploy branch as last fetched
CANDIDATE_REF = "refs/blumeops/candidate"  # the commit being pushed
STATE_FILE = "hydrate-state.json"
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info",
             "cannot lock ref", "failed to update ref")


class HydrateError(Exception):
    """The deploy branch could not be written or pushed; the message says why."""


@dataclass(frozen=True)
class DeployTarget:
    """Where one cluster's rendered output goes: a branch of a repository, under a path."""

    cluster: str
    repo_url: str
    branch: str
    path: str  # the cluster's `path` inside the repository ('' or '.' for the root)

    def prefix(self, *parts: str) -> str:
        pieces = [p.strip("/") for p in (self.path, *parts)]
        return "/".join(p for p in pieces if p and p != ".")

    @property
    def owned(self) -> tuple[str, str]:
        """The directories blumeops owns on the branch: rewritten whole each time."""
        return (self.prefix("kubernetes", self.cluster), self.prefix("argocd", self.cluster))


@dataclass
class HydrateResult:
    """What one hydration did; `commit` is None when the rendered output was unchanged."""

    cluster: str
    branch: str
    repo: str  # redacted
    source_commit: str
    commit: str | None
    tip: str
    files: int
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retried: bool = False
    patch: str = ""  # a dry run's `git diff` of what would be committed

    @property
    def pending(self) -> bool:
        return bool(self.added or self.modified or self.deleted)

    @property
    def changed(self) -> bool:
        return self.commit is not None

    def summary(self) -> str:
        if self.commit is None and self.pending:
            return (f"{self.cluster}: would commit to {self.branch} for source "
                    f"{self.source_commit[:12]}: {len(self.added)} added, "
                    f"{len(self.modified)} changed, {len(self.deleted)} removed (dry run)")
        if self.commit is None:
            return (f"{self.cluster}: {self.branch} unchanged at {self.tip[:12]} "
                    f"(source {self.source_commit[:12]}, {self.files} files)")
        return (f"{self.cluster}: pushed {self.commit[:12]} to {self.branch} for source "
                f"{self.source_commit[:12]}: {len(self.added)} added, {len(self.modified)} "
                f"changed, {len(self.deleted)} removed"
                + (" (retried on a newer tip)" if self.retried else ""))

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "changed": self.changed}


def deploy_targets(lab: Lab, branch: str | None = None,
                   repo_url: str | None = None) -> list[DeployTarget]:
    """The clusters delivered by ArgoCD that name a deploy branch (or all ArgoCD clusters,
    when the caller gives a branch and repository, as `blumeops deliver` does)."""
    out = []
    for name, cluster in lab.clusters.items():
        if cluster.delivery != "argocd":
            continue
        repo = repo_url or cluster.repo_url
        wanted = branch or cluster.deploy_branch
        if repo and wanted:
            out.append(DeployTarget(name, repo, wanted, cluster.path))
    return out


def deploy_files(resources: Iterable[Resource], target: DeployTarget) -> dict[str, str]:
    """Path on the branch -> text, for the cluster's manifests and Applications."""
    kinds = {f"k8s@{target.cluster}", f"argocd@{target.cluster}"}
    return {target.prefix(r.path): r.body for r in resources if r.target in kinds}


def _digest(files: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return h.hexdigest()


class Hydrator:
    """One deploy target, mirrored into a private bare repository at `cache_dir`."""

    def __init__(self, target: DeployTarget, cache_dir: Path) -> None:
        if (not target.branch or target.branch.startswith("-") or ".." in target.branch
                or any(c.isspace() for c in target.branch)):
            raise HydrateError(f"invalid deploy branch name {target.branch!r}")
        self.target = target
        url = target.repo_url
        if not _is_url(url):
            url = str(Path(url).expanduser().resolve())
        self._url, password = _split_credentials(url)
        # As written in the URL and as git reads it (percent-encoding undone): both are
        # what must never reach the branch.
        raw = urlsplit(url).password if "://" in url else None
        self._secrets = {v for v in (password, raw) if v}
        self.shown_url = redact(url)
        self._env = dict(_ENV)
        self._extra = credential_args(password, self._env)
        self.cache_dir = Path(cache_dir).resolve()
        self._ref = f"refs/heads/{target.branch}"

    def __repr__(self) -> str:
        return f"Hydrator({self.shown_url!r}, branch={self.target.branch!r})"

    # -- git --------------------------------------------------------------------------------

    def _git(self, args: list[str], *, what: str, timeout: float = LOCAL_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*_BASE, *self._extra, "--git-dir", str(self.cache_dir), *args]
        try:
            proc = _run_group(cmd, self._env, timeout)
        except FileNotFoundError:
            raise HydrateError(f"{what}: the git command is not installed") from None
        except subprocess.TimeoutExpired:
            raise HydrateError(f"{what}: git took over {timeout:g}s and was stopped") from None
        if check and proc.returncode != 0:
            detail = git_reason(proc.stderr) or f"git exited with status {proc.returncode}"
            raise HydrateError(redact(f"{what}: {detail}"))
        return proc

    def _ensure_repo(self) -> None:
        if (self.cache_dir / "HEAD").is_file():
            return
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        self._git(["init", "--quiet", "--bare", str(self.cache_dir)],
                  what=f"cannot create the deploy clone in {self.cache_dir}")

    def fetch(self) -> str | None:
        """The deploy branch's tip on the remote (None when the branch does not exist)."""
        self._ensure_repo()
        proc = self._git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                          "--no-auto-gc", "--", self._url, f"+{self._ref}:{REMOTE_REF}"],
                         what="", timeout=FETCH_TIMEOUT, check=False)
        if proc.returncode != 0:
            if "couldn't find remote ref" in proc.stderr:
                self._git(["update-ref", "-d", REMOTE_REF], what="cannot reset the clone")
                return None
            detail = git_reason(proc.stderr) or "git fetch failed"
            raise HydrateError(redact(f"cannot fetch branch {self.target.branch!r} from "
                                      f"{self.shown_url}: {detail}"))
        return (self.cache_dir / REMOTE_REF).read_text().strip() if (
            self.cache_dir / REMOTE_REF).is_file() else self._rev(REMOTE_REF)

    def owned_files(self, tip: str) -> dict[str, str]:
        """Path -> text of the files blumeops owns on the branch at `tip` (what the
        engine's plan compares the rendered files with)."""
        owned = [d for d in self.target.owned if d]
        listing = self._git(["ls-tree", "-r", "-z", tip, "--", *owned],
                            what="cannot list the deploy branch").stdout
        entries = [line.split("\t", 1) for line in listing.split("\0") if "\t" in line]
        blobs = [(meta.split()[2], path) for meta, path in entries if meta.split()[1] == "blob"]
        if not blobs:
            return {}
        cmd = [*_BASE, "--git-dir", str(self.cache_dir), "cat-file", "--batch"]
        proc = subprocess.run(cmd, env=self._env, input="".join(f"{sha}\n" for sha, _ in blobs)
                              .encode(), capture_output=True, timeout=LOCAL_TIMEOUT,
                              check=False)
        if proc.returncode != 0:
            raise HydrateError(f"cannot read the deploy branch: {git_reason(proc.stderr.decode())}")
        out: dict[str, str] = {}
        data, at = proc.stdout, 0
        for _, path in blobs:
            header_end = data.index(b"\n", at)
            size = int(data[at:header_end].split()[2])
            start = header_end + 1
            out[path] = data[start:start + size].decode(errors="replace")
            at = start + size + 1
        return out

    def _rev(self, ref: str) -> str:
        return self._git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                         what=f"cannot read {ref}").stdout.strip()

    # -- state: the tip and rendered digest of the last hydration, for the no-change path ---

    def _state(self) -> dict[str, str]:
        try:
            data = json.loads((self.cache_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self, tip: str, digest: str) -> None:
        path = self.cache_dir / STATE_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"tip": tip, "digest": digest}))
        tmp.replace(path)

    # -- building and pushing ---------------------------------------------------------------

    def _build(self, files: Mapping[str, str], parent: str | None, source: str,
               subject: str) -> str:
        """One commit on top of `parent`: owned directories replaced by `files`."""
        message = (f"Deploy {source[:12]}: {subject}\n\n"
                   f"Rendered by blumeops from source commit {source}.\n\n"
                   f"Source-Commit: {source}\n").encode()
        out: list[bytes] = [f"reset {CANDIDATE_REF}\n".encode(),
                            f"commit {CANDIDATE_REF}\n".encode(),
                            f"committer {COMMITTER} {int(time.time())} +0000\n".encode(),
                            b"data %d\n" % len(message), message]
        if parent:
            out.append(f"from {parent}\n".encode())
        out.extend(f"D {d}\n".encode() for d in self.target.owned if d)
        for path in sorted(files):
            data = files[path].encode()
            out.append(f"M 100644 inline {path}\n".encode())
            out.append(b"data %d\n" % len(data))
            out.append(data + b"\n")
        out.append(b"done\n")
        cmd = [*_BASE, "--git-dir", str(self.cache_dir), "fast-import", "--quiet", "--force",
               "--done"]
        try:
            proc = subprocess.run(cmd, env=self._env, input=b"".join(out), capture_output=True,
                                  timeout=FETCH_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise HydrateError("git fast-import took too long and was stopped") from None
        if proc.returncode != 0:
            detail = git_reason(proc.stderr.decode(errors="replace"))
            raise HydrateError(f"cannot write the deploy commit: {detail}")
        return self._rev(CANDIDATE_REF)

    def _diff(self, parent: str | None, commit: str) -> tuple[list[str], list[str], list[str]]:
        if parent is None:
            proc = self._git(["ls-tree", "-r", "--name-only", commit], what="cannot list")
            return proc.stdout.splitlines(), [], []
        proc = self._git(["diff-tree", "-r", "--no-renames", "--name-status", parent, commit],
                         what="cannot compare deploy commits")
        added: list[str] = []
        modified: list[str] = []
        deleted: list[str] = []
        for line in proc.stdout.splitlines():
            status, _, path = line.partition("\t")
            {"A": added, "D": deleted}.get(status[:1], modified).append(path)
        return added, modified, deleted

    def _push(self, commit: str) -> bool:
        """Push without force. True when pushed, False when rejected (someone was first)."""
        proc = self._git(["push", "--porcelain", "--quiet", "--", self._url,
                          f"{commit}:{self._ref}"],
                         what="", timeout=FETCH_TIMEOUT, check=False)
        if proc.returncode == 0:
            return True
        text = proc.stdout + proc.stderr
        if any(marker in text for marker in _REJECTED):
            return False
        detail = git_reason(proc.stderr) or f"git push exited with status {proc.returncode}"
        raise HydrateError(redact(f"cannot push {self.target.branch!r} to "
                                  f"{self.shown_url}: {detail}"))

    def _check_secretless(self, files: Mapping[str, str]) -> None:
        """A password of the repository URL must not be written to the branch (it would be
        if the catalog's repo_url held it: the Applications carry that URL)."""
        if any(secret in body for secret in self._secrets for body in files.values()):
            raise HydrateError(
                f"the rendered files hold the password of {self.shown_url} (the catalog's "
                "repo_url?): nothing pushed. Keep credentials out of the catalog: use ssh, "
                "or give the password only to `blumeops deliver --repo` and ArgoCD its own "
                "repository secret")

    def plan(self, files: Mapping[str, str], source_commit: str,
             subject: str = "") -> HydrateResult:
        """A dry run: the commit `hydrate` would push, as names and a patch; no push."""
        self._check_secretless(files)
        tip = self.fetch()
        candidate = self._build(files, tip, source_commit, subject)
        added, modified, deleted = self._diff(tip, candidate)
        base = [tip, candidate] if tip else ["--root", candidate]
        patch = self._git(["diff-tree", "-p", "--no-color", "--no-renames", "--no-commit-id",
                           "-r", *base], what="cannot show the deploy diff").stdout
        return HydrateResult(self.target.cluster, self.target.branch, self.shown_url,
                             source_commit, None, tip or "", len(files), added, modified,
                             deleted, patch=patch)

    def hydrate(self, files: Mapping[str, str], source_commit: str,
                subject: str = "") -> HydrateResult:
        """Make the deploy branch hold `files` for `source_commit`, pushing one commit
        when they changed."""
        self._check_secretless(files)
        digest = _digest(files)
        retried = False

        def result(tip: str, commit: str | None = None,
                   diff: tuple[list[str], list[str], list[str]] | None = None
                   ) -> HydrateResult:
            return HydrateResult(self.target.cluster, self.target.branch, self.shown_url,
                                 source_commit, commit, tip, len(files),
                                 *(diff or ([], [], [])), retried=retried)

        for attempt in (1, 2):
            tip = self.fetch()
            state = self._state()
            if tip is not None and state.get("tip") == tip and state.get("digest") == digest:
                return result(tip)
            candidate = self._build(files, tip, source_commit, subject)
            trees = self._git(["rev-parse", f"{candidate}^{{tree}}",
                               *([f"{tip}^{{tree}}"] if tip else [])],
                              what="cannot compare trees").stdout.split()
            if tip is not None and trees[0] == trees[1]:
                self._save_state(tip, digest)
                return result(tip)
            diff = self._diff(tip, candidate)
            if self._push(candidate):
                self._git(["update-ref", REMOTE_REF, candidate], what="cannot record the push")
                self._save_state(candidate, digest)
                # Each fast-import writes a pack: let git repack when they pile up (cheap
                # when not needed), in the foreground so nothing outlives the call.
                self._git(["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"],
                          what="", timeout=FETCH_TIMEOUT, check=False)
                return result(candidate, candidate, diff)
            if attempt == 2:
                break
            retried = True
        raise HydrateError(
            f"push of {self.target.branch!r} to {self.shown_url} was rejected twice: another "
            "writer keeps moving the branch. blumeops never force-pushes; the next sync "
            "tries again")


def plan_lab(lab: Lab, resources: list[Resource], source_commit: str, state_dir: Path,
             subject: str = "", branch: str | None = None,
             repo_url: str | None = None) -> list[HydrateResult]:
    """What `hydrate_lab` would commit, with the patch; nothing is pushed."""
    return [Hydrator(t, cache_dir(state_dir, t)).plan(deploy_files(resources, t),
                                                       source_commit, subject)
            for t in deploy_targets(lab, branch, repo_url)]


def hydrate_lab(lab: Lab, resources: list[Resource], source_commit: str, state_dir: Path,
                subject: str = "", branch: str | None = None,
                repo_url: str | None = None) -> list[HydrateResult]:
    """Hydrate every deploy target of the lab; `resources` is `render_lab(lab)` (or its
    kubernetes and argocd part)."""
    out = []
    for target in deploy_targets(lab, branch, repo_url):
        out.append(Hydrator(target, cache_dir(state_dir, target)).hydrate(
            deploy_files(resources, target), source_commit, subject))
    return out


def cache_dir(state_dir: Path, target: DeployTarget) -> Path:
    """A clone per (repository, branch); the name never holds the URL (nor a password)."""
    key = hashlib.sha256(f"{redact(target.repo_url)}\0{target.branch}".encode()).hexdigest()
    return Path(state_dir) / "deliver" / f"{target.cluster}-{key[:12]}"

