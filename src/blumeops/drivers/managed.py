"""`systemd@HOST` and `launchd@HOST`: the engine's protocol over a unit manager.

The unit managers (drivers/systemd.py, drivers/launchd.py) speak units, through one
protocol (`UnitManager`, drivers/units.py): the ops of one observation of unit-file
hashes plus the manager's own view (`systemctl show`, `launchctl print`), added to a
batch, and `apply(upsert, restart, remove, secrets=, timers=)`. This adapter turns the
engine's `Change`s into those calls and a `UnitState` into `Live` and `ServiceHealth`;
`UnitDriver` does every step once, `SystemdDriver` and `LaunchdDriver` add their manager,
their jobs' health, their lab dir and where a failing unit's log is.

Round trips: the manager's observation rides in the host's one observe batch (with each
service's probe), and the health table after a no-op apply reuses it. That needs the
manager's mode (system or user units; launchd's `system` or `gui/UID` domain), which
depends on the SSH user: it is kept from the host's last facts on this machine
(`STATE/facts/HOST.json`), so only a first contact, or a changed SSH user, pays one more
round trip. That file also keeps the units applied under a declared name (`names:`), so
one dropped from the catalog is still found on the host and removed.

The unit file name and Label are taken from the rendered resource's path, so the manager
names a unit exactly as the renderer did (including a service's `names:`).

Jobs (`schedule:`): the manager runs them, apply never does. systemd: the job's timer is
its own resource (`systemd@HOST/timer/NAME`) applied with its unit (the TIMER is enabled);
launchd: the plist is bootstrapped, never kickstarted. Between runs a job is converged
(`Live.running` None while it is scheduled); its health is core/jobs.py's, from what
the manager shows of the last run. `host_lab_dir` is the one definition of where a
host's services run, shared with the files driver.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from blumeops.core.health import Health, ServiceHealth
from blumeops.core.plan import Change, Live
from blumeops.drivers.base import Driver, Secrets
from blumeops.drivers.jobs import launchd_job_health, systemd_job_health
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
from blumeops.drivers.units import (
    Batch,
    BatchResult,
    StateReader,
    UnitManager,
    UnitState,
    expand_home,
)
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import FileBatch

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.core.resources import Resource
    from blumeops.drivers.base import HostContext
    from blumeops.drivers.launchd import LaunchdManager
    from blumeops.drivers.systemd import SystemdManager
    from blumeops.transports.base import Transport
    from blumeops.transports.types import JSON, HostFacts

# Tests only: user units / the gui domain even for a root SSH user, so a test host's
# units land under its own HOME, never in this machine's /etc or /Library.
AS_USER_ENV = "BLUMEOPS_UNITS_AS_USER"
PROGRESSING = {"activating", "reloading", "deactivating", "spawn scheduled"}

Mode = tuple[str, int | None]  # (SSH user, its uid)
M = TypeVar("M", bound=UnitManager)


class UnitDriver(Driver, Generic[M]):
    """A service manager driven through one of the unit managers (`M`)."""

    order = 30
    manages_services = True
    unit_kind: ClassVar[str]  # the resource kind its renderer makes
    suffix: ClassVar[str]  # of unit files in the manager's directory
    default_prefix: ClassVar[str]  # of unit files blumeops names by default

    def __init__(self, ctx: HostContext, resources: Sequence[Resource]) -> None:
        super().__init__(ctx, resources)
        # Units this machine applied under a declared name (`names:`): found again on the
        # host when the service leaves the catalog.
        self._declared: dict[str, str] = {}
        self._mode: Mode | None = self._cached_mode()
        self._manager: M | None = None
        self._pending: tuple[Batch, StateReader, list[str], int] | None = None
        self._states: dict[str, UnitState] = {}
        self._probes: dict[str, JSON] | None = None  # from the observe trip, until used
        # File secrets written on the host ("SERVICE:NAME" -> path); None: not read yet.
        self._secret_files: dict[str, str] | None = None
        self._missing: dict[str, str] = {}  # service -> why its file secrets go again

    # -- the manager -----------------------------------------------------------------

    def units(self) -> dict[str, str]:
        """Service -> its unit file name (systemd) or Label (launchd), as rendered."""
        out = {}
        for res in self.resources:
            if res.kind != self.unit_kind:
                continue  # a job's timer: named after its unit
            base = posixpath.basename(res.path)
            out[res.name] = base.removesuffix(self.suffix) if self.suffix == ".plist" else base
        return out

    def jobs(self) -> dict[str, str]:
        """Job -> its schedule's text (systemd: the timer unit); {} for launchd, whose
        plist holds the schedule."""
        return {r.name: r.body for r in self.resources if r.kind == "timer"}

    def all_units(self) -> dict[str, str]:
        """The catalog's units and those applied earlier under a declared name."""
        return {**self._declared, **self.units()}

    @abstractmethod
    def make_manager(self, user: str, uid: int | None) -> M:
        """The manager for this SSH user (system or user units; launchd's domain)."""

    @property
    def transport(self) -> Transport:
        assert self.ctx.transport is not None, "unit managers are reached over a transport"
        return self.ctx.transport

    @property
    def manager(self) -> M:
        if self._manager is None:
            if self._mode is None:
                facts = self._facts()
                self._mode = (facts.user, facts.uid)
            self._manager = self.make_manager(*self._mode)
        return self._manager

    def _facts(self) -> HostFacts:
        if self.ctx.facts is None:
            assert self.ctx.transport is not None
            self.ctx.facts = self.ctx.transport.facts()
        return self.ctx.facts

    def _cache_path(self) -> str:
        return _cache_path(self.ctx)

    def _cached_mode(self) -> Mode | None:
        data = _cached_facts(self.ctx)
        if data is None:
            return None
        declared = data.get(self.kind)
        if isinstance(declared, dict):
            self._declared = {str(k): str(v) for k, v in declared.items()}
        uid = data.get("uid")
        return str(data.get("user", "")), uid if isinstance(uid, int) else None

    def _save(self) -> None:
        """Keep the mode and the declared unit names for the next run (this machine)."""
        if self._mode is None:
            return
        path = self._cache_path()
        data: dict[str, Any] = {}
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            pass
        if not isinstance(data, dict) or data.get("ssh") != self.ctx.host.ssh:
            data = {}
        data.update(ssh=self.ctx.host.ssh, user=self._mode[0], uid=self._mode[1])
        data[self.kind] = dict(sorted(self._declared.items()))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)

    # -- observe ---------------------------------------------------------------------

    def _hosted(self) -> list[str]:
        return sorted(n for n, s in self.ctx.spec.services.items() if s.host == self.ctx.name
                      and n in self.units())

    @abstractmethod
    def lab_dir(self) -> str:
        """Where the manager's units run relative commands and workdirs (as rendered)."""

    def _probe_ops(self, names: Sequence[str]) -> dict[str, JSON]:
        ops = {}
        for name in names:
            svc = self.ctx.spec.services.get(name)
            op = probe_op(svc, workdir(self.lab_dir(), svc)) if svc is not None else None
            if op is not None:
                ops[name] = op
        return ops

    def _batch(self, names: list[str], probes: Mapping[str, JSON]
               ) -> tuple[Batch, StateReader, int]:
        batch = Batch()
        parse = self.manager.observe_in(batch, names)
        first_probe = len(batch)
        for op in probes.values():
            batch.ops.append(op)
            batch.argvs.append(())
        return batch, parse, first_probe

    def observe_ops(self) -> list[JSON]:
        if self._mode is None:
            return []  # first contact: the manager observes once the facts are known
        ops: list[JSON] = [{"op": "list", "dir": self._unit_dir(), "suffix": self.suffix},
                           index_op(self._index_path(), stat=True, root=self.lab_dir())]
        names = sorted(self.units())
        batch, parse, first = self._batch(names, self._probe_ops(self._hosted()))
        self._pending = (batch, parse, names, first)
        return [*ops, *batch.ops]

    def _unit_dir(self) -> str:
        """Where the manager keeps unit files (the mode must be known)."""
        return self.manager.unit_dir

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        facts = self.ctx.facts
        if facts is not None and (self._mode is None or self._mode != (facts.user, facts.uid)):
            if self._mode is not None:
                self._pending = None  # observed in the wrong mode: ask again
            self._mode, self._manager = (facts.user, facts.uid), None
            self._save()
        listed: dict[str, str] = dict(answers[0].get("files", {})) if answers else {}
        names = sorted(self.units())
        if self._pending is not None:
            batch, parse, names, first = self._pending
            self._pending = None
            self._secret_files = parse_index(answers[1])
            self._missing = secret_files_missing(answers[1], self._hosted(),
                                                 self.ctx.spec.services)
            result = BatchResult(batch, list(answers[2:]))
            self._states = parse(result)
            self._probes = dict(zip(self._probe_ops(self._hosted()),
                                    result.results[first:], strict=True))
        else:
            # First contact: one more trip, now that the mode is known.
            self._states, self._probes, listed = self._look(
                names, self._probe_ops(self._hosted()), listing=True)
        return self._live(listed)

    def _look(self, names: list[str], probes: Mapping[str, JSON], listing: bool = False
              ) -> tuple[dict[str, UnitState], dict[str, JSON], dict[str, str]]:
        """The units' states, these probes (and the unit dir's files), in one round trip."""
        batch, parse, first = self._batch(names, probes)
        if listing:
            batch.ops.append({"op": "list", "dir": self._unit_dir(), "suffix": self.suffix})
            batch.argvs.append(())
        result = batch.send(self.transport) if len(batch) else BatchResult(batch, [])
        answers = result.results[first:len(batch) - listing]
        listed = dict(result.results[-1].get("files", {})) if listing else {}
        return parse(result), dict(zip(probes, answers, strict=True)), listed

    def _live(self, listed: Mapping[str, str]) -> dict[str, Live]:
        desired = {r.name: r for r in self.resources if r.kind == self.unit_kind}
        units = self.units()
        bodies: dict[str, str] = {}
        read: dict[str, str] = {}  # name -> path, for a readable diff
        for name, unit in self._states.items():
            if not unit.exists:
                continue
            if unit.sha256 == hashlib.sha256(desired[name].body.encode()).hexdigest():
                bodies[name] = desired[name].body
            else:
                read[name] = self.manager.unit_path(name)
        # Units of services dropped from the catalog: blumeops's own names on the host.
        on_host = {self._service_of(f): f for f in listed}
        gone = {n: f for n, f in on_host.items() if n and n not in units}
        directory = self._unit_dir()
        read.update({n: f"{directory}/{f}{self.suffix}" for n, f in gone.items()})
        if read and self.ctx.transport is not None:
            got = self.ctx.transport.call({"op": "read", "paths": list(read.values())})
            bodies.update({n: got["contents"].get(p) or "" for n, p in read.items()})
        live = {}
        for name, body in bodies.items():
            st = self._states.get(name)
            state = st.state if st else "not loaded"
            running: bool | None = st is not None and st.running
            if (st is not None and st.job is not None) or self._is_job(name):
                # A job is not a process: between runs it is converged while it is
                # scheduled (launchd: loaded; systemd: its timer enabled).
                running = None if st is not None and st.enabled else False
            live[f"{self.target}/{self.unit_kind}/{name}"] = Live(
                body, running, state, reason=self._missing.get(name, ""))
        live.update(self._timers_live())
        return live

    def _is_job(self, name: str) -> bool:
        svc = self.ctx.spec.services.get(name)
        return svc is not None and svc.job is not None

    def _timers_live(self) -> dict[str, Live]:
        """systemd: each job's timer, as its own resource; running when it is armed."""
        return {}

    def _service_of(self, stem: str) -> str:
        """The service a unit file on the host belongs to; "" when it is not blumeops's."""
        for name, unit in self.all_units().items():
            if unit.removesuffix(self.suffix) == stem:
                return name
        return stem.removeprefix(self.default_prefix) if stem.startswith(
            self.default_prefix) else ""

    # -- apply -----------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        self._probes = None
        mine = [c for c in changes if c.kind == self.unit_kind]
        desired = {r.name: r.body for r in self.resources if r.kind == self.unit_kind}
        # A job's timer changed alone: its unit goes with it (written only if it differs).
        upsert = {c.name: c.desired.body for c in mine if c.desired is not None}
        upsert.update({c.name: desired[c.name] for c in changes
                       if c.kind != self.unit_kind and c.name in desired})
        restart = [c.name for c in mine if c.action == "update" and any(
            r.startswith(("not running", "secret")) for r in c.reasons)]
        remove = [c.name for c in mine if c.desired is None]
        values = {c.name: dict(secrets[c.id]) for c in mine if c.id in secrets}
        # File secrets follow the unit's own changes (a timer change alone has no values).
        unit_upsert = {c.name: c.desired.body for c in mine if c.desired is not None}
        problem = self._deliver_secret_files(unit_upsert, remove, values)
        if problem:
            return {c.id: problem for c in changes}
        # systemd: each job's timer goes with its unit (launchd has none: jobs() is {}).
        timers = {n: t for n, t in self.jobs().items() if n in upsert}
        errors = self.manager.apply(upsert, restart, remove, secrets=values, timers=timers)
        units = self.units()
        declared = dict(self._declared)
        for name in upsert:
            if not units[name].startswith(self.default_prefix):
                declared[name] = units[name]
        for name in remove:
            if name not in errors:
                declared.pop(name, None)
        if declared != self._declared:
            self._declared = declared
            self._save()
        out: dict[str, str] = {}
        for name, error in errors.items():
            ids = [c.id for c in changes if c.name == name] or [name]
            out.update({i: str(error) for i in ids})
        return out

    def _index_path(self) -> str:
        return secret_index_path(self.ctx.remote_path())

    def _deliver_secret_files(self, upsert: Mapping[str, str], remove: Sequence[str],
                              values: dict[str, dict[str, str]]) -> str | None:
        """Write the file secrets (`file:`) of these units before the manager (re)starts
        them, and remove those no longer declared: one put, only when there are any.
        `values` keeps only what goes to the units' environment. An error sentence, or
        None."""

        spec = self.ctx.spec.services
        known = {k.partition(":")[0] for k in self._secret_files or {}}
        if not (any(n in spec and spec[n].secret_files for n in upsert)
                or known & {*upsert, *remove}
                or (remove and self._secret_files is None)):
            return None
        if self._secret_files is None:
            self._secret_files = parse_index(self.transport.call(
                index_op(self._index_path(), root=self.lab_dir())))
        files = SecretFiles(self._secret_files)
        lab = self.lab_dir()
        for name in remove:
            files.forget(name)
        for name, text in upsert.items():
            svc = spec.get(name)
            if svc is not None and (name in values or name in known):
                env = files.deliver(name, svc, lab, values.get(name, {}),
                                    self.manager.owner(text))
                if name in values:
                    values[name] = env
        if not (files.writes or files.changed):
            return None
        home = (self.ctx.facts.home if self.ctx.facts else "") or self.ctx.home
        writes = [*files.writes, files.index_write(self._index_path())]
        try:
            self.transport.put_files(FileBatch(writes, files.removes,
                                               root=expand_home(lab, home)))
        except RemoteError as exc:
            return f"cannot write its secret files: {exc.message}"
        self._secret_files = files.after
        return None

    # -- health ----------------------------------------------------------------------

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        mine = [n for n in services if n in self.units()]
        cached, self._probes = self._probes, None
        if cached is not None and not started and set(self._states) >= set(mine):
            states, probed = self._states, cached  # observed this run, nothing changed since
        else:
            states, probed, _ = self._look(sorted(self.units()), self._probe_ops(mine))
            self._states = states
        out = {}
        where = f"on {self.ctx.name}"
        degraded: list[str] = []
        for name in mine:
            svc = self.ctx.spec.services[name]
            st = states.get(name)
            if st is None or not st.exists:
                out[name] = ServiceHealth(name, Health.missing, f"no {self.kind} unit {where}",
                                          urls=svc.urls)
                continue
            if svc.job is not None:
                out[name] = self._job_health(name, st)
                if out[name].health is Health.degraded:
                    degraded.append(name)
                continue
            word, pid = st.state, st.pid
            if not st.running:
                out[name] = ServiceHealth(
                    name, Health.progressing if word in PROGRESSING else Health.degraded,
                    f"{word} {where}" + (f": {st.detail}" if st.detail else ""), word, pid,
                    svc.urls)
                if out[name].health is Health.degraded:
                    degraded.append(name)
                continue
            out[name] = probed_health(svc, probed.get(name), started, where, word, pid)
        if degraded:
            out.update(self._with_logs({n: out[n] for n in degraded}))
        return out

    @abstractmethod
    def _job_health(self, name: str, st: UnitState) -> ServiceHealth:
        """A job's health from what its manager says of its last run (core/jobs.py)."""

    def _with_logs(self, healths: dict[str, ServiceHealth]) -> dict[str, ServiceHealth]:
        """A Degraded unit's log, named (and its last lines, where the manager writes a
        file), as the supervisor drivers show it."""
        return healths

    def pids(self) -> dict[str, int | None]:
        # A job gets a new pid every run: that is its schedule, not a restart.
        return {n: st.pid for n, st in self._states.items() if st.job is None}

    # -- down ------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop and remove every blumeops unit on the host (its secrets too)."""
        got = self.transport.call({"op": "list", "dir": self._unit_dir(),
                                   "suffix": self.suffix})
        names = sorted({self._service_of(f) for f in got.get("files", {})} - {""})
        if not names:
            return []
        errors = self.manager.apply({}, remove=names)
        for name in names:
            if name not in errors:
                self._declared.pop(name, None)
        self._save()
        self._deliver_secret_files({}, names, {})
        return [f"{self.ctx.name}: {n}" for n in names if n not in errors]


