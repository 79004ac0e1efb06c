"""The catalog's typed model: what a lab may declare, and nothing more.

Every model forbids unknown keys, so a misspelt key is an error rather than a silent
default. Shorthands users will want to type (``health: {http: /healthz}``,
``routes: {forge.ops: http}``, ``tls: off``) are normalised here, so that later stages
only ever see one shape.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SECRET_REF = re.compile(r"^(vault:[A-Za-z0-9_.\-/]+|op://[^/\s]+/[^/\s]+/[^\s]+)$")


class Strict(BaseModel):
    """Base for every catalog model: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


Port = Annotated[int, Field(ge=1, le=65535)]
LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):([0-9]{1,5})$")


def check_listen(value: str) -> str:
    """A listen address is HOST:PORT (HOST may be empty, an IP or a name; port 1-65535)."""
    match = LISTEN.match(value)
    if match is None:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    port = int(match.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} in {value!r} is out of range (1-65535)")
    return value


class Role(StrEnum):
    compute = "compute"
    storage = "storage"
    workstation = "workstation"
    gpu = "gpu"


class OS(StrEnum):
    linux = "linux"
    macos = "macos"
    dsm = "dsm"  # Synology DiskStation: no service manager blumeops can drive
    windows = "windows"


class ServiceManager(StrEnum):
    supervisor = "supervisor"
    systemd = "systemd"
    launchd = "launchd"


SUPPORTED_MANAGERS: dict[OS, tuple[ServiceManager, ...]] = {
    OS.linux: (ServiceManager.systemd, ServiceManager.supervisor),
    OS.macos: (ServiceManager.launchd, ServiceManager.supervisor),
    OS.dsm: (),
    OS.windows: (),
}


class Grant(Strict):
    """One Tailscale grant: sources may reach destinations on the given ports."""

    src: list[str] = Field(min_length=1)
    dst: list[str] = Field(min_length=1)
    ip: list[str] = Field(default_factory=lambda: ["*"])


class PolicyTest(Strict):
    """A Tailscale policy test: from ``src``, each ``host:port`` is accepted or denied."""

    src: str
    accept: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class Tailnet(Strict):
    name: str = Field(description="MagicDNS name of the tailnet, e.g. tail8d86e.ts.net")
    groups: dict[str, list[str]] = Field(default_factory=dict)
    tag_owners: dict[str, list[str]] = Field(default_factory=dict)
    derive_grants: bool = Field(
        default=True,
        description="Derive grants from routes and audiences; off means only `grants` count",
    )
    grants: list[Grant] = Field(default_factory=list)
    tests: list[PolicyTest] = Field(default_factory=list)


class TLSMode(StrEnum):
    off = "off"
    internal = "internal"
    acme_dns = "acme-dns"
    acme = "acme"


class TLS(Strict):
    mode: TLSMode = Field(default=TLSMode.internal, strict=False)
    provider: str | None = Field(default=None, description="DNS provider for acme-dns")
    email: str | None = None

    @model_validator(mode="after")
    def _provider_for_dns(self) -> TLS:
        if self.mode is TLSMode.acme_dns and not self.provider:
            raise ValueError("tls mode 'acme-dns' needs a 'provider' (e.g. cloudflare)")
        return self


