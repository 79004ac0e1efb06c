"""launchd on a macOS host reached through a transport: plists, their secrets, their state.

`domain` is `gui/UID` (LaunchAgents in `~/Library/LaunchAgents`, the SSH user's own
session) or `system` (LaunchDaemons in `/Library/LaunchDaemons`, when the SSH user is
root). launchd reads a plist only when it is bootstrapped, so:

- new plist: write, `launchctl bootstrap DOMAIN PLIST`;
- changed plist: `bootout DOMAIN/LABEL`, write, `bootstrap` (once more, a second later,
  if launchd was still tearing the old job down);
- restart only (asked for, new secret values, or found not running): `kickstart -k`;
- removed: `bootout`, delete the plist and its secrets.

Round trips are fixed: one to observe (plist hashes + `launchctl print` of every job),
one to change. A service with secrets runs through `SECRETS_WRAPPER`, a stdlib-only
script written beside the lab's state, reading a 0600 JSON env file: both travel over
the transport's stdin, never on a command line.
"""

from __future__ import annotations

import plistlib
import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blumeops.drivers.units import (
    WRAPPER_SOURCE,
    Batch,
    BatchResult,
    StateReader,
    UnitState,
    expand_home,
    failure,
    health_word,
    json_env_file,
    no_states,
    sha256,
)
from blumeops.render import launchd as render
from blumeops.transports.base import Transport
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import FileBatch, FileWrite, RunResult

__all__ = ["LaunchdManager", "UnitState", "health_word"]

AGENT_DIR = "~/Library/LaunchAgents"
DAEMON_DIR = "/Library/LaunchDaemons"
DOMAIN = re.compile(r"^(system|gui/\d+|user/\d+)$")
WRAPPER_NAME = posixpath.basename(render.SECRETS_WRAPPER)
# `bootstrap` right after `bootout` can fail while launchd still tears the old job down:
# 5 (Input/output error) on recent macOS, 37 (Operation already in progress) before.
RETRY_CODES = (5, 37)


@dataclass
class _Plan:
    writes: list[FileWrite] = field(default_factory=list)
    support: list[FileWrite] = field(default_factory=list)  # wrapper, env files
    bootout: list[str] = field(default_factory=list)
    bootstrap: list[str] = field(default_factory=list)
    kickstart: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    log_dirs: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.writes or self.support or self.bootout or self.bootstrap
                    or self.kickstart or self.gone)


