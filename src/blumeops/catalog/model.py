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

from blumeops.core.schedule import DURATION, parse_cron, parse_duration
from blumeops.secrets.refs import OP_REF as OP_REF  # re-exported: one pattern for all
from blumeops.secrets.refs import SECRET_REF as SECRET_REF
from blumeops.secrets.urltokens import token_problem

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Kubernetes object names blumeops creates (Service names are DNS-1035 labels).
K8S_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
# A launchd Label: reverse-DNS style, no '/' (it names the plist file too).
LAUNCHD_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# A systemd service unit name (no template '@'): letters, digits, ':', '_', '.', '-', '\\'.
SYSTEMD_UNIT = re.compile(r"^[A-Za-z0-9:_.\\-]{1,247}\.service$")
# A Kubernetes resource quantity (100m, 1.5, 512Mi, 2G).
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# A pinned chart version: exact semver, no ranges.
PINNED_VERSION = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


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
    nixos = "nixos"  # services become a rendered NixOS module, not unit files


class ServiceManager(StrEnum):
    supervisor = "supervisor"
    systemd = "systemd"
    launchd = "launchd"
    nixos = "nixos"  # systemd, declared through a NixOS module (render/nixos.py)


SUPPORTED_MANAGERS: dict[OS, tuple[ServiceManager, ...]] = {
    OS.linux: (ServiceManager.systemd, ServiceManager.supervisor),
    OS.macos: (ServiceManager.launchd, ServiceManager.supervisor),
    OS.dsm: (),
    OS.windows: (),
    OS.nixos: (ServiceManager.nixos,),
}
# Homebrew formulae (`brew:`) run under `brew services` on these systems.
BREW_SYSTEMS = (OS.macos, OS.linux)


class Grant(Strict):
    """One Tailscale grant: sources may reach destinations on the given ports.

    ``ip`` entries are ``[proto:]ports`` (``tcp:443``, ``udp:53``, ``icmp:*``, ``*``). ``app``
    holds application capabilities, passed to the policy untouched. A grant with neither
    means every port, as before.
    """

    src: list[str] = Field(min_length=1)
    dst: list[str] = Field(min_length=1)
    ip: list[str] | None = None
    app: dict[str, list[dict[str, Any]]] | None = Field(
        default=None, description="application capabilities, passed through untouched")

    @model_validator(mode="after")
    def _default_ip(self) -> Grant:
        if self.ip is None and self.app is None:
            object.__setattr__(self, "ip", ["*"])
        return self

    @property
    def ports(self) -> list[str]:
        return list(self.ip or [])


class PolicyTest(Strict):
    """A Tailscale policy test: from ``src``, each ``host:port`` is accepted or denied."""

    src: str
    proto: str | None = Field(default=None, description="tcp (default), udp, icmp, ...")
    accept: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class SSHRule(Strict):
    """A Tailscale SSH rule: who may SSH to which devices as which local users."""

    model_config = ConfigDict(populate_by_name=True)

    action: Literal["accept", "check"]
    src: list[str] = Field(min_length=1)
    dst: list[str] = Field(min_length=1)
    users: list[str] = Field(min_length=1, description="local users; autogroup:nonroot ok")
    check_period: str | None = Field(
        default=None, alias="checkPeriod",
        description="how long a check lasts (e.g. 12h, or 'always'); action check only")
    accept_env: list[str] = Field(default_factory=list, alias="acceptEnv")


class SSHTest(Strict):
    """A Tailscale SSH test: from ``src`` to each ``dst``, these users are accepted,
    accepted after a check, or denied."""

    src: str
    dst: list[str] = Field(min_length=1)
    accept: list[str] = Field(default_factory=list)
    check: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class AutoApprovers(Strict):
    """Who may advertise subnet routes and exit nodes without an admin approving them."""

    model_config = ConfigDict(populate_by_name=True)

    routes: dict[str, list[str]] = Field(default_factory=dict)
    exit_node: list[str] = Field(default_factory=list, alias="exitNode")


