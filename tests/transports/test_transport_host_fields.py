"""The catalog's per-host SSH fields (ssh_identity, accept_new_host_key, arch) reach a real
sshd through `transport_for` and `check_lab_host`, with nothing from a client config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sshhost import (
    SshLab,
    needs_sshd,
    ssh_lab_fixture,  # noqa: F401 (fixture "ssh_lab")
)

from blumeops.catalog.model import Lab
from blumeops.transports.exceptions import HostUnreachable
from blumeops.transports.facts import check_lab_host
from blumeops.transports.hosts import transport_for
from blumeops.transports.ssh import SshTransport
from blumeops.transports.types import HostFacts, Reason

pytestmark = [needs_sshd, pytest.mark.slow]

OTHER_ARCH = {"x86_64": "arm64", "aarch64": "x86_64", "arm64": "x86_64"}


def _lab(spec: str, **fields: object) -> Lab:
    return Lab.model_validate({"lab": "t", "hosts": {
        "indri": {"role": "compute", "os": "linux", "ssh": spec, **fields}}})


def test_host_fields_drive_identity_first_contact_and_arch(ssh_lab: SshLab,
                                                           tmp_path: Path) -> None:
    host = ssh_lab.add_host("indri", known=False)
    bare = tmp_path / "ssh_config"  # no IdentityFile, no accept-new: only the catalog's
    bare.write_text(f"UserKnownHostsFile {ssh_lab.known_hosts}\nGlobalKnownHostsFile /dev/null\n"
                    "IdentitiesOnly yes\n")
    spec = f"root@{host.address}:{host.port}"
    key = str(ssh_lab.client_key)
    state = ssh_lab.dir / "state"

    def facts_via(lab: Lab, *, accept_new: bool = False) -> HostFacts:
        t = transport_for(lab, "indri", state, accept_new=accept_new, ssh_config=str(bare))
        assert isinstance(t, SshTransport)
        try:
            return t.facts()
        finally:
            t.close()

    with pytest.raises(HostUnreachable) as caught:  # no key from the catalog: auth fails
        facts_via(_lab(spec, accept_new_host_key=True))
    assert caught.value.reason is Reason.auth_failed
    ssh_lab.known_hosts.write_text("")
    with pytest.raises(HostUnreachable) as caught:  # the key, but an unknown host key
        facts_via(_lab(spec, ssh_identity=key))
    assert caught.value.reason is Reason.host_key_unknown
    assert ssh_lab.known_hosts.read_text() == ""
    facts_via(_lab(spec, ssh_identity=key), accept_new=True)  # the CLI flag alone
    assert host.address in ssh_lab.known_hosts.read_text()
    ssh_lab.known_hosts.write_text("")
    lab = _lab(spec, ssh_identity=key, accept_new_host_key=True)  # the host flag alone
    facts = facts_via(lab)
    assert host.address in ssh_lab.known_hosts.read_text()

    machine = os.uname().machine  # the fixture's sshd runs on this machine
    wrong = OTHER_ARCH[machine]
    mismatches = check_lab_host(_lab(spec, arch=wrong), "indri", facts)
    assert [str(m) for m in mismatches if m.field == "arch"] == [
        f"host indri is declared arch: {wrong} but answers {machine}"]
    right = "arm64" if machine in ("aarch64", "arm64") else "x86_64"
    assert not [m for m in check_lab_host(_lab(spec, arch=right), "indri", facts)
                if m.field == "arch"]