class LaunchdManager:
    """Drives the `me.blumeops.NAME` jobs of one launchd domain."""

    def __init__(self, transport: Transport, *, domain: str, plist_dir: str | None = None,
                 state_dir: str = render.STATE_DIR,
                 labels: Mapping[str, str] | None = None,
                 jobs: Collection[str] = ()) -> None:
        # plist_dir/state_dir: only for tests and odd layouts; the defaults are launchd's
        # and the renderer's.
        if not DOMAIN.match(domain):
            raise ValueError(f"not a launchd domain: {domain!r} (system, gui/UID, user/UID)")
        self.transport = transport
        self.labels = dict(labels or {})  # service -> Label the catalog declares (`names:`)
        # Scheduled jobs: launchd starts them at their plist's times; apply never does.
        self.jobs = set(jobs)
        self.domain = domain
        self.plist_dir = plist_dir or (DAEMON_DIR if domain == "system" else AGENT_DIR)
        self.state_dir = state_dir
        self.home = "~"  # the SSH user's home, learnt from the first observation

    def label(self, name: str) -> str:
        """The service's job Label, as the renderer names it."""
        return self.labels.get(name) or render.label(name)

    @property
    def unit_dir(self) -> str:
        return self.plist_dir

    def unit_path(self, name: str) -> str:
        return f"{self.plist_dir}/{self.label(name)}.plist"

    def target(self, name: str) -> str:
        return f"{self.domain}/{self.label(name)}"

    def _print(self, batch: Batch, names: Sequence[str]) -> list[int]:
        return [batch.run(["launchctl", "print", self.target(n)], timeout=30) for n in names]

    # --- observe --------------------------------------------------------------------------

    def observe(self, names: Sequence[str]) -> dict[str, UnitState]:
        """Every job's plist and state, in one round trip."""
        names = sorted(set(names))
        if not names:
            return {}
        batch = Batch()
        read = self.observe_in(batch, names)
        return read(batch.send(self.transport))

    def observe_in(self, batch: Batch, names: Sequence[str]) -> StateReader:
        """Add the jobs' plists and one `launchctl print` of each to `batch`; how to read
        their states."""
        if not names:
            return no_states
        files = batch.observe([self.unit_path(n) for n in names])
        prints = self._print(batch, names)
        return lambda result: self._states(names, result, files, prints)

    def _states(self, names: Sequence[str], result: BatchResult, files: int,
                prints: Sequence[int]) -> dict[str, UnitState]:
        seen = result.files(files)
        out = {}
        for name, index in zip(names, prints, strict=True):
            f = seen[self.unit_path(name)]
            exists = f.exists and f.kind == "file"
            out[name] = job_state(name, exists, f.sha256 if exists else None,
                                  result.run(index), name in self.jobs)
        return out

    # --- apply ----------------------------------------------------------------------------

    def apply(self, upsert: Mapping[str, str], restart: Sequence[str] = (),
              remove: Sequence[str] = (), *,
              secrets: Mapping[str, Mapping[str, str]] | None = None,
              timers: Mapping[str, str] | None = None) -> dict[str, str]:
        """Make jobs exist with these plists (and secret values), restart `restart`, remove
        `remove`. Returns name -> error for what did not converge; {} when all is well.
        `timers`: none, ever: a job's plist holds its schedule."""
        if timers:
            raise ValueError(f"launchd has no timer units (asked for {sorted(timers)}): "
                             "a job's plist holds its schedule")
        secrets = secrets or {}
        names = sorted(set(upsert) | set(restart) | set(remove))
        if not names:
            return {}
        parsed: dict[str, dict[str, Any]] = {}
        plan = _Plan()
        for name, text in upsert.items():
            try:
                parsed[name] = plistlib.loads(text.encode())
            except Exception as exc:  # plistlib raises several types for bad input
                plan.errors[name] = f"{self.label(name)}: not a valid plist ({exc})"
                continue
            found = parsed[name].get("Label") if isinstance(parsed[name], dict) else None
            if found != self.label(name):
                plan.errors[name] = (f"service {name}: the plist's Label is {found!r}, "
                                     f"expected {self.label(name)!r}")
                del parsed[name]
        support = {n: p for n in parsed if (p := secret_paths(parsed[n]))}
        for name in [n for n in parsed if secrets.get(n) and n not in support]:
            plan.errors[name] = (f"{self.label(name)} has secrets but does not run "
                                 "through the secrets wrapper")
            del parsed[name]  # left untouched: nothing half-applied
        batch = Batch()
        files = batch.observe([self.unit_path(n) for n in names]
                              + sorted({p for pair in support.values() for p in pair}))
        prints = self._print(batch, names)
        first = batch.send(self.transport)
        before = self._states(names, first, files, prints)
        seen = first.files(files)
        self.home = first.facts(files).home  # launchctl wants real paths, not ~/

        for name in sorted(parsed):
            self._plan_one(plan, name, upsert[name], parsed[name], before[name],
                           support.get(name), secrets.get(name), seen, name in restart)
        plan.kickstart += [n for n in restart if n not in upsert and n not in remove
                           and before[n].enabled and n not in self.jobs]
        plan.gone = [n for n in remove if n not in upsert
                     and (before[n].exists or before[n].enabled)]
        plan.bootout += [n for n in plan.gone if before[n].enabled]
        if plan.empty():
            return {**plan.errors, **self._errors(parsed, before)}
        return self._execute(plan, names, parsed, before)

    def _plan_one(self, plan: _Plan, name: str, text: str, data: Mapping[str, Any],
                  state: UnitState, paths: tuple[str, str] | None,
                  values: Mapping[str, str] | None, seen: Mapping[str, Any],
                  asked: bool) -> None:
        changed = state.sha256 != sha256(text)
        if changed:
            plan.writes.append(FileWrite(self.unit_path(name), text.encode()))
            plan.log_dirs |= {posixpath.dirname(str(data[k])) for k in
                              ("StandardOutPath", "StandardErrorPath") if data.get(k)}
        secrets_changed = False
        if paths is not None:
            wrapper, env = paths
            source = WRAPPER_SOURCE.read_bytes()
            if seen[wrapper].sha256 != sha256(source) and not any(
                    w.path == wrapper for w in plan.support):
                plan.support.append(FileWrite(wrapper, source, mode=0o755))
            if values is not None:
                body = json_env_file(values).encode()
                if seen[env].sha256 != sha256(body):
                    plan.support.append(FileWrite(env, body, secret=True,
                                                  owner=self._owner(data)))
                    secrets_changed = True
        if not state.enabled:
            plan.bootstrap.append(name)
        elif changed:
            plan.bootout.append(name)  # launchd rereads a plist only on bootstrap
            plan.bootstrap.append(name)
        elif name in self.jobs:
            pass  # a job runs at its times: never kickstarted, its next run reads new values
        elif asked or secrets_changed or not state.running:
            plan.kickstart.append(name)

    def _execute(self, plan: _Plan, names: Sequence[str], parsed: Mapping[str, Any],
                 before: Mapping[str, UnitState]) -> dict[str, str]:
        errors = dict(plan.errors)
        batch = Batch()
        outs: dict[int, str] = {}
        for name in plan.bootout:
            outs[batch.run(["launchctl", "bootout", self.target(name)], timeout=60)] = name
        if plan.writes or plan.gone:
            batch.put(FileBatch(writes=plan.writes,
                                removes=[self.unit_path(n) for n in plan.gone],
                                root=expand_home(self.plist_dir, self.home)))
        gone_envs = [f"{self.state_dir}/secrets/{n}.env" for n in plan.gone]
        if plan.support or gone_envs:
            batch.put(FileBatch(writes=plan.support, removes=gone_envs,
                                root=expand_home(self.state_dir, self.home)))
        if plan.log_dirs:
            batch.run(["mkdir", "-p", *sorted(plan.log_dirs)])
        boots: dict[int, str] = {}
        for name in plan.bootstrap:
            boots[batch.run(["launchctl", "bootstrap", self.domain, self.unit_path_host(name)],
                            timeout=60)] = name
        kicks: dict[int, str] = {}
        for name in plan.kickstart:
            kicks[batch.run(["launchctl", "kickstart", "-k", self.target(name)],
                            timeout=60)] = name
        kept = sorted(set(names) - set(plan.gone))
        files = batch.observe([self.unit_path(n) for n in kept])
        prints = self._print(batch, kept)
        try:
            second = batch.send(self.transport)
        except RemoteError as exc:
            return {n: exc.message for n in names}
        for index, name in outs.items():
            result = second.run(index)
            if result.returncode not in (0, 3, 113):  # 3, 113: already gone, as wanted
                errors.setdefault(name, failure(result))
        for index, name in kicks.items():
            if second.run(index).returncode != 0:
                errors.setdefault(name, failure(second.run(index)))
        after = self._states(kept, second, files, prints) if kept else {}
        retry = [name for index, name in boots.items()
                 if _retryable(second.run(index)) and name in plan.bootout]
        for index, name in boots.items():
            result = second.run(index)
            if result.returncode != 0 and name not in retry:
                errors.setdefault(name, failure(result))
        if retry:
            errors.update(self._retry(retry, after))
        errors.update({k: v for k, v in self._errors(parsed, after).items() if k not in errors})
        return errors

    def _retry(self, names: Sequence[str], after: dict[str, UnitState]) -> dict[str, str]:
        """One more bootstrap, a second later, for jobs launchd was still booting out."""
        batch = Batch()
        batch.run(["sleep", "1"])
        boots = {batch.run(["launchctl", "bootstrap", self.domain,
                            self.unit_path_host(n)], timeout=60): n for n in names}
        files = batch.observe([self.unit_path(n) for n in names])
        prints = self._print(batch, names)
        result = batch.send(self.transport)
        after.update(self._states(names, result, files, prints))
        return {name: failure(result.run(i)) for i, name in boots.items()
                if result.run(i).returncode != 0}

    def owner(self, text: str) -> str | None:
        """The plist's `UserName` (LaunchDaemons only): who owns its secrets file."""
        if self.domain != "system":
            return None
        try:
            data = plistlib.loads(text.encode())
        except Exception:  # plistlib raises several types; apply refuses a bad plist
            return None
        return self._owner(data) if isinstance(data, dict) else None

    def _owner(self, data: Mapping[str, Any]) -> str | None:
        owner = data.get("UserName") if self.domain == "system" else None
        return str(owner) if owner else None

    def unit_path_host(self, name: str) -> str:
        """The plist path as launchctl's argument: `~/` expanded (no shell does it)."""
        return expand_home(self.unit_path(name), self.home)

    def _errors(self, parsed: Mapping[str, Any], states: Mapping[str, UnitState]
                ) -> dict[str, str]:
        out = {}
        for name in parsed:
            st = states.get(name)
            if name in self.jobs:  # between runs a job is not running: loaded is all
                if st is not None and st.state == "not loaded":
                    out[name] = f"{self.label(name)} is not loaded" + (
                        f" ({st.detail})" if st.detail else "")
                continue
            if st is not None and not st.running and st.state != "spawn scheduled":
                out[name] = f"{self.label(name)} is {st.state}" + (
                    f" ({st.detail})" if st.detail else "")
        return out