class Serve(Strict):
    """One `tailscale serve` entry of a device: what it serves on the tailnet."""

    port: Port
    target: str = Field(description="what is served: http://127.0.0.1:3000, tcp://..:22")
    protocol: Literal["https", "http", "tcp", "tls-terminated-tcp"] = "https"
    path: str = Field(default="/", description="mount path (http/https only)")
    funnel: bool = Field(default=False, description="also publish on the internet")

    @model_validator(mode="after")
    def _as_tailscale_takes_it(self) -> Serve:
        tcp = self.protocol in ("tcp", "tls-terminated-tcp")
        if tcp and not self.target.startswith("tcp://"):
            raise ValueError(f"a {self.protocol} serve forwards to tcp://HOST:PORT, "
                             f"got {self.target!r}")
        if not tcp and not self.target.startswith(
                ("http://", "https://", "https+insecure://", "text:", "/")):
            raise ValueError("an http(s) serve proxies to http(s)://HOST:PORT, or serves "
                             f"text: or an absolute path, got {self.target!r}")
        if tcp and self.path != "/":
            raise ValueError("'path' is only for http and https serves")
        if not self.path.startswith("/"):
            raise ValueError(f"serve path must start with '/', got {self.path!r}")
        if self.funnel and self.port not in (443, 8443, 10000):
            raise ValueError(f"Tailscale Funnel only listens on 443, 8443 or 10000, "
                             f"not {self.port}")
        return self


class TailnetDevice(Strict):
    """What the tailnet knows of one host: its owner, auth key and `tailscale serve`."""

    owner: str | None = Field(
        default=None, description="a user-owned device (no tags), e.g. a laptop")
    auth_key: str | None = Field(
        default=None, description="secret reference to the auth key, never its value")
    serve: list[Serve] = Field(default_factory=list)


class Tailnet(Strict):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(description="MagicDNS name of the tailnet, e.g. tail8d86e.ts.net")
    groups: dict[str, list[str]] = Field(default_factory=dict)
    admins: list[str] = Field(
        default_factory=list, description="users with an admin role (autogroup:admin)")
    users: list[str] = Field(
        default_factory=list, description="further members not named in any group")
    tag_owners: dict[str, list[str]] = Field(default_factory=dict)
    hosts: dict[str, str] = Field(
        default_factory=dict, description="further `hosts` aliases: IP or CIDR")
    operator_tag: str = Field(
        default="tag:k8s-operator",
        description="tag of the Kubernetes operator; it must own the tags it applies")
    derive_grants: bool = Field(
        default=True,
        description="Derive grants from routes and audiences; off means only `grants` count",
    )
    grants: list[Grant] = Field(default_factory=list)
    tests: list[PolicyTest] = Field(default_factory=list)
    ssh: list[SSHRule] = Field(default_factory=list)
    ssh_tests: list[SSHTest] = Field(default_factory=list, alias="sshTests")
    auto_approvers: AutoApprovers | None = Field(default=None, alias="autoApprovers")
    devices: dict[str, TailnetDevice] = Field(
        default_factory=dict, description="per host: owner, auth key, tailscale serve")
    push: bool = Field(
        default=False,
        description="`apply` posts the policy to the Tailscale API; off: dry run only",
    )
    api_key: str | None = Field(
        default=None, description="Tailscale API key, as a secret reference (vault:/op://)"
    )
    oauth_client_id: str | None = Field(
        default=None, description="OAuth client id (not secret); used with oauth_client_secret"
    )
    oauth_client_secret: str | None = Field(
        default=None, description="OAuth client secret, as a secret reference (vault:/op://)"
    )

    @field_validator("api_key", "oauth_client_secret")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not SECRET_REF.match(value):
            raise ValueError("must be a secret reference ('vault:NAME' or "
                             "'op://VAULT/ITEM/FIELD'), never the value itself")
        return value

    @model_validator(mode="after")
    def _push_needs_credentials(self) -> Tailnet:
        if self.oauth_client_secret is not None and self.oauth_client_id is None:
            raise ValueError("'oauth_client_secret' needs 'oauth_client_id'")
        if self.push and self.api_key is None and self.oauth_client_secret is None:
            raise ValueError("'push: true' needs 'api_key' or 'oauth_client_id' and "
                             "'oauth_client_secret' (secret references)")
        return self


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


def path_problem(value: str, what: str) -> str | None:
    """Why `value` is no absolute path a mount unit, autofs or NixOS can take, or None."""
    try:
        _absolute(value, what)
    except ValueError as exc:
        return str(exc)
    return None


