"""blumeops-scheduler: runs a supervisor host's jobs at their times (supervisord has none).

It runs as one supervisord program (render/supervisor.py `scheduler_program`), with the
job table as its argument. Each job is a supervisord program of its own that supervisord
never starts by itself (`autostart=false`), so its secrets wrapper, environment, log and
process group are supervisord's as for any service. At a job's time the scheduler asks
supervisord to start it (XML-RPC on the lab's private socket), watches it until it exits,
and records the run in STATE/jobs/state.json (0600):

    {"jobs": {"NAME": {"scheduled_since", "next_run", "running", "last_start", "last_end",
                       "exit_code", "output", "last_success", "skipped"}}}

Times are ISO 8601 with the host's offset; a cron expression is read in the host's local
time. A run still going at the next time skips that time (recorded in `skipped`), as a
Kubernetes CronJob with `concurrencyPolicy: Forbid` does. Jobs that leave the table are
dropped from the state file; supervisord removes their programs.

The wall clock may be stepped back (NTP, a person): each look compares it with the
monotonic clock, and on a step back an interval job keeps the time it had left and a cron
job waits for its next time on the new clock, so no job stalls until the old time comes
round again. When a run's process exits, what it left running in its process group
(a child it put in the background) is stopped too, as supervisord stops a group. A run
longer than its job's `timeout` (seconds, in the table) is stopped by supervisord (the
whole group) and recorded as a failed run saying so.

    python -m blumeops.scheduler --state-dir STATE --table '[{"name": ..., "cron": ...}]'

Standard library only (Python 3.9) with blumeops.cronmatch: on a supervisor host reached
over SSH it runs from a copy of this file and cronmatch.py that the remote supervisor
driver writes under STATE/lib/blumeops (the host has python3, not blumeops). supervisord's
socket is BLUMEOPS_SUPERVISOR_SOCKET (set by the remote driver when it starts
supervisord), else the local layout's, else STATE/supervisor.sock.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from blumeops.cronmatch import next_after

TICK = 0.2  # seconds between looks while a job runs
STEP = 2.0  # seconds the wall clock may drift from the monotonic one before it is a step
REAP_WAIT = 2.0  # seconds a run's leftover processes get between SIGTERM and SIGKILL
OUTPUT_LINES = 20  # tail of a run's output kept in the state file
FINISHED = {"EXITED", "FATAL", "STOPPED", "BACKOFF", "UNKNOWN"}


SOCKET_ENV = "BLUMEOPS_SUPERVISOR_SOCKET"
MASK = "[redacted]"


@dataclass(frozen=True)
class Job:
    name: str
    cron: str | None
    every: int | None
    timeout: int | None = None  # seconds a run may take; None: no limit


def next_run(cron: str | None, every: int | None, after: datetime) -> datetime:
    """When a job with this schedule next runs after `after` (an interval counts from it);
    the catalog's rule (core/schedule.py), with the stdlib cron matcher."""
    if cron is not None:
        return next_after(cron, after)
    assert every is not None
    return after + timedelta(seconds=every)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path, self._timeout = path, timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)


def supervisor_socket(state_dir: Path) -> str:
    """supervisord's socket: the remote driver's (env), else this machine's layout."""
    if os.environ.get(SOCKET_ENV):
        return os.environ[SOCKET_ENV]
    try:
        from blumeops.sockets import socket_path
    except ImportError:  # a copy on a remote host without blumeops
        return str(state_dir / "supervisor.sock")
    return str(socket_path(state_dir.resolve(), "supervisor", "supervisord.sock"))


class Supervisor:
    """What the scheduler asks of supervisord: XML-RPC on its unix socket (stdlib)."""

    def __init__(self, state_dir: Path, socket_file: str, timeout: float = 30.0) -> None:
        self.logs_dir = state_dir / "logs"
        self.secrets_dir = state_dir / "secrets"
        self.socket = socket_file
        self.timeout = timeout
        self._proxy: Any = None

    @property
    def rpc(self) -> Any:
        if self._proxy is None:
            self._proxy = xmlrpc.client.ServerProxy(
                "http://localhost/RPC2", transport=_UnixTransport(self.socket, self.timeout))
        return self._proxy

    def env_path(self, name: str) -> Path:
        return self.secrets_dir / f"{name}.env"


