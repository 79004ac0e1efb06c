"""The backup job and the borgmatic config it reads, derived (pure).

`backups.job` names the scheduled native service that runs borgmatic. The config
blumeops renders for that job's host (`borgmatic/HOST.yaml`) is useless unless it is on
that host where the job looks for it, so blumeops delivers it there as a file of the job
(`files@HOST`, like a `files:` entry: relative to the job's workdir, 0600 because the
job holds the passphrase). Where the job looks is what its command says: borgmatic's
`-c`/`--config PATH` (`--config=PATH`). Without one, borgmatic would read its default
configs (/etc/borgmatic/...) and never the rendered one, so `validate` requires it.
"""

from __future__ import annotations

from dataclasses import dataclass

from blumeops.catalog.model import Lab, Service, ServiceManager
from blumeops.catalog.paths import escapes
from blumeops.catalog.resolve import service_manager

CONFIG_FLAGS = ("-c", "--config")


@dataclass(frozen=True)
class JobConfig:
    job: str  # the backup job's service name
    host: str  # where it runs: the host whose borgmatic/HOST.yaml it reads
    dest: str | None  # the config path its command names; None: it names none
    delivered: bool  # blumeops writes the config there (not on NixOS: its module runs it)


def config_argument(command: list[str] | None) -> str | None:
    """The path after borgmatic's `-c`/`--config` (or in `--config=PATH`); None if none."""
    argv = list(command or [])
    for i, word in enumerate(argv):
        if word.startswith("--config="):
            return word.partition("=")[2] or None
        if word in CONFIG_FLAGS and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            return argv[i + 1]
    return None


def dump_host(lab: Lab, svc: Service) -> str | None:
    """Where a service's databases are dumped from: its host, or its cluster's host."""
    if svc.native is not None:
        return svc.native
    cluster = lab.clusters.get(svc.kubernetes or "")
    return cluster.host if cluster is not None else None


def backs_up(lab: Lab, host: str) -> bool:
    """The host gets a borgmatic config: its services declare paths or database dumps."""
    return any((svc.native == host and svc.backup)
               or (svc.backup_databases and dump_host(lab, svc) == host)
               for svc in lab.services.values())


def job_config(lab: Lab) -> JobConfig | None:
    """The backup job, its host and config path; None without a (valid) native job."""
    name = lab.backups.job if lab.backups is not None else None
    svc = lab.services.get(name or "")
    if name is None or svc is None or svc.native is None or svc.schedule is None \
            or svc.native not in lab.hosts:
        return None
    nixos = service_manager(lab, svc.native) is ServiceManager.nixos
    return JobConfig(name, svc.native, config_argument(svc.command),
                     delivered=lab.hosts[svc.native].managed and not nixos)


def job_config_problems(lab: Lab) -> list[tuple[tuple[str, ...], str]]:
    """(catalog path, message) for a backup job that would not read the rendered config."""
    job = job_config(lab)
    if job is None:
        return []
    at = ("services", job.job)
    rendered = f"borgmatic/{job.host}.yaml"
    if not backs_up(lab, job.host):
        return [(("backups", "job"),
                 f"backup job '{job.job}' runs on {job.host}, but no service there declares "
                 "`backup` paths or `backup_databases`: borgmatic would have nothing to do "
                 "(run the job on the host whose data it backs up)")]
    if lab.services[job.job].command is None:
        return []  # a brew formula, or no command: other rules speak
    if job.dest is None:
        return [((*at, "command"),
                 f"backup job '{job.job}' runs borgmatic without `--config PATH`: it would "
                 f"read borgmatic's default configs, not the rendered {rendered}; add e.g. "
                 "`--config, borgmatic.yaml` and blumeops delivers the config there")]
    if not job.delivered:
        return []
    problem = escapes(job.dest)
    workdir = lab.services[job.job].workdir or ""
    if problem is None and workdir.startswith("/"):
        problem = f"would be under workdir {workdir!r}, outside the lab directory"
    if problem:
        return [((*at, "command"),
                 f"backup job '{job.job}' reads its config from {job.dest!r}, which "
                 f"{problem}: blumeops delivers {rendered} only inside the lab directory "
                 "(relative to the job's workdir); use a relative path such as "
                 "`borgmatic.yaml`")]
    if job.dest in lab.services[job.job].files:
        return [((*at, "files", job.dest),
                 f"'{job.dest}' is where blumeops delivers the rendered {rendered} for "
                 f"backup job '{job.job}': do not declare it in `files:` too")]
    return []
