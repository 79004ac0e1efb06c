"""Borgmatic: one backup config per host, from the paths its native services declare.

Renders `borgmatic/HOST.yaml` for every host whose native services have `backup` paths.

Format: the one borgmatic 1.8 and later read (flat options; repositories as `path` and
`label`), accepted by borgmatic 2's validator without a deprecation warning. A catalog
that pins an older borgmatic (`backups.borgmatic: "1.7"`) gets the old sectioned layout
(`location`, `storage`, `retention`, `consistency`, `hooks`), labels as comments.
Several repositories (the `to` host first, then `backups.repositories`, e.g. an offsite
one), retention from `backups.retention`, and database dumps (`backup_databases` of the
services on that host, or of the Kubernetes services of a cluster it hosts) that
borgmatic streams into the archive before it is written.

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

Delivery: the backup job's host (`backups.job`) also gets its config as a file of the
job (`files@HOST`, written where the job's `--config PATH` reads it; see
catalog/backups.py), so the job that runs borgmatic really reads what is rendered here.
"""

from __future__ import annotations

import posixpath
from json import dumps as q

from blumeops.catalog import resolve
from blumeops.catalog.backups import dump_host, job_config
from blumeops.catalog.model import Backups, DatabaseDump, Lab, Retention, Role, Service
from blumeops.core.resources import Resource
from blumeops.render import RenderContext
from blumeops.render.unitfields import safe_relpath

LAB_DIR = "${BLUMEOPS_LAB_DIR}"
PASSPHRASE_ENV = "BORG_PASSPHRASE"
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


def dumps_by_host(lab: Lab) -> dict[str, list[tuple[str, DatabaseDump, str]]]:
    """Host -> (service, dump, sqlite path made absolute) of the databases dumped there."""
    out: dict[str, list[tuple[str, DatabaseDump, str]]] = {}
    for name, svc in lab.services.items():
        host = dump_host(lab, svc)
        if host is None:
            continue
        for dump in svc.backup_databases:
            path = source_path(dump.path, svc) if dump.path is not None else ""
            out.setdefault(host, []).append((name, dump, path))
    return out


def repositories(lab: Lab, host: str, backups: Backups | None, to: str, root: str
                 ) -> list[tuple[str, str]]:
    """(path, label) of every repository HOST's archives go to: `to` first, then the
    declared ones (a repository per host under each root)."""
    out = [(repository(lab, host, to, root), to)]
    for repo in backups.repositories if backups is not None else []:
        if repo.url is not None:
            out.append((f"{repo.url.rstrip('/')}/{host}", repo.label))
        elif repo.host is not None:
            out.append((repository(lab, host, repo.host, repo.path or root), repo.label))
    return out


def _dump_entries(dumps: list[tuple[str, DatabaseDump, str]], kind: str) -> list[str]:
    lines: list[str] = []
    for service, dump, path in dumps:
        if dump.kind != kind:
            continue
        lines.append(f"  - name: {q(dump.name)}  # {service}")
        if kind == "sqlite":
            lines.append(f"    path: {q(path)}")
            continue
        lines.append(f"    hostname: {q(dump.hostname or '127.0.0.1')}")
        if dump.port is not None:
            lines.append(f"    port: {dump.port}")
        if dump.username is not None:
            lines.append(f"    username: {q(dump.username)}")
    return lines


def _job_note(lab: Lab) -> list[str]:
    job = lab.backups.job if lab.backups is not None else None
    svc = lab.services.get(job or "")
    if svc is None or svc.schedule is None:
        return []
    when = svc.schedule.cron or f"every {svc.schedule.every}"
    return [f"# Run by the job '{job}' on {svc.native} ({when}); its health says whether the "
            "last archive is recent."]