def _tail_since(path: Path, offset: int, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _secret_values(path: Path) -> list[str]:
    """The job's own secret values (its JSON env file), to mask in its recorded output."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(v) for v in data.values()] if isinstance(data, dict) else []


def _mask(text: str, values: list[str]) -> str:
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, MASK)
        if value.strip() and value.strip() != value:
            text = text.replace(value.strip(), MASK)
    return text


def _write_private(path: Path, text: str) -> None:
    """Write atomically, 0600 (the output may name paths; the record is the lab's)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def now() -> datetime:
    return datetime.now().astimezone()


def _live_processes() -> dict[int, int] | None:
    """pid -> process group of every live (not zombie) process; None without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    out = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                out[int(entry)] = int(fields[2])
        except (OSError, IndexError, ValueError):
            continue
    return out


def _started_for(name: str, server_url: str, live: dict[int, int]) -> set[int]:
    """Process groups of live processes that this supervisord started for program `name`
    (supervisord puts both in their environment, which children inherit)."""
    want = {f"SUPERVISOR_PROCESS_NAME={name}".encode(),
            f"SUPERVISOR_SERVER_URL={server_url}".encode()}
    groups = set()
    for pid, pgid in live.items():
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if want <= set(handle.read().split(b"\0")):
                    groups.add(pgid)
        except OSError:
            continue
    return groups


def _signal_groups(groups: set[int], signum: int) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def parse_table(text: str) -> list[Job]:
    rows = json.loads(text)
    return [Job(str(r["name"]), r.get("cron"), r.get("every"), r.get("timeout"))
            for r in rows]


def state_path(state_dir: Path) -> Path:
    return state_dir / "jobs" / "state.json"


def read_state(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The recorded runs, job -> record ({} when there is none or it is unreadable)."""
    try:
        data = json.loads(state_path(state_dir).read_text())
    except (OSError, ValueError):
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return jobs if isinstance(jobs, dict) else {}


class Scheduler:
    """The loop: start due jobs, watch running ones, record every run."""

    def __init__(self, state_dir: Path, jobs: list[Job],
                 socket_file: str | None = None) -> None:
        self.state_dir = state_dir
        self.jobs = {job.name: job for job in jobs}
        self.supervisor = Supervisor(state_dir, socket_file or supervisor_socket(state_dir))
        self.offsets: dict[str, int] = {}  # log size at a run's start: its output follows
        self.pids: dict[str, int] = {}  # a running job's pid: its process group's id
        self.began: dict[str, float] = {}  # a running job's start, monotonic
        self.timed_out: set[str] = set()  # runs stopped for their timeout
        started = now()
        self._wall, self._mono = started, time.monotonic()  # the last look, both clocks
        old = read_state(state_dir)
        self.records: dict[str, dict[str, Any]] = {}
        for job in jobs:
            record = dict(old.get(job.name, {}))
            record.setdefault("scheduled_since", started.isoformat())
            record.setdefault("skipped", 0)
            self.records[job.name] = record
        self.due = {job.name: self._first_due(job, started) for job in jobs}

    def _first_due(self, job: Job, started: datetime) -> datetime:
        """A cron job's next time; an interval job one interval after its last start (at
        once when that passed while the scheduler was down), else after this start."""
        last = self.records[job.name].get("last_start")
        if job.every is not None and last:
            # At most one interval away: a last start "in the future" (the clock was set
            # back while the scheduler was down) must not hold the job until then.
            due = next_run(None, job.every, datetime.fromisoformat(last))
            return min(max(due, started), next_run(None, job.every, started))
        return next_run(job.cron, job.every, started)

    def clock_stepped_back(self, at: datetime) -> float:
        """Seconds the wall clock went back since the last look (0.0: it did not). Due
        times are moved to the new clock: an interval job keeps the time it had left,
        a cron job gets its next time after `at`."""
        mono = time.monotonic()
        step = (at - self._wall).total_seconds() - (mono - self._mono)
        self._wall, self._mono = at, mono
        if step > -STEP:
            return 0.0
        for name, due in self.due.items():
            job = self.jobs[name]
            if job.cron is None:
                self.due[name] = due + timedelta(seconds=step)
            else:
                self.due[name] = next_run(job.cron, None, at)
        print(f"blumeops-scheduler: the clock went back {-step:.0f}s; next runs recomputed",
              flush=True)
        return -step

    # -- records -----------------------------------------------------------------------

    def save(self) -> None:
        for name, record in self.records.items():
            record["next_run"] = self.due[name].isoformat()
        path = state_path(self.state_dir)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, json.dumps({"jobs": self.records}, indent=1, sort_keys=True))

    def _output(self, name: str) -> str:
        """The run's output (its log since the start), last lines, its secrets masked."""
        text = _tail_since(self.supervisor.logs_dir / f"{name}.log", self.offsets.get(name, 0),
                           OUTPUT_LINES)
        lines = text.strip().splitlines()
        return _mask("\n".join(lines), _secret_values(self.supervisor.env_path(name)))

    # -- the loop ----------------------------------------------------------------------

    def start(self, name: str, at: datetime) -> None:
        record = self.records[name]
        log = self.supervisor.logs_dir / f"{name}.log"
        try:
            offset = log.stat().st_size
        except OSError:
            offset = 0
        try:
            self.supervisor.rpc.supervisor.startProcess(name, False)
        except Exception as exc:  # xmlrpc Fault (ALREADY_STARTED, BAD_NAME) or socket
            text = getattr(exc, "faultString", None) or str(exc)
            if "ALREADY_STARTED" in text:
                record["skipped"] = int(record.get("skipped", 0)) + 1
                return
            if "BAD_NAME" in text:
                # Not added to supervisord yet (apply adds the scheduler and the jobs in
                # one reload, the scheduler may look first): not a failed run; its health
                # says Missing while it stays so.
                return
            record.update(last_start=at.isoformat(), last_end=at.isoformat(), running=False,
                          exit_code=None, output=f"could not start: {text}")
            return
        self.offsets[name] = offset  # this run's output starts here
        self.began[name] = time.monotonic()
        self._note_pid(name)
        record.update(last_start=at.isoformat(), running=True, last_end=None,
                      exit_code=None, output="")

    def _note_pid(self, name: str, info: dict[str, Any] | None = None) -> None:
        """Remember the run's pid (its process group, supervisord makes one per program),
        to stop what it leaves behind; a run that already ended has none."""
        if info is None:
            try:
                info = self.supervisor.rpc.supervisor.getProcessInfo(name)
            except Exception:  # it is looked at again on the next tick
                return
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and pid > 1:
            self.pids[name] = pid

    def reap(self, name: str) -> None:
        """Stop what the finished run left behind (a backgrounded child): its process
        group, and any process whose environment says this supervisord started it for
        this job (a run too short for its pid to be seen). SIGTERM, then SIGKILL to any
        still there after REAP_WAIT."""
        server = os.environ.get("SUPERVISOR_SERVER_URL") or f"unix://{self.supervisor.socket}"
        noted = self.pids.pop(name, None)
        live = _live_processes()
        if live is None:  # no /proc: the noted group only
            groups = {noted} if noted is not None else set()
        else:
            groups = {g for g in ({noted} if noted is not None else set())
                      if g in live.values()} | _started_for(name, server, live)
        groups.discard(os.getpgrp())  # never the scheduler's own group
        if not groups:
            return
        _signal_groups(groups, signal.SIGTERM)
        deadline = time.monotonic() + REAP_WAIT
        while time.monotonic() < deadline:
            live = _live_processes()
            if live is not None and not groups & set(live.values()):
                return
            time.sleep(0.05)
        _signal_groups(groups, signal.SIGKILL)

    def _enforce_timeout(self, name: str) -> None:
        """Ask supervisord to stop a run past its timeout (it stops the process group:
        stopasgroup/killasgroup); the next look records it as stopped."""
        job = self.jobs.get(name)
        began = self.began.get(name)
        if job is None or job.timeout is None or name in self.timed_out:
            return
        if began is None:  # running before this scheduler started: count from now
            self.began[name] = time.monotonic()
            return
        if time.monotonic() - began <= job.timeout:
            return
        self.timed_out.add(name)
        print(f"blumeops-scheduler: {name} ran longer than its timeout ({job.timeout}s): "
              "stopping it", flush=True)
        with contextlib.suppress(Exception):  # it may just have ended: the next look says
            self.supervisor.rpc.supervisor.stopProcess(name, False)

    def finish(self, name: str, info: dict[str, Any]) -> None:
        record = self.records[name]
        self.reap(name)
        state = info.get("statename", "UNKNOWN")
        code: int | None = info.get("exitstatus")
        if state in ("FATAL", "BACKOFF"):
            code = None  # it could not be started (spawnerr says why)
        if state == "BACKOFF":  # supervisord would retry the spawn: this run failed
            with contextlib.suppress(Exception):
                self.supervisor.rpc.supervisor.stopProcess(name, False)
        ended = now()  # within a tick of its exit (supervisord keeps whole seconds)
        output = self._output(name)
        if state in ("FATAL", "BACKOFF") and info.get("spawnerr"):
            output = f"could not start: {info['spawnerr']}\n{output}".strip()
        if state == "STOPPED":
            why = "stopped before it finished"
            if name in self.timed_out:
                why = f"stopped: ran longer than its timeout ({self.jobs[name].timeout}s)"
            output = f"{why}\n{output}".strip()
            code = None
        self.timed_out.discard(name)
        self.began.pop(name, None)
        record.update(running=False, last_end=ended.isoformat(), exit_code=code, output=output,
                      last_state=state)
        if code == 0:
            record["last_success"] = record.get("last_start")

    def tick(self) -> float:
        """One look: finish, start, record. Returns seconds until the next look."""
        changed = False
        running = [n for n, r in self.records.items() if r.get("running")]
        if running:
            try:
                infos = {i["name"]: i for i in self.supervisor.rpc.supervisor.getAllProcessInfo()}
            except Exception:  # supervisord busy or restarting: look again shortly
                self.supervisor._proxy = None
                return 1.0
            for name in running:
                info = infos.get(name)
                if info is None or info["statename"] in FINISHED:
                    self.finish(name, info or {"statename": "UNKNOWN", "exitstatus": None})
                    changed = True
                else:
                    if name not in self.pids:
                        self._note_pid(name, info)
                    self._enforce_timeout(name)
        at = now()
        if self.clock_stepped_back(at):
            changed = True
        for name, due in sorted(self.due.items()):
            if due <= at:
                self.start(name, at)
                job = self.jobs[name]
                self.due[name] = next_run(job.cron, job.every, at)  # missed times: skipped
                changed = True
        if changed:
            self.save()
        wait = min((d - now()).total_seconds() for d in self.due.values()) if self.due else 60
        if any(r.get("running") for r in self.records.values()):
            wait = min(wait, TICK)
        return max(0.05, min(wait, 60.0))

    def run(self) -> None:
        self.save()
        while True:
            time.sleep(self.tick())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blumeops.scheduler",
                                     description="Run a host's jobs at their times.")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--table", required=True, help="the job table, JSON")
    args = parser.parse_args(argv)
    scheduler = Scheduler(args.state_dir, parse_table(args.table))

    def stop(_signum: int, _frame: object) -> None:
        # Jobs are supervisord's programs: one running goes on; the next scheduler sees it.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"blumeops-scheduler: {len(scheduler.jobs)} jobs: "
          + ", ".join(sorted(scheduler.jobs)), flush=True)
    scheduler.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
