"""`supervisor@HOST` over a transport: blumeops's own supervisord on a remote host.

The layout on the host mirrors the local one, under the lab's state dir there
(`~/.local/state/blumeops/LAB`, 0700):

    STATE/supervisor.sock               supervisord's XML-RPC (a unix socket, 0700)
    STATE/supervisor/supervisord.conf   includes programs/*.conf
    STATE/supervisor/programs/NAME.conf one per service, the rendered bytes
    STATE/supervisor/marks/NAME.*       what is written / what runs (drivers/marks.py)
    STATE/secrets/NAME.env              resolved secret values, JSON, 0600 (stdin only)
    STATE/secrets/files.json            the file secrets written (paths, never values)
    STATE/logs/NAME.log                 each program's output
    STATE/lib/blumeops/secrets/exec.py  the stdlib wrapper that reads NAME.env at start
    STATE/lib/blumeops/scheduler.py     blumeops-scheduler (+ cronmatch.py): stdlib only
    STATE/jobs/state.json               the scheduler's run records (0600)
    STATE/bin/python                    python3 with that wrapper on its path
    STATE/lab/                          the lab dir of programs on this host

Round trips: observe is one (in the host's batch: program hashes, supervisord's process
table, the file-secret index, each service's probe, a health command included), plus
one to fetch a program file only when its hash differs (for a readable diff). Apply is
two: files + `reloadConfig` in one batch, then the process-group calls; plus one to
start supervisord the first time, and one to record what the programs now run (their
marks, drivers/marks.py) once supervisord took their (re)starts. Secret values travel
only inside put_files' blobs (stdin), never in argv: environment secrets in
STATE/secrets/NAME.env, file secrets (`file:`) as 0600 files in the service's working
directory (drivers/remote_services.py). A Degraded service's health names its log and
shows its last lines (one more round trip, only then), the service's secret values
masked on the host.

Jobs (`schedule:`) run as on this machine: the job's program is added, never started
here; `blumeops-scheduler` (a copy of scheduler.py and cronmatch.py, standard library
only) starts it at its times and records its runs in STATE/jobs/state.json, which the
observe round trip reads (`jobs` op) for the job's health (core/jobs.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health, ServiceHealth
from blumeops.core.plan import Change, Live
from blumeops.core.schedule import SCHEDULER
from blumeops.drivers.base import Driver, Secrets
from blumeops.drivers.jobs import program_job_health
from blumeops.drivers.marks import STARTED, WRITTEN, config_mark, restart_pending
from blumeops.drivers.remote_services import (
    SecretFiles,
    index_op,
    log_hint,
    parse_index,
    probe_op,
    probed_health,
    secret_files_missing,
    secret_index_path,
    tail_op,
    workdir,
)
from blumeops.drivers.supervisor import is_job_program as local
from blumeops.drivers.supervisor import restart_reasons
from blumeops.transports.base import parse_facts, put_request, sub_result
from blumeops.transports.types import FileBatch, FileWrite

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.transports.types import JSON

STOPPED = {"STOPPED", "EXITED", "FATAL", "BACKOFF"}
# supervisord's process table answers in milliseconds: a look that waits longer finds a
# hung daemon, and should not hold the round trip (its budget, answers.py) for 30 s.
LOOK_SECONDS = 10
INSTALL_HINT = ("install it there (`pip install supervisor` for the SSH user, or "
                "`apt install supervisor`), or declare service_manager: systemd/launchd "
                "for this host")

# The host's copy of blumeops.secrets.exec: stdlib only, self-contained.
EXEC_SHIM = '''"""blumeops secrets wrapper: read the JSON env file, exec the command."""
import json, os, sys
lib = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.environ.get("PYTHONPATH") == lib:
    del os.environ["PYTHONPATH"]
if len(sys.argv) < 4 or sys.argv[2] != "--":
    sys.exit("usage: python -m blumeops.secrets.exec ENVFILE -- CMD [ARGS...]")
try:
    with open(sys.argv[1], encoding="utf-8") as f:
        values = json.load(f)
except (OSError, ValueError) as exc:
    sys.exit(f"blumeops.secrets.exec: {sys.argv[1]}: cannot read secrets env file")
os.environ.update({str(k): str(v) for k, v in values.items()})
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as exc:
    print(f"blumeops.secrets.exec: {sys.argv[3]}: {exc.strerror}", file=sys.stderr)
    sys.exit(127)
'''


# What blumeops-scheduler needs on a host without blumeops: stdlib-only modules, copied.
SCHEDULER_MODULES = ("scheduler.py", "cronmatch.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def is_job_program(body: str) -> bool:
    return local(body)


class RemoteSupervisor(Driver):
    kind = "supervisor"
    order = 30
    manages_services = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._daemon_up = False
        self._status: dict[str, dict[str, Any]] = {}
        # Probe answers from the observe round trip: the health table after a no-op
        # apply uses them instead of asking again. Cleared by apply and by each use.
        self._observed: list[JSON] | None = None
        self._secret_files: dict[str, str] = {}  # "SERVICE:NAME" -> path, from the host
        self._jobs: dict[str, Any] = {}  # job -> its run record (STATE/jobs/state.json)
        self._pending: dict[str, str] = {}  # program -> why a restart is owed (marks.py)

    # -- paths -----------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return self.ctx.remote_path(*parts)

    @property
    def socket(self) -> str:
        return self.path("supervisor.sock")

    def program_path(self, name: str) -> str:
        return self.path("supervisor", "programs", f"{name}.conf")

    def mark_path(self, name: str, which: str) -> str:
        return self.path("supervisor", "marks", f"{name}{which}")

    def _marks_ops(self) -> list[JSON]:
        return [{"op": "list", "dir": self.path("supervisor", "marks"), "suffix": which}
                for which in (WRITTEN, STARTED)]

    def _parse_marks(self, written: JSON, started: JSON) -> None:
        """Hashes of the two marks of each program: they differ while a restart is owed."""
        have: dict[str, str] = dict(started.get("files") or {})
        self._pending = {n: why for n, sha in (written.get("files") or {}).items()
                         if (why := restart_pending(sha, have.get(n)))}

    def _services(self) -> list[str]:
        return sorted(n for n, s in self.ctx.spec.services.items() if s.host == self.ctx.name)

    def jobs_path(self) -> str:
        return self.path("jobs", "state.json")

    def _is_job(self, name: str) -> bool:
        svc = self.ctx.spec.services.get(name)
        return svc is not None and svc.job is not None and svc.host == self.ctx.name

    def _lib_writes(self) -> list[FileWrite]:
        """The scheduler's modules under STATE/lib/blumeops (python3 finds them there)."""
        return [FileWrite(self.path("lib", "blumeops", name),
                          (PACKAGE_DIR / name).read_bytes()) for name in SCHEDULER_MODULES]

    def _probe_ops(self, services: Sequence[str]) -> tuple[list[str], list[JSON]]:
        names, ops = [], []
        for name in services:
            svc = self.ctx.spec.services.get(name)
            if svc is None or svc.job is not None:
                continue  # a job is judged by its runs, not probed
            op = probe_op(svc, workdir(self.path("lab"), svc))
            if op is not None:
                names.append(name)
                ops.append(op)
        return names, ops

    # -- observe ---------------------------------------------------------------------

    def observe_ops(self) -> list[JSON]:
        _, probes = self._probe_ops(self._services())
        return [{"op": "list", "dir": self.path("supervisor", "programs"), "suffix": ".conf"},
                {"op": "xmlrpc", "socket": self.socket,
                 "calls": [["supervisor.getAllProcessInfo", []]], "timeout": LOOK_SECONDS},
                index_op(secret_index_path(self.path()), stat=True, root=self.path("lab")),
                {"op": "jobs", "path": self.jobs_path()},
                *self._marks_ops(),
                *probes]

    def _parse_status(self, answer: JSON) -> None:
        if "down" in answer or "error" in answer or not answer.get("results"):
            self._daemon_up = False
            self._status = {}
            return
        first = answer["results"][0]
        self._daemon_up = "value" in first
        self._status = {p["group"]: p for p in first.get("value", [])}

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        programs: dict[str, str] = dict(answers[0].get("files", {}))
        self._parse_status(answers[1])
        self._secret_files = parse_index(answers[2])
        missing = secret_files_missing(answers[2], self._services(), self.ctx.spec.services)
        self._jobs = dict(answers[3].get("jobs") or {})
        self._parse_marks(answers[4], answers[5])
        self._observed = [answers[1], *answers[6:]]
        desired = {r.name: r for r in self.resources}
        differs = [n for n, sha in programs.items() if n not in desired
                   or sha != hashlib.sha256(desired[n].body.encode()).hexdigest()]
        bodies = {n: desired[n].body for n in programs if n not in differs}
        if differs and self.ctx.transport is not None:
            paths = [self.program_path(n) for n in differs]
            got = self.ctx.transport.call({"op": "read", "paths": paths})["contents"]
            bodies.update({n: got.get(p) or "" for n, p in zip(differs, paths, strict=True)})
        live = {}
        for name, body in bodies.items():
            st = self._status.get(name)
            state = str(st["statename"]) if st else "not loaded"
            running: bool | None = state in ("RUNNING", "STARTING")
            if is_job_program(body) and st is not None:
                running = None  # a job is not kept running: between runs it is EXITED
            pending = self._pending.get(name, "") if st is not None else ""
            live[f"{self.target}/program/{name}"] = Live(body, running, state,
                                                         reason=missing.get(name, ""),
                                                         restart_pending=pending)
        return live

    # -- apply -----------------------------------------------------------------------

    def conf_text(self) -> str:
        return "\n".join([
            "; Written by blumeops: its own supervisord for this lab. Do not edit.",
            "[unix_http_server]", f"file={self.socket}", "chmod=0700", "",
            "[supervisord]", f"logfile={self.path('logs', 'supervisord.log')}",
            "logfile_maxbytes=5MB", "logfile_backups=2",
            f"pidfile={self.path('supervisor', 'supervisord.pid')}",
            f"childlogdir={self.path('logs')}", f"directory={self.path('lab')}",
            "identifier=blumeops", "nodaemon=false", "minfds=256", "minprocs=64", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "", "[supervisorctl]", f"serverurl=unix://{self.socket}", "",
            "[include]", "files = programs/*.conf", ""])

    def _ensure_running(self, transport: Any) -> str | None:
        """Start the host's supervisord unless it answers; an error sentence, or None."""
        if self._daemon_up:
            return None
        facts = self.ctx.facts or transport.facts()
        manager = facts.managers.get("supervisor")
        if manager is None or manager.path is None:
            return f"no supervisord on host {self.ctx.name}'s PATH: {INSTALL_HINT}"
        lib = self.path("lib")
        wrapper = f'#!/bin/sh\nPYTHONPATH="{lib}" exec python3 "$@"\n'
        transport.put_files(FileBatch([
            FileWrite(self.path("supervisor", "supervisord.conf"), self.conf_text().encode()),
            FileWrite(self.path("bin", "python"), wrapper.encode(), mode=0o755),
            FileWrite(self.path("lib", "blumeops", "__init__.py"), b""),
            FileWrite(self.path("lib", "blumeops", "secrets", "__init__.py"), b""),
            FileWrite(self.path("lib", "blumeops", "secrets", "exec.py"), EXEC_SHIM.encode()),
            FileWrite(self.path("lab", ".keep"), b""),
            FileWrite(self.path("logs", ".keep"), b""),
            FileWrite(self.path("secrets", ".keep"), b"", secret=True),
            FileWrite(self.path("supervisor", "programs", ".keep"), b""),
            *self._lib_writes(),
        ]))
        # The state dir holds the socket and secrets: 0700, as locally.
        transport.run(["chmod", "700", self.path(), self.path("secrets")])
        env = {"BLUMEOPS_STATE_DIR": self.path(), "BLUMEOPS_LAB_DIR": self.path("lab"),
               "BLUMEOPS_PYTHON": self.path("bin", "python"),
               "BLUMEOPS_SUPERVISOR_SOCKET": self.socket}  # for blumeops-scheduler
        run = transport.run([manager.path, "-c", self.path("supervisor", "supervisord.conf")],
                            env=env, cwd=self.path("lab"), timeout=30)
        if run.returncode != 0:
            return (f"supervisord failed to start on host {self.ctx.name} "
                    f"(exit {run.returncode}): {(run.stderr or run.stdout).strip()[-300:]}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self._parse_status(self._rpc(transport, [["supervisor.getAllProcessInfo", []]]))
            if self._daemon_up:
                return None
            time.sleep(0.1)
        return f"supervisord on host {self.ctx.name} did not answer on {self.socket}"

    def _rpc(self, transport: Any, calls: list[list[Any]]) -> JSON:
        result: JSON = transport.call({"op": "xmlrpc", "socket": self.socket, "calls": calls})
        return result

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        transport = self.ctx.transport
        assert transport is not None
        self._observed = None
        problem = self._ensure_running(transport)
        if problem:
            return {c.id: problem for c in changes}

        # The agent renames a batch's files in order: each program's written mark goes
        # first, so a batch cut short never leaves new files under an old mark.
        marks: dict[str, str] = {}
        writes: list[FileWrite] = []
        removes: list[str] = []
        restart: list[str] = []
        files = SecretFiles(self._secret_files)
        for c in changes:
            if c.desired is None:
                removes += [self.program_path(c.name), self.path("secrets", f"{c.name}.env"),
                            self.mark_path(c.name, WRITTEN), self.mark_path(c.name, STARTED)]
                files.forget(c.name)
                continue
            marks[c.name] = config_mark(c.desired.body, c.secrets_fp)
            writes.insert(0, FileWrite(self.mark_path(c.name, WRITTEN), marks[c.name].encode()))
            writes.append(FileWrite(self.program_path(c.name), c.desired.body.encode()))
            svc = self.ctx.spec.services.get(c.name)
            values = dict(secrets.get(c.id) or {})
            if svc is not None:
                values = files.deliver(c.name, svc, self.path("lab"), values)
            if values or c.desired.secret_refs:
                # The wrapper reads this file even when every secret is a file: {} then.
                data = json.dumps({str(k): str(v) for k, v in values.items()}, sort_keys=True)
                writes.append(FileWrite(self.path("secrets", f"{c.name}.env"), data.encode(),
                                        secret=True))
            if restart_reasons(c):
                restart.append(c.name)
        if any(c.name == SCHEDULER and c.desired is not None for c in changes):
            writes += self._lib_writes()  # the scheduler runs the modules of this version
        writes += files.writes
        removes += files.removes
        if files.changed:
            writes.append(files.index_write(secret_index_path(self.path())))

        put, blobs = put_request(FileBatch(writes, removes, root=self.path()))
        reload = {"op": "xmlrpc", "socket": self.socket,
                  "calls": [["supervisor.reloadConfig", []]]}
        answer = transport.call({"op": "batch", "ops": [put, reload]}, blobs)["results"][1]
        self._secret_files = files.after
        first = (answer.get("results") or [{}])[0]
        if "value" not in first:
            why = first.get("fault") or answer.get("down") or "no answer"
            return {c.id: f"supervisord rejected its config: {why}" for c in changes}
        [[added, changed, removed]] = first["value"]
        known = set(self._status)
        restart_only = [n for n in restart if n in known and n not in changed]
        calls: list[list[Any]] = []
        for name in [*changed, *removed, *restart_only]:
            calls.append(["supervisor.stopProcessGroup", [name, True]])
        for name in [*removed, *changed]:
            calls.append(["supervisor.removeProcessGroup", [name]])
        jobs = {c.name for c in changes if c.desired is not None
                and is_job_program(c.desired.body)}
        for name in [*added, *changed]:
            calls.append(["supervisor.addProcessGroup", [name]])
            if name not in jobs:  # a job is only added: blumeops-scheduler starts it
                calls.append(["supervisor.startProcessGroup", [name, False]])
        # A program supervisord already knows but that gave up (FATAL), or one a dropped
        # run left unloaded, is started again.
        for name in [n for n in restart_only if n not in jobs]:
            calls.append(["supervisor.startProcessGroup", [name, False]])
        errors: dict[str, str] = {}
        ids = {c.name: c.id for c in changes}
        answered = True
        if calls:
            results = self._rpc(transport, calls).get("results", [])
            answered = len(results) == len(calls)
            for (method, args), res in zip(calls, results, strict=False):
                fault = res.get("fault")
                if fault and not any(w in fault for w in ("NOT_RUNNING", "ALREADY_STARTED",
                                                          "ALREADY_ADDED", "BAD_NAME")):
                    name = str(args[0])
                    errors.setdefault(ids.get(name, name), f"{method}: {fault}")
        # What each program now runs: recorded only after supervisord took its (re)start.
        started = [FileWrite(self.mark_path(n, STARTED), m.encode())
                   for n, m in marks.items() if ids[n] not in errors]
        if started and answered:
            transport.put_files(FileBatch(started, root=self.path()))
        return errors

    # -- health ----------------------------------------------------------------------

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        transport = self.ctx.transport
        assert transport is not None
        names, probes = self._probe_ops(services)
        cached, self._observed = self._observed, None
        all_names, _ = self._probe_ops(self._services())
        if cached is not None and not started and len(cached) == 1 + len(all_names):
            # Nothing changed on this host since it was observed this run: reuse.
            by_name = dict(zip(all_names, cached[1:], strict=True))
            results = [cached[0], *(by_name[n] for n in names)]
        else:
            ops = [{"op": "xmlrpc", "socket": self.socket,
                    "calls": [["supervisor.getAllProcessInfo", []]], "timeout": LOOK_SECONDS},
                   {"op": "jobs", "path": self.jobs_path()}, *self._marks_ops(), *probes]
            results = transport.call({"op": "batch", "ops": ops})["results"]
            self._jobs = dict(results.pop(1).get("jobs") or {})
            self._parse_marks(results.pop(1), results.pop(1))
        self._parse_status(results[0])
        probed = {n: r for n, r in zip(names, results[1:], strict=True)}
        out = {}
        log = self.path("logs")
        degraded: list[str] = []
        for name in services:
            svc = self.ctx.spec.services[name]
            st = self._status.get(name)
            where = f"on {self.ctx.name}"
            if svc.job is not None or name == SCHEDULER:
                out[name] = self._job_health(name, svc, st)
                continue
            if st is None:
                out[name] = ServiceHealth(name, Health.missing,
                                          f"not running under supervisord {where}",
                                          urls=svc.urls)
                continue
            state, pid = str(st["statename"]), st.get("pid") or None
            if state == "STARTING":
                out[name] = ServiceHealth(name, Health.progressing, "starting", state, pid,
                                          svc.urls)
                continue
            if state != "RUNNING":
                why = st.get("spawnerr") or ("exited too quickly" if state == "BACKOFF"
                                             else st.get("description", ""))
                out[name] = ServiceHealth(name, Health.degraded,
                                          f"{state} {where}: {why}; log: {log}/{name}.log",
                                          state, pid, svc.urls)
                degraded.append(name)
                continue
            if name in self._pending:
                out[name] = ServiceHealth(name, Health.progressing,
                                          f"restart pending {where}: {self._pending[name]}",
                                          state, pid, svc.urls)
                continue
            out[name] = probed_health(svc, probed.get(name), started, where, state, pid)
        if degraded:
            out.update(self._with_log_tails(transport, {n: out[n] for n in degraded}))
        return out

    def _job_health(self, name: str, svc: Any, st: dict[str, Any] | None) -> ServiceHealth:
        """A job: judged by its run record; the scheduler: Healthy while it runs."""

        where = f"on {self.ctx.name}"
        state = str(st["statename"]) if st else None
        pid = (st.get("pid") or None) if st else None
        if svc.job is not None:
            sched = self._status.get(SCHEDULER)
            return program_job_health(name, svc, state, pid,
                                      str(sched["statename"]) if sched else None,
                                      self._jobs.get(name), where)
        if state is None:
            return ServiceHealth(name, Health.missing, f"not running under supervisord {where}")
        if state == "STARTING":
            return ServiceHealth(name, Health.progressing, "starting", state, pid)
        if state != "RUNNING":
            log = self.path("logs", f"{name}.log")
            return ServiceHealth(name, Health.degraded, f"{state} {where}; log: {log}",
                                 state, pid)
        return ServiceHealth(name, Health.healthy, f"running {len(self._jobs)} jobs {where}",
                             state, pid)

    def _with_log_tails(self, transport: Any, healths: dict[str, ServiceHealth]
                        ) -> dict[str, ServiceHealth]:
        """Each Degraded service's last log lines after its log path, as the local driver
        shows them: one round trip for all, each service's own secrets masked on the host."""
        from dataclasses import replace

        ops = [tail_op(self.path("logs", f"{n}.log"), n, self.path("secrets", f"{n}.env"),
                       self.path()) for n in healths]
        results = transport.call({"op": "batch", "ops": ops})["results"]
        out = {}
        for (name, health), answer in zip(healths.items(), results, strict=True):
            text = (answer.get("tails") or {}).get(self.path("logs", f"{name}.log"))
            out[name] = replace(health, detail=f"{health.detail}: {log_hint(text)}")
        return out

    def pids(self) -> dict[str, int | None]:
        if not self._status and self.ctx.transport is not None:
            self._parse_status(self._rpc(self.ctx.transport,
                                         [["supervisor.getAllProcessInfo", []]]))
        # A job gets a new pid every run: that is its schedule, not a restart.
        return {name: (st.get("pid") or None) for name, st in self._status.items()
                if not self._is_job(name)}

    # -- down ------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every program and supervisord; remove program and secret files. Two round
        trips: stop + list (with the host's facts, for absolute paths), then remove."""
        transport = self.ctx.transport
        assert transport is not None
        stop = {"op": "xmlrpc", "socket": self.socket,
                "calls": [["supervisor.getAllProcessInfo", []],
                          ["supervisor.stopAllProcesses", [True]],
                          ["supervisor.shutdown", []]]}
        results = transport.call({"op": "batch", "ops": [
            {"op": "observe"}, stop,
            {"op": "list", "dir": self.path("supervisor", "programs"), "suffix": ".conf"},
            {"op": "list", "dir": self.path("secrets"), "suffix": ".env"},
            index_op(secret_index_path(self.path())),
        ]})["results"]
        self.ctx.home = parse_facts(sub_result(self.ctx.name, results[0])["facts"]).home
        answer = results[1]
        stopped = []
        if "down" not in answer and answer.get("results"):
            stopped = [f"{self.ctx.name}: {p['group']}"
                       for p in answer["results"][0].get("value", [])]
            stopped.append(f"{self.ctx.name}: supervisord")
        removes = [self.program_path(n) for n in results[2].get("files", {})]
        removes += [self.mark_path(n, which) for n in results[2].get("files", {})
                    for which in (WRITTEN, STARTED)]
        removes += [self.path("secrets", f"{n}.env") for n in results[3].get("files", {})]
        written = parse_index(results[4])
        if written:
            removes += [*sorted(set(written.values())), secret_index_path(self.path())]
        if removes:
            transport.put_files(FileBatch(removes=removes, root=self.path()))
        return stopped
