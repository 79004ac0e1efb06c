"""The driver protocol: what every target kind (`KIND@HOST`) offers the engine.

The engine knows no driver by name. A resource's target `supervisor@app` names a kind
(`supervisor`) and a host (`app`); the registry below maps the kind to a driver class for
how that host is reached (this machine, or a transport such as SSH), and every driver
has the same verbs:

- observe, in two halves so that a host is observed in ONE round trip whatever its
  drivers: `observe_ops` contributes agent requests to the host's single batch, and
  `observe` parses its share of the answers into `Live` per resource id (a driver may
  ask a second round trip only when something differs, e.g. to fetch a file for a
  readable diff);
- apply(changes, secrets) -> errors per resource id (a delete is a change too, so
  removal is part of apply);
- health(services, started) -> ServiceHealth per service (service managers only);
- pids() -> service -> pid now (service managers only: restarts between two looks);
- down() -> what it stopped, best effort.

Adding a target kind = one driver module + one line in `REGISTRY`. Modules are imported
only when a host uses them, so a no-op apply pays for what it drives and nothing else.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from blumeops.core.health import TargetHealth
from blumeops.core.plan import Change, Live
from blumeops.core.resources import Resource

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.core.spec import HostSpec, RuntimeSpec
    from blumeops.transports.base import Transport
    from blumeops.transports.types import JSON, HostFacts

Secrets = Mapping[str, Mapping[str, str]]  # resource id -> resolved values (memory only)


@dataclass
class HostContext:
    """What a driver knows about its host. `transport` is None for in-process drivers."""

    host: HostSpec
    spec: RuntimeSpec
    state_dir: Path  # on this machine: ssh control sockets, the state DB
    lab_dir: Path
    transport: Transport | None = None
    remote_state: str = ""  # the lab's 0700 state dir on the host ("~/..." until facts)
    home: str = ""  # the SSH user's home on the host, from its facts
    notes: list[str] = field(default_factory=list)
    facts: HostFacts | None = None  # what the host answered on first contact this run
    runtime: Any = None  # in-process drivers: the LocalRuntime owning supervisord and Caddy

    @property
    def name(self) -> str:
        return self.host.name

    def remote_path(self, *parts: str) -> str:
        """An absolute path under the host's state dir (tools need absolute paths)."""
        base = self.remote_state
        if base.startswith("~/") and self.home:
            base = self.home.rstrip("/") + base[1:]
        return "/".join([base.rstrip("/"), *parts])


class Driver(ABC):
    """One target kind on one host; created per command, with that host's resources."""

    kind: ClassVar[str]
    order: ClassVar[int] = 50  # within a wave: files (10), routes (20), services (30)
    manages_services: ClassVar[bool] = False

    def __init__(self, ctx: HostContext, resources: Sequence[Resource]) -> None:
        self.ctx = ctx
        self.resources = list(resources)

    @property
    def target(self) -> str:
        return f"{self.kind}@{self.ctx.name}"

    def observe_ops(self) -> list[JSON]:
        """Agent requests this driver adds to the host's one observe batch."""
        return []

    @abstractmethod
    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        """Live state per resource id, from the answers to `observe_ops` (same order)."""

    @abstractmethod
    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        """Carry out these changes (creates, updates, deletes); errors per resource id."""

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        """Each service's health where it runs (service managers only)."""
        return {}

    def pids(self) -> dict[str, int | None]:
        """Service -> its process id now (service managers): how a restart by the
        manager itself is noticed between two looks."""
        return {}

    def down(self) -> list[str]:
        """Stop what this driver runs on the host; what it stopped."""
        return []


# kind -> {"local": "module:Class", "remote": "module:Class"}
REGISTRY: dict[str, dict[str, str]] = {
    "files": {"local": "blumeops.drivers.files:LocalFiles",
              "remote": "blumeops.drivers.remote_files:RemoteFiles"},
    "caddy": {"local": "blumeops.drivers.caddy:LocalCaddy",
              "remote": "blumeops.drivers.remote_caddy:RemoteCaddy"},
    "supervisor": {"local": "blumeops.drivers.supervisor:LocalSupervisor",
                   "remote": "blumeops.drivers.remote_supervisor:RemoteSupervisor"},
    # Unit managers through the adapter; applied once engine/spec.py drives them.
    "systemd": {"remote": "blumeops.drivers.managed:SystemdDriver"},
    "launchd": {"remote": "blumeops.drivers.managed:LaunchdDriver"},
    "brew": {"remote": "blumeops.drivers.brew:BrewDriver"},
    # Reached through an API from this machine (engine/targets.py): clusters, the tailnet.
    "k8s": {"local": "blumeops.kubernetes.driver:KubeDriver"},
    "argocd": {"local": "blumeops.kubernetes.driver:ArgoDriver"},
    "tailscale": {"local": "blumeops.tailnet.driver:TailscaleDriver"},
}


def driver_class(kind: str, remote: bool) -> type[Driver] | None:
    """The driver for a target kind reached locally or remotely; None if there is none."""
    entry = REGISTRY.get(kind, {}).get("remote" if remote else "local")
    if entry is None:
        return None
    module, _, name = entry.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Driver)
    return cls


class ApiDriver(Driver):
    """A driver of a target reached through an API: no agent ops, plus its own health."""

    def target_health(self) -> list[TargetHealth]:
        return []
