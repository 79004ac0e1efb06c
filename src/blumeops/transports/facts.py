"""Does the host that answered match the host the catalog declares? (pure, no I/O)

Checked on first contact, before anything is written: a host declared macOS that answers
Linux, or a systemd host without systemd, would otherwise fail later with a confusing
error from a service manager. Each mismatch is one readable sentence naming the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from blumeops.transports.types import MIN_PYTHON, HostFacts

if TYPE_CHECKING:
    from blumeops.catalog.model import Host, Lab, ServiceManager

# Plain strings (the catalog's enums are StrEnums): the engine checks facts from its
# runtime spec on the no-op path, without importing the catalog model (pydantic).
SYSTEMS = {"linux": "Linux", "macos": "Darwin", "dsm": "Linux", "windows": "Windows",
           "nixos": "Linux"}
ARCH_ALIASES = {"aarch64": "arm64", "amd64": "x86_64", "x64": "x86_64"}
CONTROL_COMMANDS = {"systemd": "systemctl", "launchd": "launchctl",
                    "supervisor": "supervisord"}


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
    # lazy: keeps pydantic out of start-up
    from blumeops.catalog.resolve import service_manager

    host = lab.hosts[name]
    return check(name, host, facts, manager=service_manager(lab, name), arch=host.arch)


def check(name: str, host: Host, facts: HostFacts, *,
          manager: ServiceManager | None = None, arch: str | None = None) -> list[Mismatch]:
    """Every way `facts` disagree with the declaration; [] when the host is as declared.

    `manager` is the effective service manager (default: the declared one); `arch`, when
    given, is compared after folding aliases (aarch64 = arm64, amd64 = x86_64).
    """
    chosen = manager if manager is not None else host.service_manager
    return check_declared(name, host.os.value, facts,
                          manager=chosen.value if chosen is not None else None,
                          declared=host.service_manager is not None, arch=arch)


def check_declared(name: str, os: str, facts: HostFacts, *, manager: str | None,
                   declared: bool, arch: str | None = None) -> list[Mismatch]:
    """`check` on plain values: the declared os, the effective manager and whether the
    catalog names it (else it is the os default)."""
    out: list[Mismatch] = []
    expected = SYSTEMS[os]
    if facts.system and facts.system != expected:
        out.append(Mismatch("os", f"host {name} is declared os: {os} but answers "
                                  f"{facts.system}"))
    elif os == "dsm" and facts.system and not facts.synology:
        out.append(Mismatch("os", f"host {name} is declared os: dsm but is not a Synology "
                                  "DiskStation (no /etc/synoinfo.conf)"))
    if arch and facts.machine and normalize_arch(arch) != normalize_arch(facts.machine):
        out.append(Mismatch("arch", f"host {name} is declared arch: {arch} but answers "
                                    f"{facts.machine}"))
    out += _python(name, facts)
    if manager is not None and (facts.system == expected or not facts.system):
        how = "declared" if declared else f"expected (the default for os: {os})"
        out += _manager(name, manager, how, facts)
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


def _manager(name: str, manager: str, how: str, facts: HostFacts) -> list[Mismatch]:
    if not facts.managers:
        return []  # not observed (no python3): nothing to say beyond that
    seen = facts.managers.get(manager)
    command = CONTROL_COMMANDS[manager]
    if manager == "supervisor":
        if seen is None or not (seen.path or seen.running):
            return [Mismatch("service_manager", f"no supervisord on host {name}, where "
                             f"supervisor is {how}: install it there (pip install supervisor)")]
        return []
    if seen is None or seen.path is None:
        return [Mismatch("service_manager", f"no {manager} on host {name}, where "
                                            f"{manager} is {how} ({command} is not on "
                                            "PATH)")]
    if not seen.running:
        return [Mismatch("service_manager", f"host {name} has {command} but {manager} "
                                            "is not running there, so its units cannot start")]
    return []
