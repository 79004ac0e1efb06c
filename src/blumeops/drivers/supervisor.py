"""The supervisor driver: native services under a supervisord that blumeops owns.

blumeops runs its own supervisord (never the system's), configured under the state dir:

    STATE/supervisor/supervisord.conf   written here; includes programs/*.conf
    STATE/supervisor/programs/NAME.conf one per service, rendered (docs/contracts.md)
    STATE/secrets/NAME.env              resolved secret values, JSON, 0600
    STATE/logs/NAME.log                 each program's output
    STATE/supervisor/marks/NAME.*       what is written / what runs (drivers/marks.py)

Observe reads the program files (what we last applied); status asks supervisord over
XML-RPC on a unix socket. Apply writes files, then lets supervisord diff them
(`reloadConfig`) and applies only the groups it reports: nothing else is touched.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.core.plan import Change, Live
from blumeops.drivers.base import Driver, Secrets
from blumeops.drivers.marks import STARTED, WRITTEN, config_mark
from blumeops.drivers.marks import restart_pending as marks_differ
from blumeops.drivers.probes import port_in_use
from blumeops.drivers.process import (
    DriverError,
    UnixHTTPConnection,
    cmdline,
    pid_alive,
    private_socket_dir,
    processes_with_env,
    read_pidfile,
    tail_file,
    terminate,
    wait_gone,
    wait_until,
)
from blumeops.drivers.secret_files import deliver_secret_files
from blumeops.fileio import tail_since, write_atomic
from blumeops.secrets.envfile import write_env_file
from blumeops.sockets import socket_path
from blumeops.state.dirs import private_dir

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.transports.types import JSON

__all__ = ["ApplyResult", "DriverError", "LocalSupervisor", "ProgramStatus", "SupervisorDriver"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STOPPED_STATES = {"STOPPED", "EXITED", "FATAL", "BACKOFF"}
# The only variables supervisord (and so every program) inherits from the controller:
# anything else in blumeops's environment (a vault key, tokens) stays out of services.
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM")


@dataclass(frozen=True)
class ProgramStatus:
    name: str
    state: str  # RUNNING, STARTING, BACKOFF, FATAL, EXITED, STOPPED, STOPPING, UNKNOWN
    pid: int | None
    description: str
    exitstatus: int
    spawnerr: str

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


@dataclass
class ApplyResult:
    """What apply did. Names are program (= group) names; errors are per program."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)  # same body, new secrets (or asked)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def touched(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.restarted)


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket (stdlib only: supervisor.xmlrpc costs 90 ms)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = self._connection[1]
        if conn is None:
            conn = UnixHTTPConnection(self._path, self._timeout)
            self._connection = (host, conn)
        return conn


