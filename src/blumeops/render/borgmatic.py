"""Borgmatic: one backup config per host, from the paths its native services declare.

Renders `borgmatic/HOST.yaml` for every host whose native services have `backup` paths.

Format: the sectioned layout (`location`, `storage`, `retention`, `consistency`) with
repositories as plain strings. It is what borgmatic 1.7 (Debian's) validates, and 1.8+
still reads it (with a deprecation note), so one file works on both; the repository
label the newer format allows is given as a comment.

Paths:
- an absolute backup path is used as is;
- a relative one resolves against the service's `workdir` when that is absolute,
  otherwise against the lab directory, written `${BLUMEOPS_LAB_DIR}` (which borgmatic
  expands from its environment; blumeops sets it for the services it starts, the same
  variable supervisor programs use), so the file stays machine-independent.
- the repository is `ssh://[USER@]ADDRESS[:PORT]/BACKUPS_PATH/HOST` on the backups host
  (user and port from its `ssh:`), or a local path when that host is this host; a
  relative `backups.path` is relative to the lab directory locally and to the remote
  user's home (`/./`) over SSH.

The passphrase never appears: borg reads it from `$BORG_PASSPHRASE` through
`encryption_passcommand`, and the borgmatic service declares it as a secret.
"""

from __future__ import annotations

import posixpath
from json import dumps as q

from blumeops.catalog import resolve
from blumeops.catalog.model import Lab, Role, Service
from blumeops.engine.resources import Resource
from blumeops.render import RenderContext

LAB_DIR = "${BLUMEOPS_LAB_DIR}"
PASSPHRASE_ENV = "BORG_PASSPHRASE"
RETENTION = (("keep_daily", 7), ("keep_weekly", 4), ("keep_monthly", 6))
CHECKS = (("repository", "2 weeks"), ("archives", "4 weeks"))


def backup_target(lab: Lab) -> tuple[str, str] | None:
    """(host, repository root) backups go to: declared, or the single storage host."""
    if lab.backups is not None:
        return lab.backups.to, lab.backups.path
    storage = [name for name, host in lab.hosts.items() if host.role is Role.storage]
    return (storage[0], "/backups/borg") if len(storage) == 1 else None


def source_path(path: str, svc: Service) -> str:
    """A backup path made absolute (see the module docstring for the rule)."""
    if path.startswith(("/", "~", "$")):
        return posixpath.normpath(path) if path.startswith("/") else path.rstrip("/")
    base = svc.workdir or ""
    if not base.startswith("/"):
        base = posixpath.join(LAB_DIR, base) if base else LAB_DIR
    return posixpath.normpath(posixpath.join(base, path))


def repository(lab: Lab, host: str, to: str, root: str) -> str:
    """Where HOST's archives go on the backups host `to`."""
    if to == host:
        base = root if root.startswith("/") else posixpath.join(LAB_DIR, root)
        return posixpath.join(base, host)
    spec = lab.hosts.get(to)
    user, port = "", ""
    if spec is not None and spec.ssh:
        login, _, rest = spec.ssh.rpartition("@")
        user = f"{login}@" if login else ""
        port = f":{rest.rsplit(':', 1)[1]}" if ":" in rest else ""
    remote = root if root.startswith("/") else "/./" + root
    return f"ssh://{user}{resolve.host_address(lab, to)}{port}{posixpath.join(remote, host)}"


def sources_by_host(lab: Lab) -> dict[str, list[tuple[str, str]]]:
    """Host -> sorted (absolute path, services) its native services back up, deduplicated."""
    out: dict[str, dict[str, set[str]]] = {}
    for name, svc in lab.services.items():
        if svc.native is not None and svc.backup:
            paths = out.setdefault(svc.native, {})
            for p in svc.backup:
                paths.setdefault(source_path(p, svc), set()).add(name)
    return {host: [(p, ", ".join(sorted(names))) for p, names in sorted(paths.items())]
            for host, paths in sorted(out.items())}


def render_host(lab: Lab, ctx: RenderContext, host: str,
                sources: list[tuple[str, str]], to: str, root: str) -> str:
    lines = [
        ctx.header("#").rstrip("\n"),
        f"# Backups of {host} to {to}. Sectioned format: borgmatic 1.7 and later read it.",
        "location:",
        "  source_directories:",
    ]
    lines += [f"    - {q(path)}  # {service}" for path, service in sources]
    lines += [
        "  repositories:",
        f"    - {q(repository(lab, host, to, root))}  # label: {to}",
        "storage:",
        f"  encryption_passcommand: {q('printenv ' + PASSPHRASE_ENV)}",
        f"  archive_name_format: {q('{hostname}-{now:%Y-%m-%dT%H:%M:%S}')}",
        "retention:",
    ]
    lines += [f"  {key}: {value}" for key, value in RETENTION]
    lines += ["consistency:", "  checks:"]
    for name, frequency in CHECKS:
        lines += [f"    - name: {name}", f"      frequency: {q(frequency)}"]
    return "\n".join(lines) + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    target = backup_target(lab)
    if target is None:
        return []  # the catalog rules already reported "backup-target"
    to, root = target
    resources = []
    for host, sources in sources_by_host(lab).items():
        path = f"borgmatic/{host}.yaml"
        resources.append(Resource(
            target="files@lab", kind="artifact", name=path, path=path,
            body=render_host(lab, ctx, host, sources, to, root)))
    return resources
