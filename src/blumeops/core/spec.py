"""What the runtime needs to know about a lab, as plain data.

The engine (apply, health, check, the controller) works from a RuntimeSpec rather than the
catalog model: it is small, it pickles without the model classes, and so a no-op apply of
an unchanged catalog can skip parsing, validation and even importing pydantic. The builder
is engine/spec.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from blumeops.core.resources import Resource

# The render modules whose resources the local runtime applies (borgmatic: the backup
# job's config, delivered to its host as a file).
APPLIED_RENDERERS = ("native", "caddy", "brew", "borgmatic")


# Every rendered Caddy HTTP route sets this response header to its hostname, so a probe
# through the proxy knows the answer came from that route: Caddy answers a Host it has
# no route for with an empty 200, which must not pass for a working route.
ROUTE_HEADER = "X-Blumeops-Route"


@dataclass(frozen=True)
class ProbeSpec:
    kind: Literal["http", "tcp", "command"]
    port: int | None = None
    path: str = "/"
    command: tuple[str, ...] = ()
    timeout: float = 2.0


@dataclass(frozen=True)
class HostSpec:
    """A catalog host as the engine reaches it (plain data: no pydantic on the fast path)."""

    name: str
    local: bool
    ssh: str | None = None  # user@host[:port]; None: reached by `address` or its name
    address: str | None = None
    system: str = ""  # what platform.system() should answer: Linux, Darwin
    os: str = ""  # as declared: linux, macos, dsm
    manager: str = ""  # effective service manager: supervisor, systemd, launchd
    manager_declared: bool = False
    ssh_identity: str | None = None  # ssh -i
    accept_new_host_key: bool = False  # first contact: record an unknown host key
    arch: str | None = None  # declared: checked against the host's facts

    @property
    def reachable(self) -> bool:
        """Applied by blumeops: this machine, or a host with `ssh:`."""
        return self.local or self.ssh is not None


@dataclass(frozen=True)
class JobSpec:
    """A scheduled service's schedule, as the scheduler and job health read it."""

    cron: str | None = None
    every: int | None = None  # seconds
    grace: int | None = None  # seconds a run may start late; None: the period, <= 10 min
    max_age: int | None = None  # seconds the last success may be old; None: no limit
    backup: bool = False  # the lab's backup job (backups.job): its health is the backups'
    timeout: int | None = None  # seconds a run may take before it is stopped; None: no limit


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    host: str | None  # native host; None for Kubernetes services
    local: bool  # runs on this machine
    ports: dict[str, int] = field(default_factory=dict)
    probe: ProbeSpec | None = None
    startsecs: int = 1
    depends_on: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    workdir: str | None = None
    has_secrets: bool = False
    secret_files: dict[str, str] = field(default_factory=dict)  # NAME -> declared path
    address: str = "127.0.0.1"  # where its probe connects, on its host
    probed_here: bool = False  # on a host blumeops does not manage: probed from this machine
    job: JobSpec | None = None  # scheduled: run at its times, never kept running


@dataclass(frozen=True)
class RouteCheck:
    """One route as `blumeops check` probes it through the local proxy."""

    hostname: str
    address: str  # host the proxy listens on
    port: int  # HTTP listen port, or the TCP route's listen port
    protocol: Literal["http", "tcp"]
    path: str = "/"


@dataclass(frozen=True)
class RuntimeSpec:
    lab: str
    local_hosts: tuple[str, ...]
    supervisor_host: str | None
    proxy_hosts: tuple[str, ...]
    services: dict[str, ServiceSpec]
    routes: tuple[RouteCheck, ...]
    notes: tuple[str, ...]
    desired: tuple[Resource, ...]
    catalog_hash: str = ""  # of the catalog files: what a sync without a commit applied
    hosts: dict[str, HostSpec] = field(default_factory=dict)  # every host blumeops applies
    # Targets reached through an API from this machine (engine/targets.py).
    clusters: dict[str, ClusterSpec] = field(default_factory=dict)
    tailnet: TailnetSpec | None = None
    # Run by the controller's loop: its hook writes deploy branches after each sync, and
    # changes that wait for a person's choice are not retried on every pass.
    controller: bool = False

    def host_of(self, resource_target: str) -> str:
        return resource_target.partition("@")[2]

    @property
    def remote_hosts(self) -> list[HostSpec]:
        return [h for h in self.hosts.values() if not h.local and h.reachable]


APPLIED_KINDS = {"supervisor": {"program"}, "caddy": {"config"}, "files": {"file"},
                 "systemd": {"unit", "timer"}, "launchd": {"plist"}, "brew": {"formula"}}


# What a service manager's resource is called: a change to one starts or stops a process.
SERVICE_KINDS = {"program", "unit", "plist", "formula"}


# Service managers reached over SSH through their unit managers (drivers/managed.py).
UNIT_MANAGERS = ("systemd", "launchd")


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster as the engine reaches it: a kubeconfig context and how it is delivered."""

    name: str
    context: str
    delivery: str  # "argocd" or "apply"
    repo_url: str | None = None
    deploy_branch: str | None = None
    path: str = "rendered"
    apps: dict[str, str | None] = field(default_factory=dict)  # Application -> service
    # Where its Applications live: the context of the cluster whose ArgoCD delivers it.
    argocd_context: str | None = None

    @property
    def deploys(self) -> bool:
        """blumeops writes this cluster's deploy branch (ArgoCD follows it)."""
        return self.delivery == "argocd" and bool(self.repo_url and self.deploy_branch)

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("argocd", "k8s") if self.deploys else ("k8s",)


@dataclass(frozen=True)
class TailnetSpec:
    """The tailnet's policy target: credentials as references only, never values."""

    name: str
    push: bool = False
    api_key: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None


class TargetUnavailable(Exception):
    """The target cannot be read or reached: it is Unknown, for this reason."""