def _absolute(value: str, what: str) -> str:
    if not value.startswith("/") or "//" in value or (value != "/" and value.endswith("/")):
        raise ValueError(f"{what} must be an absolute path such as /srv/media, got {value!r}")
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"{what} may not hold '.' or '..', got {value!r}")
    if any(ch.isspace() or ch in _PATH_UNSAFE for ch in value):
        # autofs maps split on blanks, mount options on commas, and systemd, Nix and
        # shells give quotes, '%', '$' and '\\' meanings: no format holds them safely.
        raise ValueError(f"{what} may not hold blanks or any of {_PATH_UNSAFE}, "
                         f"got {value!r}")
    return value


_PATH_UNSAFE = ",'\"\\%$`;#*?"
MOUNT_OPTION = re.compile(r"^[A-Za-z0-9_.:/@+-]+(=[A-Za-z0-9_.:/@+-]+)?$")


ShareProtocol = Literal["nfs", "smb"]


class Share(Strict):
    """A directory a host serves to others (a NAS export): over NFS, SMB or both.

    Declared on the serving host, so a volume or mount naming a share nobody serves is an
    error rather than a mount that hangs at boot.
    """

    path: str = Field(description="the exported directory on the serving host")
    protocols: list[ShareProtocol] = Field(
        default_factory=lambda: cast(list[ShareProtocol], ["nfs"]), min_length=1)
    read_only: bool = Field(default=False, description="exported read-only")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _absolute(value, "a share's path")


class Mount(Strict):
    """A share mounted on a host, at the path that keys it (e.g. /mnt/media).

    Rendered as a systemd .mount unit (Linux), an autofs direct-map entry (macOS) or a
    `fileSystems` entry (NixOS): see render/mounts.py.
    """

    share: str = Field(description="HOST:SHARE, a share declared on that host")
    protocol: ShareProtocol = "nfs"
    read_only: bool = False
    options: list[str] = Field(default_factory=list,
                               description="extra mount options (nfsvers=4.1, ...)")
    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$",
                             description="SMB user (its password stays in the keychain or "
                                         "a credentials file, never the catalog)")

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for option in value:
            if not MOUNT_OPTION.match(option):
                raise ValueError(f"mount option {option!r} is not NAME or NAME=VALUE "
                                 "(letters, digits, '_.:/@+-'; one option per item)")
        return value


class Host(Strict):
    role: Role = Field(strict=False)
    os: OS = Field(strict=False)
    tags: list[str] = Field(default_factory=list)
    address: str | None = Field(default=None, description="defaults to HOST.TAILNET")
    ssh: str | None = Field(default=None, description="user@host[:port] to reach it over SSH")
    local: bool = Field(default=False, description="this machine: apply without SSH")
    service_manager: ServiceManager | None = Field(default=None, strict=False)
    ssh_identity: str | None = Field(
        default=None, min_length=1,
        description="private key for ssh -i (absolute or ~/...); default: ssh config and agent")
    accept_new_host_key: bool = Field(
        default=False, description="trust an unknown host key on first contact (ssh's "
                                   "accept-new); a changed key is always refused")
    arch: Literal["x86_64", "arm64"] | None = Field(
        default=None, description="checked against the host on first contact (aarch64 = arm64)")
    managed: bool = Field(
        default=True,
        description="false: an appliance (a NAS with its vendor OS, a router) whose services "
                    "blumeops routes to, scrapes, backs up to and checks, but never applies")
    shares: dict[str, Share] = Field(
        default_factory=dict, description="directories this host exports (NFS, SMB)")
    mounts: dict[str, Mount] = Field(
        default_factory=dict, description="mount point -> share mounted there")

    @field_validator("mounts")
    @classmethod
    def _mount_points(cls, value: dict[str, Mount]) -> dict[str, Mount]:
        for point in value:
            _absolute(point, "a mount point")
        return value