class SupervisorDriver:
    """Owns one supervisord for one state dir. Every method is safe to call repeatedly."""

    def __init__(self, state_dir: Path, lab_dir: Path, timeout: float = 30.0) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.lab_dir = Path(lab_dir).resolve()
        self.timeout = timeout
        self.dir = self.state_dir / "supervisor"
        self.programs_dir = self.dir / "programs"
        self.marks_dir = self.dir / "marks"
        self.secrets_dir = self.state_dir / "secrets"
        self.logs_dir = self.state_dir / "logs"
        self.conf_path = self.dir / "supervisord.conf"
        self.pidfile = self.dir / "supervisord.pid"
        self.log_path = self.logs_dir / "supervisord.log"
        self.socket_path = socket_path(self.state_dir, "supervisor", "supervisord.sock")
        self._proxy: Any = None

    # -- paths and config ------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}
        env.setdefault("PATH", os.defpath)
        env["BLUMEOPS_STATE_DIR"] = str(self.state_dir)
        env["BLUMEOPS_LAB_DIR"] = str(self.lab_dir)
        env["BLUMEOPS_PYTHON"] = sys.executable
        return env

    def config_text(self) -> str:
        """supervisord.conf. The header records what the running daemon was started with,
        so a changed lab dir or Python is noticed (the daemon must restart to see it)."""

        def q(path: Path) -> str:  # supervisord expands %(...)s in values
            return str(path).replace("%", "%%")

        return "\n".join(
            [
                "; Written by blumeops: its own supervisord for this lab. Do not edit.",
                f"; lab_dir: {self.lab_dir}",
                f"; python: {sys.executable}",
                "[unix_http_server]",
                f"file={q(self.socket_path)}",
                "chmod=0700",
                "",
                "[supervisord]",
                f"logfile={q(self.log_path)}",
                "logfile_maxbytes=5MB",
                "logfile_backups=2",
                f"pidfile={q(self.pidfile)}",
                f"childlogdir={q(self.logs_dir)}",
                f"directory={q(self.lab_dir)}",
                "identifier=blumeops",
                "nodaemon=false",
                "minfds=256",
                "minprocs=64",
                "",
                "[rpcinterface:supervisor]",
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                "",
                "[supervisorctl]",
                f"serverurl=unix://{q(self.socket_path)}",
                "",
                "[include]",
                # Relative to this file: survives spaces in the state dir path.
                "files = programs/*.conf",
                "",
            ]
        )

    # -- the daemon --------------------------------------------------------------------

    @property
    def rpc(self) -> Any:
        if self._proxy is None:
            transport = _UnixTransport(str(self.socket_path), self.timeout)
            self._proxy = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=transport)
        return self._proxy

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            state = self.rpc.supervisor.getState()
        except (OSError, http.client.HTTPException, xmlrpc.client.Error):
            self._proxy = None  # reconnect next time
            return False
        return bool(state.get("statename") == "RUNNING")

    def is_running(self) -> bool:
        return self._ping()

    def daemon_pid(self) -> int | None:
        """The pid of our supervisord, if its pidfile names a live one."""
        pid = read_pidfile(self.pidfile)
        if pid is None or not pid_alive(pid):
            return None
        argv = cmdline(pid)
        if argv is not None and str(self.conf_path) not in argv:
            return None  # the pid was reused by something else
        return pid

    def ensure_running(self) -> None:
        """Start supervisord unless it already answers; recover from a crashed one.

        A daemon started with another config (lab dir moved, new Python) is restarted,
        since supervisord reads ENV_ expansions only from the environment it started with.
        """
        private_dir(self.state_dir)
        for d in (self.programs_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        private_dir(self.secrets_dir)
        conf = self.config_text()
        current = self.conf_path.read_text() if self.conf_path.exists() else None
        if self._ping():
            if current == conf:
                return
            self.shutdown()
        pid = self.daemon_pid()
        if pid is not None and wait_until(self._ping, 5.0):
            if current == conf:
                return  # it was still starting
            self.shutdown()
        elif pid is not None:
            terminate(pid)  # alive but deaf: a wedged daemon
        self._recover()
        self._write_atomic(self.conf_path, conf)
        self._start()

    def _recover(self) -> None:
        """Clean up after a supervisord that died without stopping its programs.

        Its programs keep running as orphans holding their ports: kill their process
        groups, or the new daemon would start duplicates that fail to bind.
        """
        url = f"unix://{self.socket_path}"
        for pid in list(processes_with_env("SUPERVISOR_SERVER_URL", url)):
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                continue
            if pgid == os.getpgrp():
                terminate(pid)  # never signal our own group
            else:
                terminate(pgid, group=True)
        self.pidfile.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    def _start(self) -> None:
        private_socket_dir(self.socket_path)
        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf_path)]
        # supervisord forks and the parent exits: config errors arrive on stderr first.
        proc = subprocess.run(
            cmd,
            env=self._env(),
            cwd=self.lab_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise DriverError(
                f"supervisord failed to start (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}\n{self._log_since(size)}"
            )
        if not wait_until(self._ping, self.timeout):
            raise DriverError(
                f"supervisord did not answer on {self.socket_path} within {self.timeout:.0f}s; "
                f"its log ({self.log_path}) ends with:\n{self._log_since(size)}"
            )

    def _log_since(self, offset: int) -> str:
        return tail_since(self.log_path, offset)

    def shutdown(self) -> None:
        """Stop every program and supervisord itself; return once nothing is left."""
        pid = self.daemon_pid()
        if self._ping():
            try:
                pid = pid or int(self.rpc.supervisor.getPID())
                # Stop programs first, all at once, and poll ourselves: supervisord's own
                # waits (shutdown, stop with wait=True) tick at its 1 s loop timeout.
                self.rpc.supervisor.stopAllProcesses(False)
                wait_until(self._all_stopped, self.timeout)
            except (OSError, http.client.HTTPException, xmlrpc.client.Error, DriverError):
                pass
        if pid is not None:
            self._stop_daemon(pid)
        self._proxy = None
        self._recover()  # anything left behind (a program that ignored SIGTERM, a crash)
        if self.socket_path.parent != self.dir:
            with contextlib.suppress(OSError):
                self.socket_path.parent.rmdir()  # the short /tmp fallback dir

    def _stop_daemon(self, pid: int) -> None:
        """Ask supervisord to exit and nudge it until it has.

        Its main loop polls with a 1 s timeout and signals do not cut that short (Python
        retries an interrupted poll), so a SIGTERM or the shutdown RPC takes effect only
        at the next tick. A connection to its socket wakes the poll at once: connect
        every 20 ms until it is gone.
        """
        try:
            self.rpc.supervisor.shutdown()
        except (OSError, http.client.HTTPException, xmlrpc.client.Error):
            os.kill(pid, signal.SIGTERM)
        self._proxy = None
        deadline = time.monotonic() + self.timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.05)
                sock.connect(str(self.socket_path))
            wait_gone(pid, 0.02)
        if pid_alive(pid):
            terminate(pid, timeout=2.0)

    def _all_stopped(self) -> bool:
        return all(p.state in STOPPED_STATES for p in self.status().values())

    # -- observe -----------------------------------------------------------------------

    def observe(self) -> dict[str, str]:
        """Program name -> the program file as applied (files on disk, no daemon call)."""
        out: dict[str, str] = {}
        try:
            entries = sorted(os.scandir(self.programs_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        for entry in entries:
            if entry.name.endswith(".conf") and entry.is_file():
                out[entry.name[: -len(".conf")]] = Path(entry.path).read_text()
        return out

    def status(self) -> dict[str, ProgramStatus]:
        """Live state of every program supervisord knows, from one XML-RPC call."""
        try:
            infos = self.rpc.supervisor.getAllProcessInfo()
        except (OSError, http.client.HTTPException, xmlrpc.client.Error) as e:
            self._proxy = None
            raise DriverError(f"supervisord is not answering on {self.socket_path}: {e}") from e
        out: dict[str, ProgramStatus] = {}
        for info in infos:
            out[info["group"]] = ProgramStatus(
                name=info["group"],
                state=info["statename"],
                pid=info["pid"] or None,
                description=info["description"],
                exitstatus=info["exitstatus"],
                spawnerr=info["spawnerr"],
            )
        return out

    def tail_log(self, name: str, lines: int = 20) -> str:
        return tail_file(self.logs_dir / f"{name}.log", lines)

    # -- apply -------------------------------------------------------------------------

    def is_job(self, name: str) -> bool:
        """A scheduled job's program (rendered `autostart=false`): never started here."""
        try:
            return is_job_program(self.program_path(name).read_text())
        except OSError:
            return False

    def program_path(self, name: str) -> Path:
        return self.programs_dir / f"{name}.conf"

    def env_path(self, name: str) -> Path:
        return self.secrets_dir / f"{name}.env"

    def mark_path(self, name: str, which: str) -> Path:
        return self.marks_dir / f"{name}{which}"

    def _read_mark(self, name: str, which: str) -> str | None:
        try:
            return self.mark_path(name, which).read_text()
        except OSError:
            return None

    def restart_pending(self, name: str) -> str:
        """Why program `name` owes a restart: its files were written after its process
        was started ("" when it runs what is written)."""
        return marks_differ(self._read_mark(name, WRITTEN), self._read_mark(name, STARTED))

    def mark_written(self, name: str, mark: str) -> None:
        """Record `mark` as what is on disk for `name`, before any of its files change."""
        self._set_mark(name, WRITTEN, mark)

    def _set_mark(self, name: str, which: str, mark: str) -> None:
        if self._read_mark(name, which) != mark:
            self.marks_dir.mkdir(parents=True, exist_ok=True)
            self._write_atomic(self.mark_path(name, which), mark)

    def _forget_marks(self, name: str) -> None:
        for which in (WRITTEN, STARTED):
            self.mark_path(name, which).unlink(missing_ok=True)

    def apply(
        self,
        upsert: dict[str, tuple[str, dict[str, str]]],
        remove: Iterable[str] = (),
        restart: Iterable[str] = (),
        marks: Mapping[str, str] | None = None,
    ) -> ApplyResult:
        """Make the given programs exist with these bodies and secrets; remove others.

        upsert: name -> (program file body, resolved secret values). Unchanged bodies
        cost nothing; a program whose body is unchanged but whose secret values changed
        is restarted (it reads them only at start). `restart` forces a restart of
        programs that are otherwise unchanged; it also starts again a program that gave
        up (FATAL), which is how a later pass retries it. One program's failure is
        recorded in `errors` and does not stop the others. `marks` (name -> config
        mark, drivers/marks.py): recorded as written before the files, and as started
        once the program is (re)started, so a run cut off in between leaves a restart
        owed that the next plan shows.
        """
        marks = marks or {}
        result = ApplyResult()
        restart_set = set(restart)
        old_bodies: dict[str, str | None] = {}
        for name, (body, values) in sorted(upsert.items()):
            if not NAME_RE.match(name):
                result.errors[name] = f"invalid program name {name!r}"
                continue
            try:
                if name in marks:
                    self._set_mark(name, WRITTEN, marks[name])
                # A wrapped command reads its env file even when every secret is a file.
                if self._write_secrets(name, values, "blumeops.secrets.exec" in body):
                    restart_set.add(name)
                path = self.program_path(name)
                old = path.read_text() if path.exists() else None
                if old != body:
                    old_bodies[name] = old
                    self._write_atomic(path, body)
            except OSError as e:
                result.errors[name] = f"cannot write files: {e}"
        removing = []
        for name in remove:
            if NAME_RE.match(name):
                removing.append(name)
                self.program_path(name).unlink(missing_ok=True)
                self._forget_marks(name)
            else:
                result.errors[name] = f"invalid program name {name!r}"

        # Nothing written: one status call checks that supervisord knows every program
        # (a run that died between writing and reloading would leave it unknown).
        wanted = set(upsert) - set(result.errors)
        if not (old_bodies or removing or restart_set) and wanted <= set(self.status()):
            self._started(marks, wanted, result)
            return result
        added, changed, removed = self._reload(old_bodies, result)

        # Stop everything that must stop, together, then act on the groups.
        restart_only = sorted(
            (restart_set & set(self.status())) - set(added) - set(changed) - set(result.errors)
        )
        self._stop([*changed, *removed, *restart_only], result)
        for name in removed:
            self._call(result, name, "removeProcessGroup", name)
        for name in changed:
            self._call(result, name, "removeProcessGroup", name)
        for name in [*added, *changed]:
            # Start without waiting for startsecs so independent services start together.
            # A job is only added: blumeops-scheduler starts it at its times.
            if self._call(result, name, "addProcessGroup", name) and not self.is_job(name):
                self._call(result, name, "startProcessGroup", name, False)
        restart_only = [n for n in restart_only if not self.is_job(n)]
        for name in restart_only:
            if self._call(result, name, "startProcessGroup", name, False):
                result.restarted.append(name)
        for name in removing:
            self.env_path(name).unlink(missing_ok=True)
        result.added = sorted(n for n in added if n not in result.errors)
        result.changed = sorted(n for n in changed if n not in result.errors)
        result.removed = sorted(removed)
        self._started(marks, wanted, result)
        return result

    def _started(self, marks: Mapping[str, str], names: set[str], result: ApplyResult) -> None:
        """Record what each program now runs, once supervisord took its (re)start (a job
        is only loaded: its runs read what is written)."""
        for name in sorted(names & set(marks)):
            if name not in result.errors:
                try:
                    self._set_mark(name, STARTED, marks[name])
                except OSError as e:
                    result.errors[name] = f"cannot record its start: {e}"

    def _reload(
        self, old_bodies: dict[str, str | None], result: ApplyResult
    ) -> tuple[list[str], list[str], list[str]]:
        """reloadConfig; if one file is bad, find it, put back its old body, retry.

        supervisord refuses the whole config when any one file is invalid; putting the
        written files back and re-adding them one at a time isolates the bad ones (this
        costs one reload per written file, only when something is wrong).
        """
        try:
            return self._reload_once()
        except xmlrpc.client.Fault as first:
            if not old_bodies:
                msg = f"supervisord rejected its config: {first.faultString}"
                raise DriverError(msg) from first
        new_bodies = {name: self.program_path(name).read_text() for name in old_bodies}
        for name, old in old_bodies.items():
            self._restore(name, old)
        for name, body in new_bodies.items():
            self._write_atomic(self.program_path(name), body)
            try:
                self._rpc_reload_check()
            except xmlrpc.client.Fault as e:
                result.errors[name] = f"invalid program file: {e.faultString}"
                self._restore(name, old_bodies[name])
        try:
            return self._reload_once()
        except xmlrpc.client.Fault as e:
            raise DriverError(f"supervisord rejected its config: {e.faultString}") from e

    def _restore(self, name: str, old: str | None) -> None:
        if old is None:
            self.program_path(name).unlink(missing_ok=True)
        else:
            self._write_atomic(self.program_path(name), old)

    def _rpc_reload_check(self) -> None:
        self.rpc.supervisor.reloadConfig()

    def _reload_once(self) -> tuple[list[str], list[str], list[str]]:
        try:
            [[added, changed, removed]] = self.rpc.supervisor.reloadConfig()
        except (OSError, http.client.HTTPException) as e:
            self._proxy = None
            raise DriverError(f"supervisord is not answering on {self.socket_path}: {e}") from e
        return list(added), list(changed), list(removed)

    def _stop(self, names: list[str], result: ApplyResult) -> None:
        """Stop groups without waiting one by one, then wait for all of them at once."""
        if not names:
            return
        pending = set()
        for name in names:
            if self._call(result, name, "stopProcessGroup", name, False):
                pending.add(name)

        def stopped() -> bool:
            live = {p.name for p in self.status().values() if p.state not in STOPPED_STATES}
            return not (pending & live)

        if not wait_until(stopped, self.timeout):
            for name in sorted(pending):
                result.errors.setdefault(name, "did not stop in time")

    def _call(self, result: ApplyResult, name: str, method: str, *args: Any) -> bool:
        try:
            getattr(self.rpc.supervisor, method)(*args)
        except xmlrpc.client.Fault as e:
            if "NOT_RUNNING" in e.faultString or "ALREADY_STARTED" in e.faultString:
                return True
            result.errors.setdefault(name, f"{method}: {e.faultString}")
            return False
        return True

    def _write_secrets(self, name: str, values: dict[str, str], wrapped: bool = False) -> bool:
        """Write STATE/secrets/NAME.env if the values differ; True when they changed.
        `wrapped`: the program runs through the exec wrapper, which needs the file even
        empty (a service whose secrets are all files)."""
        path = self.env_path(name)
        try:
            old = json.loads(path.read_text()) if path.exists() else None
        except (OSError, ValueError):
            old = None
        if not values and not wrapped:
            if path.exists():
                path.unlink()
            return False
        if old == values:
            return False

        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_env_file(path, values)
        return True

    @staticmethod
    def _write_atomic(path: Path, text: str) -> None:
        write_atomic(path, text)


def is_job_program(body: str) -> bool:
    """Jobs are the programs supervisord does not start by itself (render/supervisor.py)."""
    return "\nautostart=false\n" in body


def restart_reasons(change: Change) -> bool:
    """A service reads its secrets only at start: new values (a file secret's too), a
    stopped process or a restart owed (drivers/marks.py) mean a restart even when its
    program is unchanged."""
    return change.action == "update" and any(
        r.startswith(("not running", "secret", "restart pending")) for r in change.reasons)


class LocalSupervisor(Driver):
    """`supervisor@HOST` for the local supervised host: SupervisorDriver, in-process."""

    kind = "supervisor"
    order = 30
    manages_services = True

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        runtime = self.ctx.runtime
        host = runtime.supervisor_host
        live: dict[str, Live] = {}
        if host is None:
            return live
        programs = runtime.supervisor.observe()
        status = runtime.program_status() if programs else {}
        for name, body in programs.items():
            st = status.get(name)
            state = st.state if st else "not loaded"
            running: bool | None = st is not None and st.state in ("RUNNING", "STARTING")
            if is_job_program(body):
                running = None  # a job is not kept running: between runs it is EXITED
            pending = runtime.supervisor.restart_pending(name) if st is not None else ""
            live[f"supervisor@{host}/program/{name}"] = Live(body, running, state,
                                                             restart_pending=pending)
        return live

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        runtime = self.ctx.runtime
        sup = runtime.supervisor
        sup.ensure_running()
        errors: dict[str, str] = {}
        deletes = [c for c in changes if c.desired is None]
        if deletes:
            result = sup.apply({}, remove=[c.name for c in deletes])
            errors.update({c.id: result.errors[c.name] for c in deletes
                           if c.name in result.errors})
        status = runtime.program_status()
        upsert: dict[str, tuple[str, dict[str, str]]] = {}
        marks: dict[str, str] = {}
        restart: list[str] = []
        ids = {}
        for change in changes:
            if change.desired is None:
                continue
            name = change.name
            busy = _taken_ports(runtime, name, status)
            if busy:
                errors[change.id] = (f"port {busy[0]} is already in use by another process; "
                                     f"stop it or change the port of '{name}' in the catalog")
                continue
            mark = config_mark(change.desired.body, change.secrets_fp)
            try:
                sup.mark_written(name, mark)  # before its file secrets change
                env = deliver_secret_files(runtime.state_dir, name, runtime.spec.services[name],
                                           runtime.files.resolve,
                                           dict(secrets.get(change.id, {})))
            except OSError as exc:
                errors[change.id] = f"cannot write its secret files: {exc.strerror or exc}"
                continue
            upsert[name] = (change.desired.body, env)
            marks[name] = mark
            ids[name] = change.id
            if restart_reasons(change):
                restart.append(name)
        if upsert:
            result = sup.apply(upsert, restart=restart, marks=marks)
            errors.update({ids[n]: e for n, e in result.errors.items() if n in ids})
        return errors

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        runtime = self.ctx.runtime
        status = runtime.program_status()
        return {n: runtime.health(n, status, started.get(n)) for n in services}

    def pids(self) -> dict[str, int | None]:
        # A job gets a new pid every run: that is its schedule, not a restart.
        services = self.ctx.runtime.spec.services
        return {name: st.pid for name, st in self.ctx.runtime.program_status().items()
                if getattr(services.get(name), "job", None) is None}


def _taken_ports(runtime: Any, name: str, status: dict[str, ProgramStatus]) -> list[int]:
    """Ports of the service held by something other than its own running program."""
    st = status.get(name)
    if st is not None and st.state in ("RUNNING", "STARTING", "BACKOFF"):
        return []  # its own process holds them; supervisord restarts it in place
    ports: dict[str, int] = runtime.spec.services[name].ports
    return [p for p in ports.values() if port_in_use(p)]
