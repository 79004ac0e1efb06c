"""Cross-layer rules: checks that span hosts, clusters, domains, services and the tailnet.

Each rule is a function (lab, marks) -> diagnostics, registered in RULES. A rule only
reports; it never changes the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from blumeops.catalog.backups import job_config_problems
from blumeops.catalog.diagnostics import Diagnostic, Marks, did_you_mean, unknown
from blumeops.catalog.model import (
    BREW_SYSTEMS,
    DNS_LABEL,
    K8S_NAME,
    LAUNCHD_LABEL,
    SECRET_REF,
    SUPPORTED_MANAGERS,
    SYSTEMD_UNIT,
    Lab,
    ServiceManager,
    path_problem,
)
from blumeops.catalog.public import is_loopback, public_label, public_routes, published_endpoints
from blumeops.catalog.reach import (
    collector_paths,
    find_urls,
    lab_names,
    loopback_urls,
    prometheus_at,
    scrapes,
    url_problem,
)
from blumeops.catalog.reach import is_ip as _is_ip
from blumeops.catalog.resolve import (
    host_mounts,
    kubernetes_name,
    launchd_label,
    namespace,
    routes,
    service_manager,
    share_of,
    split_route_key,
    split_share,
    systemd_unit,
)
from blumeops.catalog.values import DNS_NAME, format_problems, is_address
from blumeops.core.schedule import SCHEDULER, as_kubernetes
from blumeops.core.sshtarget import SshTarget
from blumeops.kubernetes.rules import (
    argocd_app_names,
    cluster_delivery,
    kubernetes_workloads,
    passthrough_objects,
    secret_stores,
)
from blumeops.tailnet.evaluate import UnknownTarget, matches
from blumeops.tailnet.evaluate import check as acl_check
from blumeops.tailnet.evaluate import resolve as resolve_end
from blumeops.tailnet.policy import derive_policy
from blumeops.tailnet.rules import (
    dependency_reach,
    operator_tags,
    tailnet_at,
    tailnet_devices,
    tailnet_policy,
    tailnet_tags,
)
from blumeops.tailnet.syntax import SyntaxProblem, ip_spec, is_range

Rule = Callable[[Lab, Marks], Iterator[Diagnostic]]


def check(lab: Lab, marks: Marks) -> list[Diagnostic]:
    return [d for r in RULES for d in r(lab, marks)]


def references(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Every name a lab mentions must be declared."""
    ref = "unknown-reference"
    for name, cluster in lab.clusters.items():
        if cluster.host not in lab.hosts:
            yield marks.diag(("clusters", name, "host"), ref, unknown("host", cluster.host,
                                                                       lab.hosts))
    for name, domain in lab.domains.items():
        if domain.host is not None and domain.host not in lab.hosts:
            yield marks.diag(("domains", name, "host"), ref, unknown("host", domain.host,
                                                                      lab.hosts))
    if lab.backups is not None and lab.backups.to not in lab.hosts:
        yield marks.diag(("backups", "to"), ref, unknown("host", lab.backups.to, lab.hosts))
    if lab.controller is not None:
        if lab.controller.host not in lab.hosts:
            yield marks.diag(("controller", "host"), ref,
                             unknown("host", lab.controller.host, lab.hosts))
        for field in ("api_token", "webhook_secret"):
            value = getattr(lab.controller, field)
            if value is not None and not SECRET_REF.match(value):
                yield marks.diag(("controller", field), "secret-ref",
                                 f"controller {field} must be a reference ('vault:NAME' or "
                                 "'op://VAULT/ITEM/FIELD'), never a value")
    for name, svc in lab.services.items():
        at = ("services", name)
        if svc.native is not None and svc.native not in lab.hosts:
            yield marks.diag((*at, "native"), ref, unknown("host", svc.native, lab.hosts))
        if svc.kubernetes is not None and svc.kubernetes not in lab.clusters:
            yield marks.diag((*at, "kubernetes"), ref,
                             unknown("cluster", svc.kubernetes, lab.clusters))
        ports = list(svc.ports)
        for key, route in svc.routes.items():
            _, domain_key = split_route_key(key)
            if domain_key not in lab.domains:
                yield marks.diag((*at, "routes", key), ref,
                                 f"route '{key}': " + unknown("domain", domain_key, lab.domains)
                                 + " (routes are written NAME.DOMAIN)")
            if route.port not in svc.ports:
                yield marks.diag((*at, "routes", key), ref,
                                 f"route '{key}': " + unknown("port", route.port, ports))
        health = svc.health
        for field, port in (("port", health.port if health else None),
                            ("tcp", health.tcp if health else None),
                            ("metrics", svc.metrics.port if svc.metrics else None)):
            if port is not None and port not in svc.ports:
                path = (*at, "metrics", "port") if field == "metrics" else (*at, "health", field)
                yield marks.diag(path, ref, unknown("port", port, ports))
        for i, dep in enumerate(svc.depends_on):
            if dep not in lab.services:
                yield marks.diag((*at, "depends_on", i), ref,
                                 unknown("service", dep, lab.services))
        groups = lab.tailnet.groups if lab.tailnet else {}
        for i, who in enumerate(svc.audience):
            if who.startswith("group:") and who[6:] not in groups:
                yield marks.diag((*at, "audience", i), ref,
                                 unknown("group", who[6:], groups))


