"""systemd on a host reached through a transport: units, their secrets, their state.

System units (`/etc/systemd/system`, `systemctl`) when the SSH user is root; user units
(`~/.config/systemd/user`, `systemctl --user`) otherwise: the caller decides from the
host facts. Round trips are fixed, whatever the number of units:

- `observe`: one batch: unit-file hashes + one `systemctl show` for every unit;
- `apply`: that observation, then (only when something differs) one batch that disables
  removed units, writes changed unit files and env files atomically (`put`, stdin),
  deletes removed ones, runs one `daemon-reload`, `enable --now` for new units, `restart`
  for changed ones, and reads the state back.

A job (`jobs`, `apply(timers=)`) has a oneshot service and a `.timer`: the timer is
enabled with `--now` and restarted only when its own text changed; the service is never
started or restarted here. Its state adds one `systemctl show --timestamp=utc` of each
job's service and timer (last run, next elapse) to the same batch.

Secret values go only into the unit's `EnvironmentFile=` (0600, owned by the unit's
`User=` or the SSH user), written through the transport's stdin: never an argument.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from blumeops.drivers.units import (
    Batch,
    BatchResult,
    StateReader,
    UnitState,
    expand_home,
    failure,
    health_word,
    no_states,
    sha256,
    systemd_env_file,
)
from blumeops.render.systemd import env_file, unit_name
from blumeops.transports.base import Transport
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import FileBatch, FileWrite

__all__ = ["SystemdManager", "UnitState", "health_word"]

SYSTEM_UNIT_DIR = "/etc/systemd/system"
USER_UNIT_DIR = "~/.config/systemd/user"
# What `%S` means to systemd: /var/lib for the system manager, $XDG_STATE_HOME (systemd
# >= 247; ~/.local/state by default) for a user manager.
SYSTEM_STATE_ROOT = "/var/lib"
USER_STATE_ROOT = "~/.local/state"
PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "Result",
              "UnitFileState", "NeedDaemonReload")
# A job's service and timer: its last run (service) and its schedule (timer).
JOB_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "Result", "UnitFileState",
                  "ExecMainStartTimestamp", "ExecMainExitTimestamp", "ExecMainStatus",
                  "LastTriggerUSec", "NextElapseUSecRealtime", "ActiveEnterTimestamp")


class SystemdManager:
    """Drives `blumeops-NAME.service` units; NAME is the service's catalog name."""

    def __init__(self, transport: Transport, *, user_mode: bool,
                 unit_dir: str | None = None, state_root: str | None = None,
                 units: Mapping[str, str] | None = None,
                 jobs: Collection[str] = ()) -> None:
        # unit_dir/state_root: only for tests and odd layouts; the defaults are systemd's.
        # units: service -> unit file name where the catalog declares one (`names:`).
        self.transport = transport
        self.units = dict(units or {})
        self.jobs = set(jobs)  # services that are scheduled jobs: each has a timer
        self.user_mode = user_mode
        self.unit_dir = unit_dir or (USER_UNIT_DIR if user_mode else SYSTEM_UNIT_DIR)
        self.state_root = state_root or (USER_STATE_ROOT if user_mode else SYSTEM_STATE_ROOT)

    # --- paths and commands -------------------------------------------------------------

    def unit(self, name: str) -> str:
        """The service's unit name, as the renderer names it."""
        return self.units.get(name) or unit_name(name)

    def unit_path(self, name: str) -> str:
        return f"{self.unit_dir}/{self.unit(name)}"

    def timer(self, name: str) -> str:
        """A job's timer: its service unit's name with .timer (as the renderer names it)."""
        return self.unit(name).removesuffix(".service") + ".timer"

    def timer_path(self, name: str) -> str:
        return f"{self.unit_dir}/{self.timer(name)}"

    def env_path(self, name: str, unit_text: str) -> str | None:
        """The host path of the unit's `EnvironmentFile=`, specifiers expanded."""
        for line in unit_text.splitlines():
            if line.startswith("EnvironmentFile="):
                path = line.partition("=")[2].strip().lstrip("-")
                return expand(path, self.state_root)
        return None

    def systemctl(self, *args: str) -> list[str]:
        return ["systemctl", *(["--user"] if self.user_mode else []), *args]

    def _show(self, batch: Batch, names: Sequence[str]) -> int:
        return batch.run(self.systemctl("show", "-p", ",".join(PROPERTIES),
                                         *(self.unit(n) for n in names)))

    # --- observe --------------------------------------------------------------------------

    def observe(self, names: Sequence[str]) -> dict[str, UnitState]:
        """Every unit's file and state (a job's timer too), in one round trip."""
        names = sorted(set(names))
        if not names:
            return {}
        batch = Batch()
        read = self.observe_in(batch, names)
        return read(batch.send(self.transport))

    def observe_in(self, batch: Batch, names: Sequence[str]) -> StateReader:
        """Add the units' files (a job's timer too), one `systemctl show` of them and one
        of the jobs' service and timer to `batch`; how to read their states."""
        if not names:
            return no_states
        files = batch.observe(self.paths(names))
        show = self._show(batch, names)
        jobs = self._show_jobs(batch, names)
        return lambda result: self._states(names, result, files, show, jobs)

    def paths(self, names: Sequence[str]) -> list[str]:
        """The unit files to observe: each unit, and the timer of each job."""
        return [self.unit_path(n) for n in names] + [
            self.timer_path(n) for n in names if n in self.jobs]

    def _show_jobs(self, batch: Batch, names: Sequence[str]) -> int:
        """One `show` of every job's service and timer (times in UTC, to be read back)."""
        jobs = [n for n in names if n in self.jobs]
        if not jobs:
            return -1
        return batch.run(self.systemctl(
            "show", "--timestamp=utc", "-p", ",".join(JOB_PROPERTIES),
            *(u for n in jobs for u in (self.unit(n), self.timer(n)))))

    def _states(self, names: Sequence[str], result: BatchResult, files: int,
                show: int, jobs: int = -1) -> dict[str, UnitState]:
        seen = result.files(files)
        shown = result.run(show)
        blocks = parse_show(shown.stdout) if shown.returncode == 0 else {}
        job_blocks: dict[str, dict[str, str]] = {}
        if jobs >= 0:
            ran = result.run(jobs)
            job_blocks = parse_show(ran.stdout) if ran.returncode == 0 else {}
        out = {}
        for name in names:
            f = seen[self.unit_path(name)]
            props = blocks.get(self.unit(name))
            state = unit_state(name, f.exists and f.kind == "file", f.sha256, props,
                               "" if props else failure(shown))
            if name in self.jobs:
                timer = seen[self.timer_path(name)]
                state = job_state(state, job_blocks.get(self.unit(name), {}),
                                  job_blocks.get(self.timer(name), {}),
                                  timer.sha256 if timer.exists and timer.kind == "file"
                                  else None)
            out[name] = state
        return out

    # --- apply ----------------------------------------------------------------------------

    def apply(self, upsert: Mapping[str, str], restart: Sequence[str] = (),
              remove: Sequence[str] = (), *,
              secrets: Mapping[str, Mapping[str, str]] | None = None,
              timers: Mapping[str, str] | None = None) -> dict[str, str]:
        """Make units exist with these texts (and secret values), restart `restart`, remove
        `remove`. Returns name -> error for what did not converge; {} when all is well.

        `timers`: the timer text of each job in `upsert`. A job's service is never started
        or restarted here: its timer is enabled (`enable --now`), restarted only when its
        own text changed (to re-arm it), and the timer starts the service at its times.
        Unchanged units whose state is fine cost one round trip and no command."""
        secrets = secrets or {}
        timers = dict(timers or {})
        names = sorted(set(upsert) | set(restart) | set(remove))
        if not names:
            return {}
        self.jobs |= set(timers)
        env_paths = {n: p for n in upsert if (p := self.env_path(n, upsert[n]))}
        refused = self._refuse(upsert, env_paths, secrets)
        upsert = {n: t for n, t in upsert.items() if n not in refused}
        batch = Batch()
        # Every name's timer file too: a job dropped, or become a daemon, leaves one.
        timer_paths = [self.timer_path(n) for n in names]
        files = batch.observe([self.unit_path(n) for n in names] + timer_paths
                              + list(env_paths.values()))
        show = self._show(batch, names)
        jobs = self._show_jobs(batch, names)
        first = batch.send(self.transport)
        before = self._states(names, first, files, show, jobs)
        seen = first.files(files)
        home = first.facts(files).home  # put's removal root must be absolute

        unit_writes: list[FileWrite] = []
        env_writes: list[FileWrite] = []
        enable: dict[str, str] = {}  # unit -> the service it is for
        restarts: dict[str, str] = {}
        drop_timers: list[str] = []
        for name, text in sorted(upsert.items()):
            state = before[name]
            fresh = not state.exists
            if state.sha256 != sha256(text):
                unit_writes.append(FileWrite(self.unit_path(name), text.encode()))
            path = env_paths.get(name)
            new_secrets = False
            if path is not None and name in secrets:
                body = systemd_env_file(secrets[name]).encode()
                if seen[path].sha256 != sha256(body):
                    env_writes.append(FileWrite(path, body, secret=True,
                                                owner=self.owner(text)))
                    new_secrets = not fresh
            if name in timers:
                self._plan_job(name, timers[name], state, unit_writes, enable, restarts)
                continue
            if seen[self.timer_path(name)].exists:
                drop_timers.append(name)  # it was a job: its timer goes
            if new_secrets:
                restarts[self.unit(name)] = name
            if fresh or not state.enabled:
                enable[self.unit(name)] = name  # enable --now starts it too
            if not fresh and (state.sha256 != sha256(text) or name in restart
                              or (state.enabled and not state.running)):
                restarts[self.unit(name)] = name  # changed, asked for, or stopped: heal
        restarts.update({self.unit(n): n for n in restart
                         if n not in upsert and n not in remove and n not in self.jobs})
        gone = [n for n in remove if n not in upsert and
                (before[n].exists or before[n].state not in ("inactive", "unknown")
                 or seen[self.timer_path(n)].exists)]
        gone_envs = [p for n in gone if (p := self._known_env(n))]
        stop = [u for n in gone for u in (
            [self.timer(n)] if seen[self.timer_path(n)].exists else []) + [self.unit(n)]]
        stop += [self.timer(n) for n in drop_timers]
        removes = [self.unit_path(n) for n in gone] + [
            self.timer_path(n) for n in [*gone, *drop_timers] if seen[self.timer_path(n)].exists]

        if not (unit_writes or env_writes or enable or restarts or stop):
            return {**refused, **self._errors(upsert, before, {})}

        batch = Batch()
        verbs: dict[int, list[str]] = {}  # run index -> the services that command was for
        if stop:
            verbs[batch.run(self.systemctl("disable", "--now", *stop))] = [*gone, *drop_timers]
        if unit_writes or removes:
            batch.put(FileBatch(writes=unit_writes, removes=removes,
                                root=expand_home(self.unit_dir, home)))
        if env_writes or gone_envs:
            batch.put(FileBatch(writes=env_writes, removes=gone_envs,
                                root=expand_home(self._secrets_root(), home)))
        if unit_writes or removes:
            verbs[batch.run(self.systemctl("daemon-reload"))] = []  # about every unit
        if enable:
            verbs[batch.run(self.systemctl("enable", "--now", *enable))] = list(
                enable.values())
        if restarts:
            ordered = sorted(restarts)
            verbs[batch.run(self.systemctl("restart", *ordered))] = [
                restarts[u] for u in ordered]
        kept = sorted(set(names) - set(gone))
        show = self._show(batch, kept) if kept else -1
        files = batch.observe(self.paths(kept)) if kept else -1
        jobs = self._show_jobs(batch, kept) if kept else -1
        try:
            second = batch.send(self.transport)
        except RemoteError as exc:
            return {n: exc.message for n in names}
        errors: dict[str, str] = dict(refused)
        for index, which in verbs.items():
            ran = second.run(index)
            if ran.returncode != 0:
                named = [n for n in which if self.unit(n) in ran.stderr
                         or self.timer(n) in ran.stderr]
                for n in named or which or names:
                    errors.setdefault(n, failure(ran))
        after = self._states(kept, second, files, show, jobs) if kept else {}
        errors.update({k: v for k, v in self._errors(upsert, after, errors).items()
                       if k not in errors})
        return errors

    def _plan_job(self, name: str, timer_text: str, state: UnitState,
                  writes: list[FileWrite], enable: dict[str, str],
                  restarts: dict[str, str]) -> None:
        """A job: write its timer when it differs; enable --now the timer when it is not
        enabled or not active; restart the timer (not the service) when its text changed."""
        job = state.job or {}
        changed = job.get("timer_sha256", "") != sha256(timer_text)
        if changed:
            writes.append(FileWrite(self.timer_path(name), timer_text.encode()))
        timer = self.timer(name)
        active = job.get("timer:ActiveState") == "active"
        enabled = job.get("timer:UnitFileState") in ("enabled", "enabled-runtime")
        if not (enabled and active):
            enable[timer] = name
        elif changed:
            restarts[timer] = name

    def _refuse(self, upsert: Mapping[str, str], env_paths: Mapping[str, str],
                secrets: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        """Units whose secrets cannot be delivered: left untouched, with the reason."""
        out = {}
        for name in upsert:
            if secrets.get(name) and name not in env_paths:
                out[name] = f"{self.unit(name)} has secrets but reads no EnvironmentFile="
            elif name in secrets:
                try:
                    systemd_env_file(secrets[name])
                except ValueError as exc:
                    out[name] = str(exc)
        return out

    def _errors(self, upsert: Mapping[str, str], states: Mapping[str, UnitState],
                known: Mapping[str, str]) -> dict[str, str]:
        out = {}
        for name in upsert:
            st = states.get(name)
            if st is None or name in known:
                continue
            if st.job is not None:  # a job: its timer must be active, its service not
                timer = st.job.get("timer:ActiveState", "unknown")
                if timer != "active":
                    out[name] = f"{self.timer(name)} is {timer}"
                continue
            if st.state == "failed" or (st.state in ("inactive", "unknown")):
                out[name] = f"{self.unit(name)} is {st.state}" + (
                    f" ({st.detail})" if st.detail else "")
        return out

    def owner(self, text: str) -> str | None:
        """The unit's `User=` (system units only): who owns its secrets file."""
        if self.user_mode:
            return None
        for line in text.splitlines():
            if line.startswith("User="):
                return line.partition("=")[2].strip() or None
        return None

    def _secrets_root(self) -> str:
        return f"{self.state_root}/blumeops"

    def _known_env(self, name: str) -> str | None:
        return expand(env_file(name), self.state_root)


def expand(path: str, state_root: str) -> str:
    """The few systemd specifiers blumeops renders: %S (state root), %h (home), %%."""
    out = []
    i = 0
    while i < len(path):
        c = path[i]
        if c == "%" and i + 1 < len(path):
            nxt = path[i + 1]
            if nxt == "S":
                out.append(state_root)
            elif nxt == "h":
                out.append("~")
            elif nxt == "%":
                out.append("%")
            else:
                raise ValueError(f"unsupported systemd specifier %{nxt} in {path!r}")
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_show(stdout: str) -> dict[str, dict[str, str]]:
    """`systemctl show -p ... U1 U2` output: one KEY=VALUE block per unit, by its Id."""
    blocks: dict[str, dict[str, str]] = {}
    for chunk in stdout.strip().split("\n\n"):
        props = dict(line.partition("=")[::2] for line in chunk.splitlines() if "=" in line)
        if props.get("Id"):
            blocks[props["Id"]] = props
    return blocks


def unit_state(name: str, exists: bool, digest: str | None,
               props: Mapping[str, str] | None, why: str = "") -> UnitState:
    if props is None:
        return UnitState(name, exists, digest if exists else None, "unknown", False, None,
                         why or "systemctl show said nothing about it")
    active = props.get("ActiveState", "unknown")
    sub = props.get("SubState", "")
    pid = int(props.get("MainPID") or 0) or None
    detail = f"{active} ({sub})" if sub else active
    if props.get("LoadState") not in (None, "loaded"):
        detail += f", {props.get('LoadState')}"
    if active == "failed" and props.get("Result") not in (None, "success"):
        detail += f", result {props.get('Result')}"
    if props.get("NeedDaemonReload") == "yes":
        detail += ", unit file changed on disk (needs daemon-reload)"
    return UnitState(name=name, exists=exists, sha256=digest if exists else None,
                     state=active, running=active == "active" and sub == "running",
                     pid=pid, detail=detail,
                     enabled=props.get("UnitFileState") in ("enabled", "enabled-runtime"))


def job_state(service: UnitState, svc: Mapping[str, str], timer: Mapping[str, str],
              timer_sha: str | None) -> UnitState:
    """A job's state: present when both files are, `running` while its service runs (a
    oneshot is `activating` until it ends), `enabled` when its timer is; the word is the
    run's (`running`) or the timer's (`waiting`, `inactive`, ...)."""
    from dataclasses import replace

    job = {f"service:{k}": v for k, v in svc.items()}
    job.update({f"timer:{k}": v for k, v in timer.items()})
    job["timer_sha256"] = timer_sha or ""
    running = svc.get("ActiveState") in ("activating", "active", "deactivating")
    timer_active = timer.get("ActiveState", "unknown")
    word = "running" if running else (
        timer.get("SubState") or "waiting" if timer_active == "active"
        else f"timer {timer_active}")
    return replace(service, exists=service.exists and timer_sha is not None, state=word,
                   running=running, pid=service.pid if running else None,
                   enabled=timer.get("UnitFileState") in ("enabled", "enabled-runtime"),
                   detail=f"timer {timer_active}" + (
                       f" ({timer['SubState']})" if timer.get("SubState") else ""), job=job)


def show_time(value: str | None) -> str | None:
    """A `systemctl show --timestamp=utc` time (`Fri 2026-11-27 22:08:16 UTC`) as ISO
    8601; None when unset (`n/a`, empty, 0)."""
    from datetime import UTC, datetime

    if not value:
        return None
    try:
        at = datetime.strptime(value.strip(), "%a %Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return None
    return at.replace(tzinfo=UTC).isoformat()