class Domain(Strict):
    suffix: str
    proxy: Literal["caddy", "magicdns"]
    host: str | None = Field(default=None, description="host running the proxy (caddy only)")
    listen: str | None = Field(
        default=None, description="address the proxy serves on, e.g. 127.0.0.1:8080"
    )
    tls: TLS = Field(default_factory=TLS)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        return None if value is None else check_listen(value)

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_shorthand(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False; accept it and plain mode strings.
        if value is False or value is None:
            return {"mode": "off"}
        if isinstance(value, str):
            return {"mode": value}
        return value

    @model_validator(mode="after")
    def _caddy_needs_host(self) -> Domain:
        if self.proxy == "caddy" and not self.host:
            raise ValueError("a domain served by caddy needs 'host': the host running Caddy")
        if self.proxy == "magicdns" and self.host:
            raise ValueError("a magicdns domain has no proxy host; remove 'host'")
        return self

    @property
    def listen_port(self) -> int:
        if self.listen:
            return int(self.listen.rsplit(":", 1)[1])
        return 80 if self.tls.mode is TLSMode.off else 443


class Host(Strict):
    role: Role = Field(strict=False)
    os: OS = Field(strict=False)
    tags: list[str] = Field(default_factory=list)
    address: str | None = Field(default=None, description="defaults to HOST.TAILNET")
    ssh: str | None = Field(default=None, description="user@host[:port] to reach it over SSH")
    local: bool = Field(default=False, description="this machine: apply without SSH")
    service_manager: ServiceManager | None = Field(default=None, strict=False)


class Cluster(Strict):
    host: str
    context: str
    delivery: Literal["argocd", "apply"] = "argocd"
    kubernetes_version: str = "1.31"
    repo_url: str | None = Field(
        default=None, description="git URL ArgoCD reads rendered manifests from"
    )
    path: str = Field(default="rendered", description="path of the render output in the repo")


class Route(Strict):
    port: str
    protocol: Literal["http", "tcp"] = "http"
    listen: Port | None = Field(default=None, description="proxy listen port for tcp routes")

    @model_validator(mode="after")
    def _tcp_listen(self) -> Route:
        if self.protocol == "tcp" and self.listen is None:
            raise ValueError("a tcp route needs 'listen': the port the proxy listens on")
        if self.protocol == "http" and self.listen is not None:
            raise ValueError("'listen' is only for tcp routes")
        return self


class Health(Strict):
    http: str | None = Field(default=None, description="HTTP path probed for a 2xx/3xx")
    tcp: str | None = Field(default=None, description="port name probed for a connection")
    command: list[str] | None = None
    port: str | None = Field(default=None, description="port name for http; default first")
    timeout: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _exactly_one(self) -> Health:
        kinds = [k for k in ("http", "tcp", "command") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a health probe needs exactly one of 'http', 'tcp' or 'command'")
        if self.http is not None and not self.http.startswith("/"):
            raise ValueError(f"http probe path must start with '/', got {self.http!r}")
        return self


class Metrics(Strict):
    port: str
    path: str = "/metrics"


class Storage(Strict):
    size: str = Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")
    mount: str
    per_pod: bool = Field(default=False, description="follows the pod: makes a StatefulSet")
    storage_class: str | None = None


class Homepage(Strict):
    group: str = "Services"
    icon: str | None = None
    description: str | None = None
    name: str | None = None


class SecretRef(Strict):
    ref: str
    file: str | None = Field(default=None, description="deliver as a 0600 file at this path")


class Service(Strict):
    native: str | None = Field(default=None, description="host the service runs on")
    kubernetes: str | None = Field(default=None, description="cluster the service runs in")
    description: str | None = None
    ports: dict[str, Port] = Field(default_factory=dict)
    routes: dict[str, Route] = Field(default_factory=dict)
    health: Health | None = None
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    metrics: Metrics | None = None
    backup: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    audience: list[str] = Field(default_factory=list)
    homepage: Homepage | None = None
    # native
    command: list[str] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    startsecs: int = Field(default=1, ge=0, le=600)
    files: dict[str, str] = Field(default_factory=dict, description="path -> content")
    # kubernetes
    image: str | None = None
    replicas: int = Field(default=1, ge=0)
    namespace: str | None = None
    args: list[str] | None = None
    storage: dict[str, Storage] = Field(default_factory=dict)

    @field_validator("routes", mode="before")
    @classmethod
    def _route_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"port": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"ref": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _env_scalars(cls, value: Any) -> Any:
        # Environment values are strings to the process; let users write `PORT: 8080`.
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                if isinstance(v, int | float | bool)
                else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _where(self) -> Service:
        if (self.native is None) == (self.kubernetes is None):
            raise ValueError("a service runs either 'native: HOST' or 'kubernetes: CLUSTER'")
        return self

    @property
    def runtime(self) -> Literal["native", "kubernetes"]:
        return "native" if self.native is not None else "kubernetes"


class Backups(Strict):
    to: str = Field(description="storage host the backups go to")
    path: str = Field(default="/backups/borg", description="repository root on that host")


class ControllerSpec(Strict):
    """Where the lab's own controller runs and what it follows (rendered as a service)."""

    host: str
    source: str = Field(description="git URL (or path) of the repository holding the lab")
    branch: str = "main"
    lab_path: str = "."
    listen: str = "127.0.0.1:7300"
    interval: float = Field(default=60.0, gt=0)
    api_token: str | None = Field(default=None, description="secret reference for the token")
    webhook_secret: str | None = Field(default=None, description="secret reference")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_listen(value)


NotifyEvent = Literal["sync-failed", "commit-rejected", "service-degraded", "service-recovered",
                      "drift-healed", "host-unreachable", "backup-failed", "backup-overdue"]
NOTIFY_EVENTS: tuple[str, ...] = get_args(NotifyEvent)
_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#@]*@", re.IGNORECASE)


class NotifyTarget(Strict):
    """Where notices go: an Apprise URL, or a secret reference holding one."""

    url: str = Field(description="Apprise URL (ntfy://, discord://, slack://, tgram://, "
                                 "mailto://, json://) or a secret reference to one "
                                 "(vault:NAME, op://...); a URL with a token or password "
                                 "belongs in the vault")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: cast(list[NotifyEvent], list(NOTIFY_EVENTS)),
        description="which events this target gets (default: all)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if SECRET_REF.match(value):
            return value
        if "://" not in value:
            raise ValueError(f"expected an Apprise URL such as ntfy://ntfy.sh/TOPIC or a "
                             f"secret reference (vault:NAME), got {value!r}")
        if _USERINFO.match(value):
            raise ValueError("this URL carries a user name or password: store it in the "
                             "vault (`blumeops secret set LAB notify/NAME`) and write "
                             "url: vault:notify/NAME")
        return value


class Notify(Strict):
    """Notifications: one message per state change, repeats suppressed, a recovery notice
    when it clears."""

    targets: dict[str, NotifyTarget] = Field(min_length=1)
    repeat_after: float = Field(default=3600.0, ge=0, strict=False,
                                description="seconds before an unchanged problem is "
                                            "reported again")


class Lab(Strict):
    lab: str
    include: list[str] = Field(default_factory=list, description="further files, globs allowed")
    tailnet: Tailnet | None = None
    domains: dict[str, Domain] = Field(default_factory=dict)
    hosts: dict[str, Host] = Field(min_length=1)
    clusters: dict[str, Cluster] = Field(default_factory=dict)
    backups: Backups | None = None
    controller: ControllerSpec | None = None
    notify: Notify | None = None
    services: dict[str, Service] = Field(default_factory=dict)
