"""One session per host: its transport, its drivers, and what it answered.

The engine speaks to hosts only through sessions. A session builds its drivers from the
registry (drivers/base.py) by the target kinds its resources name, observes the host in
one round trip (a batch: the host's facts plus every driver's requests), applies changes
driver by driver, and reports health per service. A host that cannot be reached, or
whose facts contradict the catalog, is marked `unreachable` with the reason: its
services are Unknown and nothing is applied there, while other hosts go on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health, ServiceHealth
from blumeops.core.plan import Change, Live
from blumeops.core.resources import Resource
from blumeops.core.sshtarget import SshTarget
from blumeops.drivers.base import Driver, HostContext, Secrets, driver_class
from blumeops.transports.base import observe_request, parse_facts, sub_result
from blumeops.transports.exceptions import TransportError
from blumeops.transports.facts import check_declared
from blumeops.transports.ssh import SshTransport, control_dir
from blumeops.transports.types import ObserveRequest

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.core.spec import HostSpec, RuntimeSpec
    from blumeops.transports.types import HostFacts

# What a remote host's round trip may raise: the transport's errors, and (the net under
# answers.py's shape checks) a driver tripping over an answer it did not expect.
UNUSABLE = (TransportError, KeyError, TypeError, ValueError, IndexError, AttributeError)
# Where a lab's state lives on a remote host (0700): its supervisord, Caddy, secrets.
REMOTE_STATE = "~/.local/state/blumeops/{lab}"
# ssh -F: a client config that replaces ~/.ssh/config (tests, CI, a lab of loopback hosts).
SSH_CONFIG_ENV = "BLUMEOPS_SSH_CONFIG"
ACCEPT_NEW_ENV = "BLUMEOPS_SSH_ACCEPT_NEW"


class HostSession:
    def __init__(self, ctx: HostContext, resources: Sequence[Resource], kinds: Sequence[str]
                 ) -> None:
        self.ctx = ctx
        self.unreachable: str | None = None
        self.facts: HostFacts | None = None
        self.round_trips = 0
        remote = ctx.transport is not None
        self.drivers: dict[str, Driver] = {}
        for kind in kinds:
            cls = driver_class(kind, remote)
            if cls is None:
                ctx.notes.append(f"host '{ctx.name}': no driver for {kind} targets here")
                continue
            self.drivers[kind] = cls(ctx, [r for r in resources if r.target_kind == kind])

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def remote(self) -> bool:
        return self.ctx.transport is not None

    def ordered(self) -> list[Driver]:
        return sorted(self.drivers.values(), key=lambda d: d.order)

    def observe(self) -> dict[str, Live]:
        """Every driver's live resources; one round trip to a remote host."""
        drivers = self.ordered()
        if not self.remote:
            live: dict[str, Live] = {}
            for driver in drivers:
                live.update(driver.observe([]))
            return live
        try:
            answers = self._observe_remote(drivers)
        except UNUSABLE as exc:
            self.unreachable = self._why(exc)
            return {}
        if self.unreachable:
            return {}
        live = {}
        try:
            for driver, part in zip(drivers, answers, strict=True):
                live.update(driver.observe(part))
        except UNUSABLE as exc:
            self.unreachable = self._why(exc)
            return {}
        return live

    def _why(self, exc: BaseException) -> str:
        """A failure on a remote host as its reason: a transport's own message, or what
        in its answer blumeops could not use (answers.py checks shapes first; this is
        the net under it, so one host's answer never ends the run for the others)."""
        if isinstance(exc, TransportError):
            return exc.message
        if not self.remote:
            raise exc
        said = str(exc)[:200]
        return (f"host {self.name}: its answer could not be used ({type(exc).__name__}"
                + (f": {said})" if said else ")"))

    def _observe_remote(self, drivers: list[Driver]) -> list[list[Any]]:
        assert self.ctx.transport is not None
        parts = [d.observe_ops() for d in drivers]
        socket = self.ctx.remote_path("supervisor.sock")
        ops = [observe_request(ObserveRequest(supervisor_socket=socket)),
               *(op for part in parts for op in part)]
        result = self.ctx.transport.call({"op": "batch", "ops": ops})
        self.round_trips += 1
        results = list(result["results"])
        facts = parse_facts(sub_result(self.name, results[0])["facts"])
        self.facts = facts
        self.ctx.facts = facts
        self.ctx.home = facts.home
        host = self.ctx.host
        mismatches = check_declared(host.name, host.os, facts, manager=host.manager or None,
                                    declared=host.manager_declared, arch=host.arch)
        if mismatches:
            self.unreachable = "; ".join(str(m) for m in mismatches)
        out: list[list[Any]] = []
        at = 1
        for part in parts:
            out.append(results[at:at + len(part)])
            at += len(part)
        return out

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        """Each driver applies its share, in driver order; errors per resource id."""
        errors: dict[str, str] = {}
        for driver in self.ordered():
            mine = [c for c in changes if c.target.partition("@")[0] == driver.kind]
            if not mine:
                continue
            try:
                errors.update(driver.apply(mine, secrets))
            except UNUSABLE as exc:
                self.unreachable = self._why(exc)
                errors.update({c.id: self.unreachable for c in mine})
        for change in changes:
            if change.target.partition("@")[0] not in self.drivers:
                errors[change.id] = f"no driver for {change.target} on this host"
        return errors

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        spec = self.ctx.spec.services
        if self.unreachable:
            return {n: ServiceHealth(n, Health.unknown, f"host unreachable: {self.unreachable}",
                                     urls=spec[n].urls) for n in services}
        out: dict[str, ServiceHealth] = {}
        for driver in self.ordered():
            if driver.manages_services:
                try:
                    out.update(driver.health(services, started))
                except UNUSABLE as exc:
                    self.unreachable = self._why(exc)
                    return self.health(services, started)
        for name in services:
            if name not in out:
                out[name] = ServiceHealth(name, Health.unknown, "no service manager driven "
                                          f"by blumeops on host {self.name}", urls=spec[name].urls)
        return out

    def down(self) -> list[str]:
        stopped: list[str] = []
        for driver in reversed(self.ordered()):
            try:
                stopped += driver.down()
            except UNUSABLE as exc:
                self.unreachable = self._why(exc)
                break
        return stopped

    def close(self) -> None:
        if self.ctx.transport is not None:
            self.ctx.transport.close()