def _retryable(result: RunResult) -> bool:
    return result.returncode in RETRY_CODES


def secret_paths(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """(wrapper, env file) when the plist runs its program through the secrets wrapper."""
    argv = data.get("ProgramArguments")
    if not isinstance(argv, list) or "--" not in argv:
        return None
    cut = argv.index("--")
    if cut >= 2 and posixpath.basename(str(argv[cut - 2])) == WRAPPER_NAME:
        return str(argv[cut - 2]), str(argv[cut - 1])
    return None


def parse_print(stdout: str) -> dict[str, str]:
    """The job's own `key = value` lines from `launchctl print` (nested blocks such as
    `arguments = {...}` are skipped: an argument may look like a key)."""
    out: dict[str, str] = {}
    depth = 0
    for raw in stdout.splitlines():
        line = raw.strip()
        if line == "}":
            depth -= 1
            continue
        if depth == 1 and " = " in line and not line.endswith("{"):
            key, _, value = line.partition(" = ")
            out.setdefault(key.strip(), value.strip())
        if line.endswith("{"):
            depth += 1
    return out


def job_state(name: str, exists: bool, digest: str | None, printed: RunResult,
              scheduled: bool = False) -> UnitState:
    """A launchd job's state; `scheduled`: a calendar/interval job, whose `print` lines
    (runs, last exit code) are kept for its health."""
    if printed.returncode != 0:
        why = "" if printed.returncode == 113 else failure(printed)
        return UnitState(name, exists, digest, "not loaded", False, None, why,
                         job={} if scheduled else None)
    props = parse_print(printed.stdout)
    word = props.get("state", "unknown")
    pid = int(props["pid"]) if props.get("pid", "").isdigit() else None
    last = props.get("last exit code", "")
    running = word == "running"
    if word == "not running" and last.lstrip("-").isdigit() and int(last) != 0:
        word = f"exited {int(last)}"
    detail = f"last exit code {last}" if last and not running else ""
    return UnitState(name=name, exists=exists, sha256=digest, state=word, running=running,
                     pid=pid, detail=detail, enabled=True, job=props if scheduled else None)