class SecretStore(Strict):
    """The store a cluster's ExternalSecrets read: declared, never guessed from names.

    Rendered as one External Secrets `ClusterSecretStore` (external-secrets.io/v1) for the
    1Password Connect provider; its token is a Kubernetes Secret bootstrapped by hand.
    """

    kind: Literal["onepassword"]
    name: str = Field(default="onepassword", description="name of the ClusterSecretStore")
    connect: str | None = Field(default=None,
                                description="catalog service running 1Password Connect")
    connect_url: str | None = Field(default=None, description="Connect URL, when not a service")
    token_secret: str = Field(default="onepassword-connect-token",
                              description="Kubernetes Secret holding the Connect token")
    token_namespace: str = "external-secrets"
    token_key: str = "token"
    vaults: list[str] = Field(default_factory=list,
                              description="vaults beyond those the references name")

    @model_validator(mode="after")
    def _one_connect(self) -> SecretStore:
        if (self.connect is None) == (self.connect_url is None):
            raise ValueError("a onepassword secret store needs exactly one of 'connect' "
                             "(the catalog service running 1Password Connect) or 'connect_url'")
        if self.connect_url is not None and not re.match(r"^https?://[^\s]+$",
                                                         self.connect_url):
            raise ValueError(f"connect_url must be an http(s) URL, got {self.connect_url!r}")
        return self


class ClusterCredentials(Strict):
    """How the delivering ArgoCD authenticates to a cluster: secret references only.

    They become the `config` of ArgoCD's cluster Secret through an ExternalSecret
    template, so no token is ever written to git.
    """

    bearer_token: str = Field(description="service account token, as a secret reference")
    ca_data: str | None = Field(
        default=None, description="base64 CA bundle of the API server, as a secret reference")
    insecure: bool = Field(default=False, description="skip TLS verification (no ca_data)")

    @field_validator("bearer_token", "ca_data")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not SECRET_REF.match(value):
            raise ValueError("must be a secret reference ('vault:NAME' or "
                             "'op://VAULT/ITEM/FIELD'), never the value itself")
        return value

    @model_validator(mode="after")
    def _trust(self) -> ClusterCredentials:
        if self.insecure and self.ca_data is not None:
            raise ValueError("'insecure: true' and 'ca_data' contradict each other")
        return self


class Cluster(Strict):
    host: str
    context: str
    delivery: Literal["argocd", "apply"] = "argocd"
    kubernetes_version: str = "1.31"
    repo_url: str | None = Field(
        default=None, description="git URL ArgoCD reads rendered manifests from"
    )
    path: str = Field(default="rendered", description="path of the render output in the repo")
    deploy_branch: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="branch of repo_url blumeops pushes rendered manifests to, one commit "
                    "per source commit; ArgoCD follows it",
    )
    secret_store: SecretStore | None = Field(
        default=None, description="where ExternalSecrets read secrets (1Password Connect)")
    server: str | None = Field(
        default=None, description="API server URL as the delivering ArgoCD reaches it "
                                  "(https://HOST:6443); default: in-cluster")
    delivered_by: str | None = Field(
        default=None, description="cluster whose ArgoCD delivers this cluster's Applications")
    credentials: ClusterCredentials | None = Field(
        default=None, description="how that ArgoCD authenticates here (secret references)")

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[A-Za-z0-9.\[\]:-]+(/[^\s]*)?$",
                                              value):
            raise ValueError(f"a cluster server is an https:// URL, got {value!r}")
        return value