def _as_user() -> bool:
    return os.environ.get(AS_USER_ENV, "") in ("1", "yes", "true")


def _cache_path(ctx: HostContext) -> str:
    return str(ctx.state_dir / "facts" / f"{ctx.name}.json")


def _cached_facts(ctx: HostContext) -> dict[str, Any] | None:
    """What this machine kept of the host's SSH user (for the same `ssh:`), or None."""
    try:
        with open(_cache_path(ctx), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("ssh") != ctx.host.ssh:
        return None
    return data


def unit_lab_dir(manager: str, user: str) -> str:
    """The lab dir of a unit manager's services: their default WorkingDirectory, where
    relative commands, workdirs, `files:` and file secrets land. The renderers' LAB_DIR,
    specifiers expanded for this SSH user (`~/` not yet: the agent expands it)."""
    if manager == "launchd":
        # lazy: keeps pydantic out of start-up
        from blumeops.render.launchd import LAB_DIR as LAUNCHD_LAB

        return LAUNCHD_LAB
    from blumeops.drivers.systemd import SYSTEM_STATE_ROOT, USER_STATE_ROOT, expand
    from blumeops.render.systemd import LAB_DIR as SYSTEMD_LAB

    user_mode = user != "root" or _as_user()
    return expand(SYSTEMD_LAB, USER_STATE_ROOT if user_mode else SYSTEM_STATE_ROOT)


def host_lab_dir(ctx: HostContext) -> str | None:
    """Where the services of a remote host run: its unit manager's lab dir (systemd,
    launchd), else the lab's state dir there (STATE/lab, blumeops's supervisord). None
    while the SSH user is not known yet (first contact, before the facts)."""
    manager = ctx.host.manager
    if manager not in ("systemd", "launchd"):
        return ctx.remote_path("lab")
    if ctx.facts is not None:
        user = ctx.facts.user
    else:
        cached = _cached_facts(ctx)
        if cached is None:
            return None
        user = str(cached.get("user", ""))

    home = (ctx.facts.home if ctx.facts else "") or ctx.home
    return expand_home(unit_lab_dir(manager, user), home)


class SystemdDriver(UnitDriver["SystemdManager"]):
    kind = "systemd"
    unit_kind = "unit"
    suffix = ".service"
    default_prefix = "blumeops-"

    def make_manager(self, user: str, uid: int | None) -> SystemdManager:
        # lazy: keeps pydantic out of start-up
        from blumeops.drivers.systemd import SystemdManager

        # System units for root; user units (`systemctl --user`) for anyone else.
        return SystemdManager(self.transport, user_mode=user != "root" or _as_user(),
                              units=self.all_units(), jobs=self.jobs())

    def _job_health(self, name: str, st: UnitState) -> ServiceHealth:
        return systemd_job_health(name, self.ctx.spec.services[name], st, self.ctx.name)

    def _timers_live(self) -> dict[str, Live]:
        bodies = self.jobs()
        live = {}
        for name, body in bodies.items():
            st = self._states.get(name)
            job = st.job if st is not None else None
            if not job or not job.get("timer_sha256"):
                continue
            same = job["timer_sha256"] == hashlib.sha256(body.encode()).hexdigest()
            active = job.get("timer:ActiveState", "unknown")
            live[f"{self.target}/timer/{name}"] = Live(
                body if same else "(differs on the host)", active == "active",
                f"timer {active}")
        return live

    def lab_dir(self) -> str:
        _ = self.manager  # learns the SSH user (system or user units) if not known yet
        assert self._mode is not None
        return unit_lab_dir("systemd", self._mode[0])

    def _with_logs(self, healths: dict[str, ServiceHealth]) -> dict[str, ServiceHealth]:
        """systemd keeps a unit's output in the journal, not a file: name the command."""
        from dataclasses import replace

        flag = "--user-unit" if self.manager.user_mode else "-u"
        return {n: replace(h, detail=f"{h.detail}; log: journalctl {flag} "
                                     f"{self.manager.unit(n)}") for n, h in healths.items()}


class LaunchdDriver(UnitDriver["LaunchdManager"]):
    kind = "launchd"
    unit_kind = "plist"
    suffix = ".plist"
    default_prefix = "me.blumeops."

    def make_manager(self, user: str, uid: int | None) -> LaunchdManager:
        # lazy: keeps pydantic out of start-up
        from blumeops.drivers.launchd import LaunchdManager

        if user == "root" and not _as_user():
            domain = "system"  # LaunchDaemons
        elif uid is not None:
            domain = f"gui/{uid}"  # the SSH user's LaunchAgents
        else:
            raise ValueError(f"host {self.ctx.name} did not say its SSH user's uid")
        jobs = {n for n in self.units() if self._is_job(n)}
        return LaunchdManager(self.transport, domain=domain, labels=self.all_units(),
                              jobs=jobs)

    def _job_health(self, name: str, st: UnitState) -> ServiceHealth:
        return launchd_job_health(name, self.ctx.spec.services[name], st, self.ctx.name)

    def lab_dir(self) -> str:
        return unit_lab_dir("launchd", "")

    def _with_logs(self, healths: dict[str, ServiceHealth]) -> dict[str, ServiceHealth]:
        """The job's log file (the plist's StandardOutPath): its last lines, one round
        trip for all, the job's secret values masked on the host."""
        from dataclasses import replace

        # lazy: keeps pydantic out of start-up
        from blumeops.render.launchd import STATE_DIR

        logs = {n: f"{STATE_DIR}/logs/{n}.log" for n in healths}
        ops = [tail_op(logs[n], n, f"{STATE_DIR}/secrets/{n}.env", self.ctx.remote_path())
               for n in healths]
        results = self.transport.call({"op": "batch", "ops": ops})["results"]
        out = {}
        for (name, health), answer in zip(healths.items(), results, strict=True):
            text = (answer.get("tails") or {}).get(logs[name])
            out[name] = replace(health, detail=f"{health.detail}; log: {logs[name]}: "
                                               f"{log_hint(text)}")
        return out
