"""Turning the catalog's `ssh:` field into ssh arguments, safely (no sshd needed)."""

from __future__ import annotations

import pytest

from blumeops.catalog.model import Host
from blumeops.transports.ssh import SshTarget, SshTransport


def test_target_refuses_option_injection() -> None:
    for bad in ("-oProxyCommand=touch /tmp/x", "host name", "a;b"):
        with pytest.raises(ValueError):
            SshTarget(destination=bad)
    with pytest.raises(ValueError):
        SshTarget(destination="h", user="-oX")
    assert SshTarget.parse("erich@indri.tail.ts.net:2222") == SshTarget(
        destination="indri.tail.ts.net", user="erich", port=2222)
    assert SshTarget.parse("[::1]:22") == SshTarget(destination="::1", port=22)
    assert SshTarget.parse("sifaka") == SshTarget(destination="sifaka")


def test_for_host_prefers_ssh_then_address_then_name() -> None:
    assert SshTarget.for_host("indri", Host(role="compute", os="macos", ssh="me@10.0.0.5:22")) \
        == SshTarget(destination="10.0.0.5", user="me", port=22)
    assert SshTarget.for_host("indri", Host(role="compute", os="macos", address="indri.lan")) \
        == SshTarget(destination="indri.lan")
    assert SshTarget.for_host("indri", Host(role="compute", os="macos")) \
        == SshTarget(destination="indri")


def test_argv_puts_destination_after_double_dash(tmp_path: object) -> None:
    from pathlib import Path

    t = SshTransport("indri", SshTarget(destination="indri", user="me", port=2222,
                                        accept_new=True), Path("/tmp/x"))
    argv = t.argv()
    assert argv[-3:-1] == ["--", "indri"]
    assert "StrictHostKeyChecking=accept-new" in argv and "BatchMode=yes" in argv
    assert argv[argv.index("-l") + 1] == "me" and argv[argv.index("-p") + 1] == "2222"
    strict = SshTransport("indri", SshTarget(destination="indri"), Path("/tmp/x")).argv()
    assert "StrictHostKeyChecking=yes" in strict