class Route(Strict):
    port: str
    protocol: Literal["http", "tcp"] = "http"
    listen: Port | None = Field(default=None, description="proxy listen port for tcp routes")
    public: bool | str = Field(
        default=False,
        description="publish on the internet through the `public:` proxy: true keeps the "
                    "route's name (NAME.PUBLIC-DOMAIN), a string names it")

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
    """A volume: a claim (`size`), a share another host serves (`share`), or a directory of
    the node (`host_path`). Exactly one of the three."""

    size: Annotated[str, Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")] | None = Field(
        default=None, description="a PersistentVolumeClaim of this size")
    mount: str
    per_pod: bool = Field(default=False, description="follows the pod: makes a StatefulSet")
    storage_class: str | None = None
    share: str | None = Field(
        default=None, description="HOST:SHARE served over NFS (pods) or mounted by the host "
                                  "(native services)")
    host_path: str | None = Field(default=None, description="a directory on the node")
    sub_path: str | None = Field(default=None, description="a directory inside the share")
    read_only: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Storage:
        given = [f for f in ("size", "share", "host_path") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("a volume needs exactly one of 'size' (a claim), 'share' "
                             "(HOST:SHARE) or 'host_path'")
        if self.host_path is not None:
            _absolute(self.host_path, "host_path")
        if given[0] != "size" and (self.per_pod or self.storage_class is not None):
            raise ValueError("'per_pod' and 'storage_class' are for claims ('size')")
        if self.sub_path is not None and (self.share is None or self.sub_path.startswith("/")
                                          or ".." in self.sub_path.split("/")):
            raise ValueError("'sub_path' is a relative directory inside a 'share'")
        return self


class Homepage(Strict):
    group: str = "Services"
    icon: str | None = None
    description: str | None = None
    name: str | None = None


class SecretRef(Strict):
    ref: str
    file: str | None = Field(default=None, description="deliver as a 0600 file at this path")


Quantity = Annotated[str, Field(pattern=QUANTITY.pattern)]
ResourceName = Literal["cpu", "memory", "ephemeral-storage"]


class Resources(Strict):
    """A container's requests and limits; `gpu` asks for nvidia.com/gpu devices."""

    requests: dict[ResourceName, Quantity] = Field(default_factory=dict)
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict)
    gpu: int = Field(default=0, ge=0, le=64, description="nvidia.com/gpu devices")


class Container(Strict):
    """A sidecar or init container in a Kubernetes service's pod."""

    image: str
    command: list[str] | None = Field(default=None, description="replaces the entrypoint")
    args: list[str] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    ports: list[str] = Field(default_factory=list,
                             description="names of the service's ports this container serves")
    mounts: dict[str, str] = Field(default_factory=dict,
                                   description="storage volume name -> mount path")
    resources: Resources | None = None

    @field_validator("environment", mode="before")
    @classmethod
    def _env_scalars(cls, value: Any) -> Any:
        return _env_strings(value)


class HelmChart(Strict):
    """A chart ArgoCD installs as it is published, pinned to one version."""

    repo: str = Field(description="chart repository URL (https:// or oci://)")
    chart: str
    version: str = Field(description="exact chart version (no ranges)")
    values: dict[str, Any] = Field(default_factory=dict)
    release: str | None = Field(default=None, description="release name; default the service's")

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not re.match(r"^(https?|oci)://[^\s]+$", value):
            raise ValueError(f"a chart repo is an https:// or oci:// URL, got {value!r}")
        return value

    @field_validator("version")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not PINNED_VERSION.match(value):
            raise ValueError(f"chart version {value!r} is not pinned: write an exact version "
                             "such as 1.25.0, not a range")
        return value


class Names(Strict):
    """Names a service already has elsewhere, kept instead of blumeops' derived ones."""

    launchd: str | None = Field(default=None,
                                description="launchd Label (default me.blumeops.NAME)")
    systemd: str | None = Field(default=None,
                                description="systemd unit (default blumeops-NAME.service)")
    kubernetes: str | None = Field(default=None,
                                   description="name of the workload, Service and Ingress")
    argocd: str | None = Field(default=None,
                               description="name of its ArgoCD Application (default NAME)")

    @field_validator("systemd")
    @classmethod
    def _unit_suffix(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".service"):
            return value + ".service"
        return value


class Schedule(Strict):
    """When a job runs: a cron expression (host's local time) or an interval.

    A service with a schedule is a job: started at its times and left to finish, never
    kept running. Its health is the result and age of its last run
    (docs/jobs-and-backups.md).
    """

    cron: str | None = Field(default=None, description="five fields, e.g. '15 3 * * *', "
                                                        "or @daily/@hourly/...")
    every: str | None = Field(default=None, description="interval: 30s, 5m, 1h, 1d, 1w")
    grace: str | None = Field(default=None, description="how late a run may start before "
                                                        "the job is overdue (default: the "
                                                        "period, at most 10m)")
    max_age: str | None = Field(default=None, description="the last successful run must be "
                                                          "newer than this (e.g. 26h)")
    timeout: str | None = Field(default=None, description="a run longer than this is stopped "
                                                          "(its whole process group) and "
                                                          "counts as failed (e.g. 2h)")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
        return value

    @field_validator("every", "grace", "max_age", "timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of 'cron' or 'every'")
        return self

    @property
    def every_seconds(self) -> int | None:
        return None if self.every is None else parse_duration(self.every)