def host_kinds(host: HostSpec, resources: Sequence[Resource], proxy: bool) -> list[str]:
    """The target kinds a host's session drives: those its resources name, plus its
    service manager and proxy (so programs or routes dropped from the catalog are seen)."""
    kinds = {r.target_kind for r in resources} | {"files"}
    if host.manager == "supervisor" or (host.manager in ("systemd", "launchd")
                                        and not host.local):
        kinds.add(host.manager)
    if proxy:
        kinds.add("caddy")
    return sorted(kinds)


def remote_session(spec: RuntimeSpec, host: HostSpec, state_dir: Path, lab_dir: Path,
                   resources: Sequence[Resource], proxy: bool) -> HostSession:
    """A session over SSH; the connection opens on the first call. The host's catalog
    fields say how (`ssh_identity`, `accept_new_host_key`); the environment may add an
    ssh config (tests, CI) or first-contact acceptance (the CLI flag, tests)."""
    from dataclasses import replace


    target = SshTarget.for_values(host.name, host.ssh, host.address)
    config = os.environ.get(SSH_CONFIG_ENV) or None
    accept_new = (host.accept_new_host_key
                  or os.environ.get(ACCEPT_NEW_ENV, "") in ("1", "yes", "true"))
    target = replace(target, config_file=config, accept_new=accept_new,
                     identity_file=host.ssh_identity or target.identity_file)
    transport = SshTransport(host.name, target, control_dir(state_dir))
    ctx = HostContext(host, spec, state_dir, lab_dir, transport,
                      REMOTE_STATE.format(lab=spec.lab))
    return HostSession(ctx, resources, host_kinds(host, resources, proxy))


def in_parallel(sessions: Sequence[HostSession], work: Any) -> list[Any]:
    """`work(session)` for each session, a thread per remote host; results in order."""
    remote = [s for s in sessions if s.remote]
    if len(remote) < 2:
        return [work(s) for s in sessions]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(32, len(sessions))) as pool:
        return list(pool.map(work, sessions))