def names(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Names become DNS labels (hostnames, Kubernetes objects): they must be valid ones."""
    def bad(kind: str, name: str) -> str:
        return (f"{kind} name '{name}' is not a valid DNS label "
                "(lowercase letters, digits and '-', at most 63, not starting or ending with '-')")

    if not DNS_LABEL.match(lab.lab):
        yield marks.diag(("lab",), "dns-label", bad("lab", lab.lab))
    for section in ("hosts", "clusters", "domains", "services"):
        for name in getattr(lab, section):
            if not DNS_LABEL.match(name):
                yield marks.diag((section, name), "dns-label", bad(section[:-1], name))
    for svc_name, svc in lab.services.items():
        for key in svc.routes:
            route_name, _ = split_route_key(key)
            if not DNS_LABEL.match(route_name):
                yield marks.diag(("services", svc_name, "routes", key), "dns-label",
                                 bad("route", route_name))
        for port in svc.ports:
            if not DNS_LABEL.match(port) or len(port) > 15:
                yield marks.diag(("services", svc_name, "ports", port), "dns-label",
                                 f"port name '{port}' must be a DNS label of at most 15 "
                                 "characters (Kubernetes uses it as a port name)")


def port_conflicts(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Two native services on one host cannot listen on the same port."""
    taken: dict[tuple[str, int], str] = {}
    for name, svc in lab.services.items():
        if svc.native is None:
            continue
        for port_name, port in svc.ports.items():
            owner = taken.setdefault((svc.native, port), name)
            if owner != name:
                yield marks.diag(("services", name, "ports", port_name), "port-conflict",
                                 f"port {port} on host '{svc.native}' is already used by "
                                 f"service '{owner}'")


def route_conflicts(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Route names are unique per domain, and TCP listen ports unique per proxy host."""
    seen: dict[tuple[str, str], str] = {}
    listens: dict[tuple[str, int], str] = {}
    for name, domain in lab.domains.items():
        if domain.proxy == "caddy" and domain.host:
            listens.setdefault((domain.host, domain.listen_port), f"domain '{name}'")
    native_ports = {(s.native, p): n for n, s in lab.services.items() if s.native
                    for p in s.ports.values()}
    for r in routes(lab):
        path = ("services", r.service, "routes", r.key)
        owner = seen.setdefault((r.domain, r.name), r.service)
        if owner != r.service or list(lab.services[r.service].routes).count(r.key) > 1:
            yield marks.diag(path, "duplicate-route",
                             f"route '{r.hostname}' is already served by service '{owner}'")
        if r.protocol == "tcp" and r.proxy_host and r.listen is not None:
            spot = (r.proxy_host, r.listen)
            holder = listens.setdefault(spot, f"route '{r.key}' of service '{r.service}'")
            clash = native_ports.get(spot)
            if holder != f"route '{r.key}' of service '{r.service}'":
                yield marks.diag(path, "tcp-listen-conflict",
                                 f"tcp listen port {r.listen} on proxy host '{r.proxy_host}' "
                                 f"is already taken by {holder}")
            elif clash is not None:
                yield marks.diag(path, "tcp-listen-conflict",
                                 f"tcp listen port {r.listen} on proxy host '{r.proxy_host}' "
                                 f"is already a port of service '{clash}'")


def reachability(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A Caddy proxy must be allowed by the tailnet policy to reach each upstream."""
    if lab.tailnet is None or lab.tailnet.derive_grants:
        return  # derived grants let every proxy reach what it routes to

    policy = derive_policy(lab)
    for r in routes(lab):
        if r.proxy != "caddy" or not r.proxy_host or r.upstream_device == r.proxy_host:
            continue
        if r.upstream_device not in policy.devices:
            continue
        verdict = acl_check(policy, r.proxy_host, f"{r.upstream_device}:{r.upstream_port}")
        if not verdict.allowed:
            yield marks.diag(("services", r.service, "routes", r.key), "unreachable-upstream",
                             f"proxy host '{r.proxy_host}' may not reach upstream "
                             f"{r.upstream_device}:{r.upstream_port} under the tailnet policy; "
                             "add a grant or turn on tailnet.derive_grants")


SSH_ONLY = ("ssh_identity", "accept_new_host_key", "arch")


def ssh_hosts(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """How a host is reached over SSH: a parseable `ssh:`, a usable key path, and no SSH
    options on the local host (they would be silently ignored there)."""
    specs = {name: host.ssh for name, host in lab.hosts.items() if host.ssh is not None}
    if specs:  # the transport's own parser
        for name, spec in specs.items():
            try:
                SshTarget.parse(spec)
            except ValueError as err:
                yield marks.diag(("hosts", name, "ssh"), "ssh-target",
                                 f"host '{name}' ssh: {err}")
    for name, host in lab.hosts.items():
        at = ("hosts", name)
        if host.local:
            for field in SSH_ONLY:
                if field in host.model_fields_set:
                    yield marks.diag((*at, field), "ssh-on-local",
                                     f"'{field}' is for hosts reached over SSH; host '{name}' "
                                     "is local: true")
        identity = host.ssh_identity
        if identity is not None and not identity.startswith(("/", "~")):
            yield marks.diag((*at, "ssh_identity"), "ssh-identity",
                             f"ssh_identity {identity!r} must be an absolute path or start "
                             "with '~' (a relative path would depend on where blumeops runs)")


def dependency_cycles(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Services cannot depend on each other in a circle."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> Iterator[Diagnostic]:
        state[name] = 1
        trail.append(name)
        for dep in lab.services[name].depends_on:
            if dep not in lab.services:
                continue
            if state.get(dep) == 1:
                cycle = [*trail[trail.index(dep):], dep]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    yield marks.diag(("services", name, "depends_on"), "dependency-cycle",
                                     "dependency cycle: " + " -> ".join(cycle))
            elif dep not in state:
                yield from visit(dep, trail)
        trail.pop()
        state[name] = 2

    for name in lab.services:
        if name not in state:
            yield from visit(name, [])


def runtimes(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Native services need a host that can run them; Kubernetes services need an image."""
    for name, svc in lab.services.items():
        at = ("services", name)
        if svc.native is not None and svc.native in lab.hosts and lab.hosts[svc.native].managed:
            host = lab.hosts[svc.native]
            supported = SUPPORTED_MANAGERS[host.os]
            manager = service_manager(lab, svc.native)
            if not supported:
                yield marks.diag((*at, "native"), "no-service-manager",
                                 f"host '{svc.native}' runs {host.os.value}, which has no "
                                 "service manager blumeops supports; run the service elsewhere")
            elif manager not in supported:
                yield marks.diag(("hosts", svc.native, "service_manager"), "no-service-manager",
                                 f"service manager '{manager}' does not run on "
                                 f"{host.os.value} (supported: "
                                 f"{', '.join(m.value for m in supported)})")
            if not svc.command and svc.brew is None:
                yield marks.diag(at, "native-command",
                                 f"native service '{name}' needs a 'command' to run")
            for field in ("image", "args"):
                if getattr(svc, field) is not None:
                    yield marks.diag((*at, field), "runtime-field",
                                     f"'{field}' is for Kubernetes services; '{name}' is native")
        if svc.kubernetes is not None:
            if not svc.image and not svc.passthrough and not svc.objects:
                yield marks.diag(at, "missing-image",
                                 f"Kubernetes service '{name}' needs an 'image' (or 'helm', "
                                 "'manifests' or 'objects')")
            for field in ("command", "workdir"):
                if getattr(svc, field) is not None:
                    yield marks.diag((*at, field), "runtime-field",
                                     f"'{field}' is for native services; '{name}' runs in "
                                     "Kubernetes (use 'args' for the container)")
        for key in svc.routes:
            route_name, domain_key = split_route_key(key)
            domain = lab.domains.get(domain_key)
            if domain and domain.proxy == "magicdns" and svc.native and route_name != svc.native:
                yield marks.diag((*at, "routes", key), "magicdns-native",
                                 f"a MagicDNS name of a native service is its host's name; "
                                 f"use '{svc.native}.{domain_key}' or route through Caddy")


def secrets_and_backups(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Secrets are references, never values; backed-up data needs a place to go."""
    storage = [n for n, h in lab.hosts.items() if h.role.value == "storage"]
    for name, svc in lab.services.items():
        for key, secret in svc.secrets.items():
            if not SECRET_REF.match(secret.ref):
                yield marks.diag(("services", name, "secrets", key), "secret-ref",
                                 f"secret '{key}' must be a reference ('vault:NAME' or "
                                 "'op://VAULT/ITEM/FIELD'), never a value")
        if (svc.backup or svc.backup_databases) and lab.backups is None \
                and len(storage) != 1:
            yield marks.diag(("services", name, "backup"), "backup-target",
                             "service declares backup paths but the lab has no 'backups: "
                             "{to: HOST}' and no single storage host to default to")


def advice(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Warnings: what works today but will hurt at 11 pm."""
    for name, svc in lab.services.items():
        if svc.health is None and svc.schedule is None:  # a job's health is its last run
            yield marks.diag(("services", name), "no-health",
                             f"service '{name}' has no health probe; its health stays Unknown",
                             "warning")
        if svc.routes and svc.metrics is None:
            yield marks.diag(("services", name), "no-metrics",
                             f"routed service '{name}' declares no metrics endpoint", "warning")


def formats(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Values with no safe spelling in a generated format (see catalog/values.py)."""
    yield from format_problems(lab, marks)




def service_names(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Declared launchd labels, systemd units and Kubernetes names are valid and unique."""
    taken: dict[tuple[str, ...], str] = {}
    for name, svc in lab.services.items():
        at = ("services", name, "names")
        declared = svc.names
        manager = service_manager(lab, svc.native) if svc.native in lab.hosts else None
        for field, pattern, what, runs in (
            ("launchd", LAUNCHD_LABEL, "a launchd label (letters, digits, '.', '_', '-')",
             manager is ServiceManager.launchd),
            ("systemd", SYSTEMD_UNIT, "a systemd unit name (letters, digits, ':', '_', '.', "
             "'-', '\\', ending in .service, no template '@')",
             manager in (ServiceManager.systemd, ServiceManager.nixos)),
            ("kubernetes", K8S_NAME, "a Kubernetes name (a DNS-1035 label: lowercase letters, "
             "digits and '-', starting with a letter, at most 63)", svc.kubernetes is not None),
        ):
            value = getattr(declared, field)
            if value is None:
                continue
            if not pattern.match(value):
                yield marks.diag((*at, field), "bad-name", f"'{value}' is not {what}")
            elif not runs:
                where = f"on '{svc.native}'" if svc.native else "in Kubernetes"
                yield marks.diag((*at, field), "bad-name",
                                 f"names.{field} has no effect: service '{name}' runs {where}")
        if svc.kubernetes is not None:
            key: tuple[str, ...] = ("k8s", svc.kubernetes, namespace(name, svc),
                                    kubernetes_name(name, svc))
            what = f"Kubernetes name '{key[3]}' in namespace '{key[2]}'"
        elif manager is ServiceManager.launchd and svc.native:
            key = ("launchd", svc.native, launchd_label(name, svc))
            what = f"launchd label '{key[2]}' on '{svc.native}'"
        elif manager in (ServiceManager.systemd, ServiceManager.nixos) and svc.native:
            key = ("systemd", svc.native, systemd_unit(name, svc))
            what = f"systemd unit '{key[2]}' on '{svc.native}'"
        else:
            continue
        owner = taken.setdefault(key, name)
        if owner != name:
            field = "kubernetes" if key[0] == "k8s" else key[0]
            path = (*at, field) if getattr(declared, field) else ("services", name)
            yield marks.diag(path, "duplicate-name", f"{what} is already used by service "
                             f"'{owner}'")


# --- several clusters, storage, and hosts blumeops does not manage ------------------------


def _share_problem(lab: Lab, ref: str, protocol: str) -> str | None:
    """Why HOST:SHARE cannot be mounted over `protocol`, or None."""
    host, share_name = split_share(ref)
    if host not in lab.hosts:
        return (f"share '{ref}' names " + unknown("host", host, lab.hosts)
                + " (shares are written HOST:SHARE)")
    share = share_of(lab, ref)
    if share is None:
        known = lab.hosts[host].shares
        return (f"host '{host}' is not declared as serving a share '{share_name}'"
                + did_you_mean(share_name, known)
                + f"; declare it under hosts.{host}.shares")
    if protocol not in share.protocols:
        return (f"share '{ref}' is served over {', '.join(share.protocols)}, not "
                f"{protocol}")
    return None


def storage_volumes(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Volumes come from somewhere that serves them: a share its host declares (over the
    protocol that mounts it), a claim in a cluster, a node directory for a pod."""
    for name, svc in lab.services.items():
        for vol, spec in svc.storage.items():
            at = ("services", name, "storage", vol)
            if spec.share is not None:
                problem = _share_problem(lab, spec.share, "nfs" if svc.kubernetes else
                                         _mount_protocol(lab, svc.native, spec.mount))
                if problem is not None:
                    yield marks.diag((*at, "share"), "not-served", problem)
                    continue
                share = share_of(lab, spec.share)
                if share is not None and share.read_only and not spec.read_only:
                    yield marks.diag((*at, "share"), "read-only-share",
                                     f"share '{spec.share}' is exported read-only; add "
                                     "'read_only: true'")
            if svc.native is not None:
                if spec.size is not None:
                    yield marks.diag((*at, "size"), "runtime-field",
                                     f"a claim ('size') is for Kubernetes services; '{name}' "
                                     "is native (use a directory, or 'share: HOST:SHARE')")
                elif spec.host_path is not None:
                    yield marks.diag((*at, "host_path"), "runtime-field",
                                     f"'host_path' is for pods; native service '{name}' "
                                     "reads its host's directories directly")
                if spec.sub_path is not None:
                    yield marks.diag((*at, "sub_path"), "runtime-field",
                                     "'sub_path' is for pods; mount the directory you need")
    yield from _host_mounts(lab, marks)


def _host_mounts(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Each host's mounts (declared, and those its native services' shares imply)."""
    for host_name, host in lab.hosts.items():
        declared = host.mounts
        for point, mount in host_mounts(lab, host_name).items():
            where: tuple[str | int, ...] = (("hosts", host_name, "mounts", point)
                                            if point in declared else ("hosts", host_name))
            problem = _share_problem(lab, mount.share, mount.protocol)
            if problem is not None:
                if point in declared:
                    yield marks.diag((*where, "share"), "not-served", problem)
                continue
            if not host.managed:
                yield marks.diag(where, "unmanaged-host",
                                 f"host '{host_name}' is not managed by blumeops: nothing "
                                 f"would mount '{mount.share}' at {point}")
            elif host.os.value not in ("linux", "macos", "nixos"):
                yield marks.diag(where, "mount-os",
                                 f"blumeops renders mounts for linux, macos and nixos hosts, "
                                 f"not {host.os.value}")
        for name, svc in lab.services.items():
            if svc.native != host_name:
                continue
            for vol, spec in svc.storage.items():
                other = declared.get(spec.mount)
                if spec.share is not None and other is not None and other.share != spec.share:
                    yield marks.diag(("services", name, "storage", vol, "mount"),
                                     "mount-conflict",
                                     f"host '{host_name}' mounts '{other.share}' at "
                                     f"{spec.mount}, not '{spec.share}'")


def _mount_protocol(lab: Lab, host: str | None, point: str) -> str:
    """How a native service's share reaches its host: the host's declared mount, else NFS."""
    if host is not None and host in lab.hosts and point in lab.hosts[host].mounts:
        return lab.hosts[host].mounts[point].protocol
    return "nfs"


# What an unmanaged host's services may not say: blumeops runs nothing there.
_RUN_FIELDS = ("command", "brew", "environment", "workdir", "files", "secrets", "names")
_FORMULA = re.compile(r"^[a-z0-9][a-z0-9@+._-]*(/[a-z0-9][a-z0-9@+._-]*){0,2}$")


def unmanaged_hosts(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """An appliance is declared, routed to, scraped, backed up to and probed, but never
    applied: settings that only mean something to a service manager are errors there.
    Homebrew formulae run where `brew services` does."""
    unmanaged = {n for n, h in lab.hosts.items() if not h.managed}
    for name, domain in lab.domains.items():
        if domain.host in unmanaged:
            yield marks.diag(("domains", name, "host"), "unmanaged-host",
                             f"host '{domain.host}' is not managed by blumeops, so nothing "
                             f"would run the Caddy proxy of domain '{name}' there")
    if lab.controller is not None and lab.controller.host in unmanaged:
        yield marks.diag(("controller", "host"), "unmanaged-host",
                         f"host '{lab.controller.host}' is not managed by blumeops: the "
                         "controller needs a host blumeops runs services on")
    for host_name, host in lab.hosts.items():
        if host.managed:
            continue
        at = ("hosts", host_name)
        for field in ("service_manager", "local"):
            if field in host.model_fields_set and getattr(host, field):
                yield marks.diag((*at, field), "unmanaged-host",
                                 f"host '{host_name}' is 'managed: false': blumeops applies "
                                 f"nothing there, so '{field}' has no meaning")
    for name, svc in lab.services.items():
        if svc.native is None or svc.native not in lab.hosts:
            continue
        host = lab.hosts[svc.native]
        at = ("services", name)
        if not host.managed:
            for field in _RUN_FIELDS:
                if field in svc.model_fields_set and getattr(svc, field):
                    yield marks.diag((*at, field), "unmanaged-host",
                                     f"host '{svc.native}' is not managed by blumeops (its "
                                     f"own OS runs '{name}'); '{field}' would never be "
                                     "applied: remove it")
            continue
        if svc.brew is None:
            continue
        if svc.command is not None:
            yield marks.diag((*at, "brew"), "brew",
                             f"service '{name}' runs either 'command' or the 'brew' formula's "
                             "own service, not both")
        for field in ("environment", "workdir", "secrets"):
            if getattr(svc, field):
                yield marks.diag((*at, field), "brew",
                                 f"`brew services` runs formula '{svc.brew}' as its formula "
                                 f"says; '{field}' would be ignored (use 'files:' for its "
                                 "config)")
        if not _FORMULA.match(svc.brew):
            yield marks.diag((*at, "brew"), "brew",
                             f"'{svc.brew}' is not a Homebrew formula name (name, or "
                             "user/tap/name)")
        if host.os not in BREW_SYSTEMS:
            yield marks.diag((*at, "brew"), "brew",
                             f"Homebrew runs on macOS and Linux; host '{svc.native}' runs "
                             f"{host.os.value}")


def _container_path_problem(path: str) -> str | None:
    """Why Kubernetes (or the container runtime) would refuse `path` as a mountPath."""
    if not path.startswith("/"):
        return f"a container's mount path must be absolute, got {path!r}"
    if ":" in path:
        return f"a container's mount path may not hold ':' (Kubernetes refuses it), got {path!r}"
    if ".." in path.split("/"):
        return f"a container's mount path may not hold '..', got {path!r}"
    return None


def runtime_mounts(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """What the runtime would refuse at apply time is refused here: `brew:` in a pod (it is
    a formula `brew services` runs on a host), container mount paths Kubernetes refuses
    (relative, ':', one path twice in a container), and the host mount points a native
    service's share implies, which systemd and NixOS take only as clean absolute paths."""
    for name, svc in lab.services.items():
        at = ("services", name)
        if svc.kubernetes is not None:
            if svc.brew is not None:
                yield marks.diag((*at, "brew"), "runtime-field",
                                 f"'brew' is a Homebrew formula `brew services` runs on a "
                                 f"native host; '{name}' runs in Kubernetes (use 'image')")
            containers: list[tuple[tuple[str | int, ...], dict[str, str]]] = [
                ((*at, "storage"), {v: spec.mount for v, spec in svc.storage.items()})]
            for kind in ("sidecars", "init_containers"):
                for cname, container in getattr(svc, kind).items():
                    containers.append(((*at, kind, cname, "mounts"), container.mounts))
            for where, mounts in containers:
                seen: dict[str, str] = {}
                for vol, path in mounts.items():
                    here = ((*where, vol, "mount") if where[-1] == "storage"
                            else (*where, vol))
                    problem = _container_path_problem(path)
                    if problem is None and path.rstrip("/") in seen:
                        problem = (f"volumes '{seen[path.rstrip('/')]}' and '{vol}' are both "
                                   f"mounted at {path} in one container (Kubernetes refuses "
                                   "it)")
                    if problem is not None:
                        yield marks.diag(here, "mount-path", problem)
                    seen.setdefault(path.rstrip("/"), vol)
        elif svc.native is not None:
            for vol, spec in svc.storage.items():
                if spec.share is None:
                    continue
                problem = path_problem(spec.mount, "the mount point of a share")
                if problem is not None:
                    yield marks.diag((*at, "storage", vol, "mount"), "mount-path", problem)


SHARE_PORTS = {"nfs": 2049, "smb": 445}


def share_reach(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Whoever mounts a share must be let through the tailnet to the serving host's NFS
    (tcp 2049) or SMB (tcp 445) port: a host for its mounts, a cluster's host for its
    pods' NFS volumes. Grants are not derived for mounts (a NAS decides who mounts it),
    so a missing one would only show as a mount hanging at boot."""
    if lab.tailnet is None:
        return

    uses: list[tuple[tuple[str | int, ...], str, str, str]] = []  # path, client, share, proto
    for host_name, host in lab.hosts.items():
        if not host.managed:
            continue
        for point, mount in host_mounts(lab, host_name).items():
            path: tuple[str | int, ...] = ("hosts", host_name, "mounts", point, "share")
            if point not in host.mounts:
                path = next((("services", n, "storage", v, "share")
                             for n, s in lab.services.items() if s.native == host_name
                             for v, st in s.storage.items() if st.mount == point), path)
            uses.append((path, host_name, mount.share, mount.protocol))
    for name, svc in lab.services.items():
        cluster = lab.clusters.get(svc.kubernetes or "")
        if cluster is None or cluster.host not in lab.hosts:
            continue
        uses += [(("services", name, "storage", vol, "share"), cluster.host, spec.share, "nfs")
                 for vol, spec in svc.storage.items() if spec.share is not None]
    policy = None
    for path, client, ref, proto in uses:
        server, _ = split_share(ref)
        if share_of(lab, ref) is None or server == client:
            continue  # not-served is reported on its own; a host reaches itself
        policy = policy or derive_policy(lab)
        port = SHARE_PORTS[proto]
        try:
            ok = acl_check(policy, client, f"{server}:{port}").allowed
        except UnknownTarget:
            continue
        if not ok:
            yield marks.diag(path, "unreachable-share",
                             f"'{client}' mounts '{ref}' over {proto}, but the tailnet policy "
                             f"does not let '{client}' reach {server}:{port}; add a grant "
                             f"(e.g. {{src: [{client}], dst: [{server}], ip: [\"tcp:{port}\"]}})")


def nixos_hosts(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A NixOS host's services are a module NixOS applies: what blumeops would have to
    write on the host itself (files, secret files) has no place there."""
    for name, svc in lab.services.items():
        if svc.native not in lab.hosts or not lab.hosts[svc.native or ""].managed \
                or service_manager(lab, svc.native or "") is not ServiceManager.nixos:
            continue
        at = ("services", name)
        if svc.files:
            yield marks.diag((*at, "files"), "nixos",
                             f"host '{svc.native}' runs NixOS, where blumeops writes nothing: "
                             "declare these files in its configuration (environment.etc)")
        for key, secret in svc.secrets.items():
            if secret.file is not None:
                yield marks.diag((*at, "secrets", key), "nixos",
                                 f"host '{svc.native}' runs NixOS: blumeops delivers no secret "
                                 "files there; provide it with sops-nix or agenix")


# --- public ingress, the lab's own URLs, scrapes and probes -------------------------------


def public_ingress(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Published routes need a `public:` proxy; names and addresses it writes are DNS-safe."""

    public = lab.public
    marked = [(name, key) for name, svc in lab.services.items() for key in svc.routes
              if public_label(svc, key) is not None]
    if public is None:
        for name, key in marked[:1]:
            svc = lab.services[name]
            path: tuple[str | int, ...] = (("services", name, "public") if svc.public
                                           else ("services", name, "routes", key))
            yield marks.diag(path, "public-ingress",
                             f"route '{key}' of service '{name}' is public, but the lab has "
                             "no 'public:' section (the VPS host and the public domain)")
        return
    at = ("public",)
    if public.host not in lab.hosts:
        yield marks.diag((*at, "host"), "unknown-reference",
                         unknown("host", public.host, lab.hosts))
    if not DNS_NAME.match(public.domain):
        yield marks.diag((*at, "domain"), "dns-name",
                         f"public domain {public.domain!r} is not a DNS name")
    names = [a for a in public.address if not _is_ip(a)]
    for i, address in enumerate(public.address):
        if not is_address(address):
            yield marks.diag((*at, "address", i), "dns-name",
                             f"public address {address!r} is neither an IP address nor a "
                             "DNS name")
    if names and len(public.address) > 1:
        yield marks.diag((*at, "address"), "public-ingress",
                         f"public address '{names[0]}' is a name (a CNAME), which cannot "
                         "stand beside other records: give either IP addresses or one name")
    if not _is_ip(public.resolver):
        yield marks.diag((*at, "resolver"), "dns-name",
                         f"resolver {public.resolver!r} is not an IP address")
    yield from _public_routes(lab, marks)


def _public_routes(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    assert lab.public is not None
    vps = lab.public.host
    internal = {r.hostname: r for r in routes(lab)}
    seen: dict[str, str] = {}
    for name, svc in lab.services.items():
        at = ("services", name)
        if svc.public and not any(r.protocol == "http" for r in svc.routes.values()):
            yield marks.diag((*at, "public"), "public-ingress",
                             f"service '{name}' is public but has no HTTP route to publish")
        for key, route in svc.routes.items():
            label = public_label(svc, key)
            if label is None:
                continue
            path = (*at, "routes", key)
            if route.protocol != "http":
                if route.public is not False:
                    yield marks.diag(path, "public-ingress",
                                     f"route '{key}' is TCP; only HTTP routes can be public")
                continue
            if not DNS_LABEL.match(label):
                yield marks.diag((*path, "public"), "dns-label",
                                 f"public name '{label}' is not a valid DNS label")
                continue
            hostname = f"{label}.{lab.public.domain}"
            owner = seen.setdefault(hostname, f"route '{key}' of service '{name}'")
            if owner != f"route '{key}' of service '{name}'":
                yield marks.diag(path, "duplicate-route",
                                 f"public name '{hostname}' is already {owner}")
            clash = internal.get(hostname)
            if clash is not None:
                yield marks.diag(path, "duplicate-route",
                                 f"public name '{hostname}' is also the lab's own route "
                                 f"'{clash.key}' of service '{clash.service}'")
            _, domain_key = split_route_key(key)
            domain = lab.domains.get(domain_key)
            if (domain is not None and domain.proxy == "caddy" and domain.host != vps
                    and domain.listen and is_loopback(domain.listen.rsplit(":", 1)[0])):
                yield marks.diag(path, "unreachable-public",
                                 f"public name '{hostname}' goes through Caddy on "
                                 f"'{domain.host}', which listens only on {domain.listen}: "
                                 f"the public proxy on '{vps}' cannot reach it")


def public_reach(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """The VPS reaches each route it publishes, and nothing else, under the tailnet policy.

    A machine on the internet is the likeliest one to be broken into; a grant that lets it
    reach more than it publishes turns that into a way into the lab.
    """
    if lab.public is None or lab.tailnet is None:
        return

    vps = lab.public.host
    policy = derive_policy(lab)
    if vps not in policy.devices:
        return
    for p in public_routes(lab):
        if p.device == vps or p.device not in policy.devices:
            continue
        try:
            allowed = acl_check(policy, vps, f"{p.device}:{p.port}").allowed
        except UnknownTarget:
            continue
        if not allowed:
            yield marks.diag(("services", p.service, "routes", p.key), "unreachable-public",
                             f"public name '{p.hostname}' needs the public proxy '{vps}' to "
                             f"reach {p.device}:{p.port}, which the tailnet policy does not "
                             "allow; add a grant or turn on tailnet.derive_grants")
    wanted = published_endpoints(lab)
    me = resolve_end(policy, vps)
    for i, grant in enumerate(policy.grants):
        ports = grant.get("ip") or []
        if not ports or not any(matches(policy, s, me) for s in grant["src"]):
            continue
        extra: list[str] = []
        for selector in grant["dst"]:
            address = policy.hosts.get(selector, selector)
            if selector == "*" or (not selector.startswith(("tag:", "group:", "autogroup:"))
                                   and is_range(address)):
                extra.append(f"{selector} (everything in it)")
        for device in policy.devices.values():
            if device.name == vps:
                continue
            end = resolve_end(policy, device.name)
            if not any(matches(policy, d, end, me.user) for d in grant["dst"]):
                continue
            mine = wanted.get(device.name, set())
            for spec in ports:
                try:
                    number, ranges = ip_spec(spec)
                except SyntaxProblem:
                    continue
                ok = (spec != "*" and number == 6 and mine
                      and all(hi - lo < len(mine) and all(x in mine for x in range(lo, hi + 1))
                              for lo, hi in ranges))
                if not ok:
                    extra.append(f"{device.name} ({spec})")
        if extra:
            origin = policy.grant_origin[i] if i < len(policy.grant_origin) else None
            path = (tailnet_at(marks, "grants", origin) if origin is not None
                    else ("public", "host"))
            where = f"grants[{origin}]" if origin is not None else "a derived grant"
            published = ", ".join(f"{d}:{','.join(str(x) for x in sorted(ps))}"
                                  for d, ps in sorted(wanted.items())) or "nothing"
            yield marks.diag(path, "public-overreach",
                             f"tailnet {where} lets the public proxy '{vps}' reach "
                             f"{', '.join(dict.fromkeys(extra))}; it publishes only "
                             f"{published} (tcp)")


def _url_values(lab: Lab) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(catalog path, value) of every value that may name the lab's own URLs."""
    for name, svc in lab.services.items():
        at = ("services", name)
        for key, value in svc.environment.items():
            yield (*at, "environment", key), value
        for section in ("sidecars", "init_containers"):
            for cname, spec in getattr(svc, section).items():
                for key, value in spec.environment.items():
                    yield (*at, section, cname, "environment", key), value
        for probe in ("health", "readiness", "liveness"):
            check_ = getattr(svc, probe)
            if check_ is not None and check_.command:
                for i, word in enumerate(check_.command):
                    yield (*at, probe, "command", i), word
    if lab.controller is not None:
        yield ("controller", "source"), lab.controller.source
    for name, cluster in lab.clusters.items():
        if cluster.repo_url:
            yield ("clusters", name, "repo_url"), cluster.repo_url


def lab_urls(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A URL of the lab's own services must be one the catalog gives them.

    `BASE_URL=https://wiki.ops.eblu.me` when the route is `docs.ops`, or `http://` where
    Caddy serves https, breaks links and logins in ways no health check sees.
    """
    known: tuple[Any, list[str]] | None = None  # built on the first URL: most labs have few
    for path, value in _url_values(lab):
        if "://" not in value:
            continue
        for url in find_urls(value):
            known = known or lab_names(lab)
            names, suffixes = known
            problem = url_problem(url, names, suffixes)
            if problem is not None:
                where = ".".join(str(p) for p in path[1:] if p != "command")
                yield marks.diag(path, "lab-url", f"{path[0]} {where}: {problem}")


def probe_reach(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Scrapes and health checks name something reachable from where they run.

    Prometheus resolves an in-cluster name only inside that cluster, reaches another host
    only where the tailnet lets it, and a probe's 127.0.0.1 is the machine (or pod) the
    probe runs in, not the host of the service it meant.
    """
    at = prometheus_at(lab)
    if at is not None:
        prom, host, cluster = at
        where = f"cluster '{cluster}'" if cluster else f"host '{host}'"
        policy = None
        for s in scrapes(lab):
            path = ("services", s.service, "metrics")
            if s.cluster is not None and s.cluster != cluster:
                yield marks.diag(path, "unreachable-scrape",
                                 f"Prometheus ('{prom}', {where}) scrapes {s.address}, a name "
                                 f"only cluster '{s.cluster}' resolves; run a Prometheus or "
                                 "agent there, or route the metrics")
            elif (s.host is not None and s.host != host and lab.tailnet is not None
                  and not lab.tailnet.derive_grants):
                policy = policy or derive_policy(lab)
                try:
                    ok = acl_check(policy, host, f"{s.host}:{s.port}").allowed
                except UnknownTarget:
                    continue
                if not ok:
                    yield marks.diag(path, "unreachable-scrape",
                                     f"Prometheus ('{prom}', on host '{host}') scrapes "
                                     f"{s.address}, but the tailnet policy does not let "
                                     f"'{host}' reach {s.host}:{s.port}; add a grant")
    yield from _collector_reach(lab, marks)
    yield from _loopback_probes(lab, marks, loopback_urls)


def _collector_reach(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Each host's Alloy reaches the Prometheus and Loki it sends to (own grants only)."""
    if lab.tailnet is None or lab.tailnet.derive_grants:
        return  # derived grants let each collector reach its stores

    paths = collector_paths(lab)
    policy = derive_policy(lab) if paths else None
    for host, kind, device, port, url in paths:
        assert policy is not None
        try:
            ok = acl_check(policy, host, f"{device}:{port}").allowed
        except UnknownTarget:
            continue
        if not ok:
            yield marks.diag(("hosts", host), "unreachable-scrape",
                             f"Alloy on '{host}' sends to {kind} at {url}, but the tailnet "
                             f"policy does not let '{host}' reach {device}:{port}; add a grant")


def _loopback_probes(lab: Lab, marks: Marks, loopback_urls: Any) -> Iterator[Diagnostic]:
    if not any(p is not None and p.command and any("://" in w for w in p.command)
               for s in lab.services.values() for p in (s.health, s.readiness, s.liveness)):
        return  # no probe names a URL: nothing to check
    by_port: dict[int, list[tuple[str, str]]] = {}  # port -> (service, where it runs)
    for name, svc in lab.services.items():
        for port in svc.ports.values():
            by_port.setdefault(port, []).append((name, svc.native or f"k8s:{name}"))
    for name, svc in lab.services.items():
        here = svc.native or f"k8s:{name}"  # a pod's loopback is its own
        for probe in ("health", "readiness", "liveness"):
            check_ = getattr(svc, probe)
            if check_ is None or not check_.command:
                continue
            for url in loopback_urls(check_.command):
                owners = by_port.get(url.port or 0, [])
                if not owners or any(where == here for _, where in owners):
                    continue
                other, where = owners[0]
                place = (f"host '{where}'" if not where.startswith("k8s:")
                         else f"its own pod in cluster '{lab.services[other].kubernetes}'")
                runs = (f"on host '{svc.native}'" if svc.native
                        else f"in the pod of '{name}'")
                yield marks.diag(("services", name, probe, "command"), "unreachable-probe",
                                 f"{probe} probe of '{name}' runs {runs}, but {url.text} is "
                                 f"service '{other}' on {place}: there, 127.0.0.1 is not it")


# --- scheduled jobs and backups -------------------------------------------------------------

_NOT_FOR_JOBS = ("routes", "health", "metrics", "helm", "manifests", "workload", "sidecars",
                 "readiness", "liveness", "service_ports", "udp")


def jobs(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A job runs at its times and exits: nothing may route to it, wait on it or probe it."""
    scheduled = {n for n, s in lab.services.items() if s.schedule is not None}
    for name, svc in lab.services.items():
        at = ("services", name)
        for i, dep in enumerate(svc.depends_on):
            if dep in scheduled:
                yield marks.diag((*at, "depends_on", i), "job",
                                 f"'{name}' depends on '{dep}', a scheduled job: a job is "
                                 "never kept running, so nothing can wait for it")
        if svc.schedule is None:
            if name == SCHEDULER and svc.native is not None:
                yield marks.diag(at, "job", f"'{SCHEDULER}' is the name of blumeops' own "
                                            "job scheduler; rename this service")
            continue
        for field in _NOT_FOR_JOBS:
            value = getattr(svc, field)
            if value:
                why = ("its health is the result and age of its last run"
                       if field == "health" else "a job is not kept running")
                yield marks.diag((*at, field), "job",
                                 f"'{field}' is not for a scheduled job ('{name}'): {why}")
        if svc.schedule.timeout is not None and svc.native in lab.hosts and service_manager(
                lab, svc.native) is ServiceManager.launchd:
            yield marks.diag((*at, "schedule", "timeout"), "job",
                             f"launchd cannot stop a run of '{name}' that takes too long: "
                             f"drop 'timeout', or run the job on a supervisor or systemd host")
        every = svc.schedule.every_seconds
        if svc.kubernetes is not None and every is not None and as_kubernetes(every) is None:
            yield marks.diag((*at, "schedule", "every"), "job",
                             f"a Kubernetes CronJob runs on cron minutes: 'every: "
                             f"{svc.schedule.every}' cannot be said that way; use a 'cron' "
                             "expression or an interval that divides an hour or a day")
        for vol, storage in svc.storage.items():
            if svc.kubernetes is not None and storage.per_pod:
                yield marks.diag((*at, "storage", vol, "per_pod"), "job",
                                 f"a CronJob has no per-pod volumes: make '{vol}' of "
                                 f"'{name}' a shared claim (drop per_pod)")
        if svc.kubernetes is not None and svc.replicas != 1:
            yield marks.diag((*at, "replicas"), "job",
                             f"a Kubernetes job runs one pod per run; drop 'replicas' "
                             f"from '{name}'")


def backup_job_config(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """The backup job reads the config blumeops renders and delivers (catalog/backups.py)."""
    for path, message in job_config_problems(lab):
        yield marks.diag(path, "backup-job", message)


def backup_repositories(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Repositories live on declared hosts, labels are unique, the job is a native job."""
    backups = lab.backups
    if backups is None:
        return
    labels = {backups.to}
    for i, repo in enumerate(backups.repositories):
        at = ("backups", "repositories", i)
        if repo.host is not None and repo.host not in lab.hosts:
            yield marks.diag((*at, "host"), "unknown-reference",
                             "backup repository " + unknown("host", repo.host, lab.hosts))
        if repo.host is not None and repo.path is None:
            yield marks.diag(at, "backup-repository",
                             f"repository '{repo.label}' on host '{repo.host}' needs 'path'")
        if repo.label in labels:
            yield marks.diag((*at, "label"), "backup-repository",
                             f"repository label '{repo.label}' is used twice (the first "
                             f"repository is labelled by 'to': '{backups.to}')")
        labels.add(repo.label)
    version = tuple(int(p) for p in backups.borgmatic.split("."))
    if version < (1, 7, 9):  # borgmatic's SQLite hook came in 1.7.9
        for name, svc in lab.services.items():
            for i, dump in enumerate(svc.backup_databases):
                if dump.kind == "sqlite":
                    yield marks.diag(("services", name, "backup_databases", i), "backup-dump",
                                     f"borgmatic {backups.borgmatic} (backups.borgmatic) has "
                                     "no SQLite hook: it came in 1.7.9")
    if backups.job is not None:
        job = lab.services.get(backups.job)
        if job is None:
            yield marks.diag(("backups", "job"), "unknown-reference",
                             unknown("service", backups.job, lab.services))
        elif job.schedule is None or job.native is None:
            yield marks.diag(("backups", "job"), "backup-job",
                             f"backups.job '{backups.job}' must be a native service with a "
                             "'schedule': the job that runs borgmatic")
        elif job.schedule.max_age is None:
            yield marks.diag(("services", backups.job, "schedule"), "backup-age",
                             f"backup job '{backups.job}' has no 'max_age': a backup that "
                             "hangs would show Progressing for ever (e.g. max_age: 26h "
                             "for a daily one)",
                             "warning")


# Every rule, in the order they run: the catalog's own, the tailnet's (tailnet/rules.py),
# Kubernetes' (kubernetes/rules.py), then those across hosts, storage and the public side.
RULES: list[Rule] = [
    references,
    names,
    port_conflicts,
    route_conflicts,
    reachability,
    ssh_hosts,
    dependency_cycles,
    runtimes,
    secrets_and_backups,
    advice,
    formats,
    tailnet_policy,
    tailnet_tags,
    operator_tags,
    dependency_reach,
    tailnet_devices,
    kubernetes_workloads,
    passthrough_objects,
    service_names,
    secret_stores,
    cluster_delivery,
    argocd_app_names,
    storage_volumes,
    unmanaged_hosts,
    runtime_mounts,
    share_reach,
    nixos_hosts,
    public_ingress,
    public_reach,
    lab_urls,
    probe_reach,
    jobs,
    backup_job_config,
    backup_repositories,
]