class DatabaseDump(Strict):
    """A database borgmatic dumps before the archive (its hook streams the dump in).

    PostgreSQL reads its password from the backup job's environment (`PGPASSWORD`, a
    secret of that job) or `~/.pgpass`: never from the rendered config.
    """

    kind: Literal["postgresql", "sqlite"]
    name: str = Field(min_length=1, description="database name (a label, for sqlite)")
    path: str | None = Field(default=None, description="sqlite: the database file")
    hostname: str | None = Field(default=None, description="postgresql: default 127.0.0.1")
    port: Port | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _fields(self) -> DatabaseDump:
        if self.kind == "sqlite" and self.path is None:
            raise ValueError("a sqlite dump needs 'path': the database file")
        if self.kind == "sqlite" and (self.hostname or self.port or self.username):
            raise ValueError("'hostname', 'port' and 'username' are for postgresql dumps")
        if self.kind == "postgresql" and self.path is not None:
            raise ValueError("'path' is for sqlite dumps")
        return self


def _env_strings(value: Any) -> Any:
    # Environment values are strings to the process; let users write `PORT: 8080`.
    if isinstance(value, dict):
        return {
            k: (str(v).lower() if isinstance(v, bool) else str(v))
            if isinstance(v, int | float | bool)
            else v
            for k, v in value.items()
        }
    return value


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
    tags: list[str] = Field(
        default_factory=list, description="further tailnet tags of the device serving it")
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
    workload: Literal["deployment", "statefulset", "daemonset"] | None = Field(
        default=None, description="default: statefulset with per-pod storage, else deployment")
    sidecars: dict[str, Container] = Field(default_factory=dict)
    init_containers: dict[str, Container] = Field(default_factory=dict)
    resources: Resources | None = None
    runtime_class: str | None = Field(default=None, description="RuntimeClass (e.g. nvidia)")
    node_selector: dict[str, str] = Field(default_factory=dict)
    readiness: Health | None = Field(default=None, description="Kubernetes readiness probe")
    liveness: Health | None = Field(default=None, description="Kubernetes liveness probe")
    service_ports: dict[str, Port] = Field(
        default_factory=dict, description="port name -> Service port, when not the container's")
    udp: list[str] = Field(default_factory=list, description="port names served over UDP")
    # kubernetes, passed through
    helm: HelmChart | None = Field(default=None, description="install a Helm chart instead")
    manifests: str | None = Field(
        default=None, description="directory of manifests or a kustomization, in the lab dir")
    objects: list[dict[str, Any]] = Field(
        default_factory=list, description="Kubernetes objects (any CRD) passed through")
    names: Names = Field(default_factory=Names)
    # native, package-managed
    brew: str | None = Field(
        default=None, description="Homebrew formula run by `brew services` (instead of "
                                  "'command')")
    public: bool = Field(default=False,
                         description="publish every HTTP route through the `public:` proxy")
    # jobs and backups
    schedule: Schedule | None = Field(
        default=None, description="run as a job at these times instead of kept running")
    backup_databases: list[DatabaseDump] = Field(
        default_factory=list, description="databases the backup dumps before its archive")

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_shorthand(cls, value: Any) -> Any:
        # `schedule: "15 3 * * *"` or `schedule: 1h`.
        if isinstance(value, str):
            return {"every": value} if DURATION.match(value) else {"cron": value}
        return value

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
        return _env_strings(value)

    @model_validator(mode="after")
    def _where(self) -> Service:
        if (self.native is None) == (self.kubernetes is None):
            raise ValueError("a service runs either 'native: HOST' or 'kubernetes: CLUSTER'")
        return self

    @property
    def runtime(self) -> Literal["native", "kubernetes"]:
        return "native" if self.native is not None else "kubernetes"

    @property
    def passthrough(self) -> bool:
        """Its workload comes from a chart or manifests, not from blumeops."""
        return self.helm is not None or self.manifests is not None

    @property
    def is_job(self) -> bool:
        """Run on a schedule and left to finish, not kept running."""
        return self.schedule is not None