def render_host(lab: Lab, ctx: RenderContext, host: str, sources: list[tuple[str, str]],
                to: str, root: str,
                dumps: list[tuple[str, DatabaseDump, str]] | None = None) -> str:
    """The borgmatic 1.8+ format (flat options, labelled repositories), or the sectioned
    one when the catalog pins a borgmatic before 1.8."""
    backups = lab.backups
    repos = repositories(lab, host, backups, to, root)
    retention = backups.retention if backups is not None else Retention()
    keeps = [(f"keep_{k}", getattr(retention, k))
             for k in ("daily", "weekly", "monthly", "yearly") if getattr(retention, k)]
    dumps = dumps or []
    if backups is not None and backups.sectioned:
        return _sectioned(ctx, host, sources, repos, keeps, dumps, lab, backups.borgmatic)
    where = " and ".join(label for _, label in repos)
    lines = [
        ctx.header("#").rstrip("\n"),
        f"# Backups of {host} to {where}. borgmatic 1.8+ format (flat options).",
        *_job_note(lab),
    ]
    if sources:  # a host that only dumps databases needs none (borgmatic 1.8+)
        lines.append("source_directories:")
        lines += [f"  - {q(path)}  # {service}" for path, service in sources]
    lines.append("repositories:")
    for path, label in repos:
        lines += [f"  - path: {q(path)}", f"    label: {q(label)}"]
    lines += [
        f"encryption_passcommand: {q('printenv ' + PASSPHRASE_ENV)}",
        f"archive_name_format: {q('{hostname}-{now:%Y-%m-%dT%H:%M:%S}')}",
    ]
    lines += [f"{key}: {value}" for key, value in keeps]
    lines.append("checks:")
    for name, frequency in CHECKS:
        lines += [f"  - name: {name}", f"    frequency: {q(frequency)}"]
    for kind in ("postgresql", "sqlite"):
        entries = _dump_entries(dumps, kind)
        if entries:
            lines += [f"{kind}_databases:", *entries]
    return "\n".join(lines) + "\n"


def _sectioned(ctx: RenderContext, host: str, sources: list[tuple[str, str]],
               repos: list[tuple[str, str]], keeps: list[tuple[str, int]],
               dumps: list[tuple[str, DatabaseDump, str]], lab: Lab, version: str) -> str:
    """borgmatic before 1.8 (Debian 12 ships 1.7): sections, repositories as strings."""
    lines = [
        ctx.header("#").rstrip("\n"),
        f"# Backups of {host}. Sectioned format: the catalog pins borgmatic {version}.",
        *_job_note(lab),
        "location:",
        "  source_directories:",
    ]
    lines += [f"    - {q(path)}  # {service}" for path, service in sources]
    lines.append("  repositories:")
    lines += [f"    - {q(path)}  # label: {label}" for path, label in repos]
    lines += [
        "storage:",
        f"  encryption_passcommand: {q('printenv ' + PASSPHRASE_ENV)}",
        f"  archive_name_format: {q('{hostname}-{now:%Y-%m-%dT%H:%M:%S}')}",
        "retention:",
    ]
    lines += [f"  {key}: {value}" for key, value in keeps]
    lines += ["consistency:", "  checks:"]
    for name, frequency in CHECKS:
        lines += [f"    - name: {name}", f"      frequency: {q(frequency)}"]
    hooks = [(kind, _dump_entries(dumps, kind)) for kind in ("postgresql", "sqlite")]
    if any(entries for _, entries in hooks):
        lines.append("hooks:")
        for kind, entries in hooks:
            if entries:
                lines += [f"  {kind}_databases:", *("  " + e for e in entries)]
    return "\n".join(lines) + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    target = backup_target(lab)
    if target is None:
        return []  # the catalog rules already reported "backup-target"
    to, root = target
    sources = sources_by_host(lab)
    dumps = dumps_by_host(lab)
    resources = []
    job = job_config(lab)
    for host in sorted(set(sources) | set(dumps)):
        path = f"borgmatic/{host}.yaml"
        body = render_host(lab, ctx, host, sources.get(host, []), to, root,
                           dumps.get(host, []))
        resources.append(Resource(target="files@lab", kind="artifact", name=path, path=path,
                                  body=body))
        if job is not None and job.host == host and job.delivered and job.dest:
            resources.append(delivered(job.job, host, job.dest, body))
    return resources


def delivered(job: str, host: str, dest: str, body: str) -> Resource:
    """The config as a file of the backup job on its host, where its `--config` reads it
    (written like the job's own `files:`: relative to its workdir, 0600 with secrets)."""
    return Resource(f"files@{host}", "file", f"{job}:{dest}", body,
                    f"native/{host}/files/{job}/{safe_relpath(dest)}", service=job,
                    meta={"dest": dest})
