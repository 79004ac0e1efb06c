"""Does the host that answered match the host the catalog declares? (pure, no I/O)

Checked on first contact, before anything is written: a host declared macOS that answers
Linux, or a systemd host without systemd, would otherwise fail later with a confusing
error from a service manager. Each mismatch is one readable sentence naming the host.
"""

from __future__ import annotations

from dataclasses import dataclass

from blumeops.catalog.model import OS, Host, Lab, ServiceManager
from blumeops.catalog.resolve import service_manager
from blumeops.transports.types import MIN_PYTHON, HostFacts

SYSTEMS = {OS.linux: "Linux", OS.macos: "Darwin", OS.dsm: "Linux", OS.windows: "Windows"}
ARCH_ALIASES = {"aarch64": "arm64", "amd64": "x86_64", "x64": "x86_64"}
CONTROL_COMMANDS = {ServiceManager.systemd: "systemctl", ServiceManager.launchd: "launchctl",
                    ServiceManager.supervisor: "supervisord"}


@dataclass(frozen=True)
class Mismatch:
    field: str  # os, arch, python, service_manager
    message: str

    def __str__(self) -> str:
        return self.message


def normalize_arch(machine: str) -> str:
    lowered = machine.lower()
    return ARCH_ALIASES.get(lowered, lowered)


def check_lab_host(lab: Lab, name: str, facts: HostFacts) -> list[Mismatch]:
    """`check` with the host's effective service manager (declared or its OS default)
    and its declared `arch`."""
    host = lab.hosts[name]
    return check(name, host, facts, manager=service_manager(lab, name), arch=host.arch)


def check(name: str, host: Host, facts: HostFacts, *,
          manager: ServiceManager | None = None, arch: str | None = None) -> list[Mismatch]:
    """Every way `facts` disagree with the declaration; [] when the host is as declared.

    `manager` is the effective service manager (default: the declared one); `arch`, when
    given, is compared after folding aliases (aarch64 = arm64, amd64 = x86_64).
    """
    out: list[Mismatch] = []
    expected = SYSTEMS[host.os]
    if facts.system and facts.system != expected:
        out.append(Mismatch("os", f"host {name} is declared os: {host.os.value} but answers "
                                  f"{facts.system}"))
    elif host.os is OS.dsm and facts.system and not facts.synology:
        out.append(Mismatch("os", f"host {name} is declared os: dsm but is not a Synology "
                                  "DiskStation (no /etc/synoinfo.conf)"))
    if arch and facts.machine and normalize_arch(arch) != normalize_arch(facts.machine):
        out.append(Mismatch("arch", f"host {name} is declared arch: {arch} but answers "
                                    f"{facts.machine}"))
    out += _python(name, facts)
    manager = manager if manager is not None else host.service_manager
    if manager is not None and (facts.system == expected or not facts.system):
        out += _manager(name, host, manager, facts)
    return out


def _python(name: str, facts: HostFacts) -> list[Mismatch]:
    need = ".".join(map(str, MIN_PYTHON))
    if facts.python is None:
        return [Mismatch("python", f"host {name} has no python3 on the SSH user's PATH; "
                                   f"blumeops needs python3 >= {need} there")]
    if not facts.python_ok:
        return [Mismatch("python", f"host {name} has python3 {facts.python}; blumeops needs "
                                   f"python3 >= {need}")]
    return []


def _manager(name: str, host: Host, manager: ServiceManager, facts: HostFacts) -> list[Mismatch]:
    if not facts.managers:
        return []  # not observed (no python3): nothing to say beyond that
    seen = facts.managers.get(manager.value)
    command = CONTROL_COMMANDS[manager]
    how = ("declared" if host.service_manager is not None
           else f"expected (the default for os: {host.os.value})")
    if manager is ServiceManager.supervisor:
        if seen is None or not (seen.path or seen.running):
            return [Mismatch("service_manager", f"no supervisord on host {name}, where "
                             f"supervisor is {how}: install it there (pip install supervisor)")]
        return []
    if seen is None or seen.path is None:
        return [Mismatch("service_manager", f"no {manager.value} on host {name}, where "
                                            f"{manager.value} is {how} ({command} is not on "
                                            "PATH)")]
    if not seen.running:
        return [Mismatch("service_manager", f"host {name} has {command} but {manager.value} "
                                            "is not running there, so its units cannot start")]
    return []