class Repository(Strict):
    """One borg repository: on a catalog host (`host` + `path`) or anywhere (`url`)."""

    label: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    host: str | None = Field(default=None, description="catalog host holding it")
    path: str | None = Field(default=None, description="repository root on that host")
    url: str | None = Field(default=None, description="ssh://USER@HOST[:PORT]/PATH of an "
                                                      "offsite repository")

    @model_validator(mode="after")
    def _where(self) -> Repository:
        if (self.host is None) == (self.url is None):
            raise ValueError("a repository needs exactly one of 'host' (with 'path') or 'url'")
        if self.url is not None and (self.path is not None
                                     or not re.match(r"^ssh://[^\s@/]+@?[^\s/]*/\S+$",
                                                     self.url)):
            raise ValueError(f"an offsite repository is ssh://[USER@]HOST[:PORT]/PATH "
                             f"(no 'path'), got {self.url!r}")
        return self


class Retention(Strict):
    """How many archives borg prune keeps."""

    daily: int = Field(default=7, ge=0)
    weekly: int = Field(default=4, ge=0)
    monthly: int = Field(default=6, ge=0)
    yearly: int = Field(default=0, ge=0)


class Backups(Strict):
    to: str = Field(description="storage host the backups go to")
    path: str = Field(default="/backups/borg", description="repository root on that host")
    repositories: list[Repository] = Field(
        default_factory=list, description="further repositories (e.g. offsite); the first, "
                                          "labelled by `to`, is always `to`:`path`")
    retention: Retention = Field(default_factory=Retention)
    job: str | None = Field(default=None, description="the scheduled service that runs "
                                                      "borgmatic: its health is the backups'")
    borgmatic: str = Field(default="2.0", pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$",
                           description="borgmatic version the hosts run; before 1.8 the "
                                       "old sectioned format is rendered")

    @property
    def sectioned(self) -> bool:
        """borgmatic before 1.8 reads only the sectioned format."""
        major, minor = (int(p) for p in self.borgmatic.split(".")[:2])
        return (major, minor) < (1, 8)


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
        problem = token_problem(value)
        if problem:
            raise ValueError(f"{problem}: store it in the vault (`blumeops secret set LAB "
                             f"notify/NAME`) and write url: vault:notify/NAME")
        return value


class Notify(Strict):
    """Notifications: one message per state change, repeats suppressed, a recovery notice
    when it clears."""

    targets: dict[str, NotifyTarget] = Field(min_length=1)
    repeat_after: float = Field(default=3600.0, ge=0, strict=False,
                                description="seconds before an unchanged problem is "
                                            "reported again")


class Public(Strict):
    """Public ingress: an nginx on a VPS publishes chosen routes to the internet.

    The VPS is a catalog host (a tailnet device); nginx reaches each published route
    over the tailnet (through Caddy, or a MagicDNS name) and the tailnet lets it reach
    nothing else. TLS for the public names ends in front of nginx (`tls: edge`, as
    Fly.io's proxy does) or nowhere (`off`).
    """

    host: str = Field(description="catalog host running the public proxy (the VPS)")
    domain: str = Field(description="public DNS zone the names live in, e.g. eblu.me")
    address: list[str] = Field(
        min_length=1,
        description="the VPS's public IPs (A/AAAA records) or one DNS name (a CNAME, "
                    "e.g. blumeops-proxy.fly.dev)")
    listen: int | str = Field(default=80, description="where nginx listens: PORT or HOST:PORT")
    tls: Literal["edge", "off"] = Field(
        default="edge", description="edge: TLS ends in front of nginx (Fly.io); off: plain")
    resolver: str = Field(default="100.100.100.100",
                          description="DNS server nginx resolves tailnet names with")
    ttl: int = Field(default=300, ge=60, le=86400, description="TTL of the DNS records")

    @field_validator("address", mode="before")
    @classmethod
    def _one_address(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if not 1 <= value <= 65535:
                raise ValueError(f"port {value} is out of range (1-65535)")
            return value
        return check_listen(value)


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
    public: Public | None = Field(default=None,
                                  description="a proxy on a VPS publishing routes to the internet")
    services: dict[str, Service] = Field(default_factory=dict)
