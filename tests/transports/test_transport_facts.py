"""Host facts against the catalog: each disagreement is one sentence naming the host."""

from __future__ import annotations

import os

import pytest
from sshhost import python38

from blumeops.catalog.model import Host, ServiceManager
from blumeops.transports.exceptions import PythonUnsupported
from blumeops.transports.facts import check, check_lab_host
from blumeops.transports.local import LocalTransport
from blumeops.transports.types import HostFacts, ManagerFacts

LINUX_SYSTEMD = {"systemd": ManagerFacts("systemd", "/usr/bin/systemctl", True),
                 "launchd": ManagerFacts("launchd", None, False),
                 "supervisor": ManagerFacts("supervisor", None, False)}
MAC = {"systemd": ManagerFacts("systemd", None, False),
       "launchd": ManagerFacts("launchd", "/bin/launchctl", True),
       "supervisor": ManagerFacts("supervisor", None, False)}


def linux(**changes: object) -> HostFacts:
    base = {"system": "Linux", "machine": "x86_64", "python": "3.11.2",
            "managers": LINUX_SYSTEMD}
    return HostFacts(**{**base, **changes})  # type: ignore[arg-type]


def host(**fields: object) -> Host:
    return Host(**{"role": "compute", "os": "linux", **fields})  # type: ignore[arg-type]


def messages(*args: object, **kwargs: object) -> list[str]:
    return [str(m) for m in check(*args, **kwargs)]  # type: ignore[arg-type]


def test_a_host_as_declared_has_no_mismatch() -> None:
    assert check("sifaka", host(service_manager="systemd"), linux()) == []
    mac = HostFacts(system="Darwin", machine="arm64", python="3.9.6", managers=MAC)
    assert check("indri", host(os="macos"), mac, manager=None) == []
    assert check("indri", host(os="macos", service_manager="launchd"), mac,
                 arch="aarch64") == []


def test_wrong_os_is_named() -> None:
    assert messages("sifaka", host(os="macos"), linux()) == [
        "host sifaka is declared os: macos but answers Linux"]


def test_no_systemd_where_declared() -> None:
    bare = linux(managers={**LINUX_SYSTEMD,
                           "systemd": ManagerFacts("systemd", None, False)})
    assert messages("sifaka", host(service_manager="systemd"), bare) == [
        "no systemd on host sifaka, where systemd is declared (systemctl is not on PATH)"]
    not_running = linux(managers={**LINUX_SYSTEMD,
                                  "systemd": ManagerFacts("systemd", "/bin/systemctl", False)})
    assert messages("sifaka", host(service_manager="systemd"), not_running) == [
        "host sifaka has systemctl but systemd is not running there, so its units cannot "
        "start"]


def test_default_manager_is_explained_as_a_default() -> None:
    bare = linux(managers={**LINUX_SYSTEMD, "systemd": ManagerFacts("systemd", None, False)})
    out = messages("nas", host(), bare, manager=ServiceManager.systemd)
    assert out == ["no systemd on host nas, where systemd is expected (the default for os: "
                   "linux) (systemctl is not on PATH)"]


def test_supervisor_needs_supervisord_or_its_socket() -> None:
    assert messages("box", host(service_manager="supervisor"), linux()) == [
        "no supervisord on host box, where supervisor is declared: install it there "
        "(pip install supervisor)"]
    running = linux(managers={**LINUX_SYSTEMD,
                              "supervisor": ManagerFacts("supervisor", None, True)})
    assert check("box", host(service_manager="supervisor"), running) == []


def test_python_missing_or_too_old() -> None:
    assert messages("old", host(), linux(python="3.8.10")) == [
        "host old has python3 3.8.10; blumeops needs python3 >= 3.9"]
    assert messages("bare", host(), HostFacts(system="", machine="", python=None)) == [
        "host bare has no python3 on the SSH user's PATH; blumeops needs python3 >= 3.9 there"]


def test_arch_compares_aliases() -> None:
    assert messages("pi", host(), linux(machine="aarch64"), arch="arm64") == []
    assert messages("pi", host(), linux(machine="x86_64"), arch="arm64") == [
        "host pi is declared arch: arm64 but answers x86_64"]


def test_dsm_must_be_a_synology() -> None:
    assert messages("sifaka", host(os="dsm", role="storage"), linux()) == [
        "host sifaka is declared os: dsm but is not a Synology DiskStation "
        "(no /etc/synoinfo.conf)"]
    assert check("sifaka", host(os="dsm", role="storage"), linux(synology=True)) == []


def test_this_machine_declared_macos_is_caught() -> None:
    facts = LocalTransport("here").facts()  # real facts of the machine running the tests
    assert f"host here is declared os: macos but answers {os.uname().sysname}" in messages(
        "here", host(os="macos"), facts)


def test_old_python_facts_from_a_real_interpreter() -> None:
    py38 = python38()
    with pytest.raises(PythonUnsupported) as caught:
        LocalTransport("old", python=py38).facts()
    out = messages("old", host(), caught.value.facts)
    assert out == [f"host old has python3 {caught.value.facts.python}; blumeops needs "
                   "python3 >= 3.9"]


def test_check_lab_host_uses_the_os_default(demo_lab: object) -> None:
    from blumeops.catalog.model import Lab

    assert isinstance(demo_lab, Lab)
    name = next(iter(demo_lab.hosts))
    facts = LocalTransport("here").facts()
    out = [m.field for m in check_lab_host(demo_lab, name, facts)]
    assert "os" not in out and "python" not in out
