"""Turning the catalog's `ssh:` field into ssh arguments, safely (no sshd needed)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from blumeops.catalog.model import Host
from blumeops.core.sshtarget import SshTarget
from blumeops.transports.ssh import SshTransport, control_dir


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


def test_argv_puts_destination_after_double_dash() -> None:
    t = SshTransport("indri", SshTarget(destination="indri", user="me", port=2222,
                                        accept_new=True), Path("/tmp/x"))
    argv = t.argv()
    assert argv[-3:-1] == ["--", "indri"]
    assert "StrictHostKeyChecking=accept-new" in argv and "BatchMode=yes" in argv
    assert argv[argv.index("-l") + 1] == "me" and argv[argv.index("-p") + 1] == "2222"
    strict = SshTransport("indri", SshTarget(destination="indri"), Path("/tmp/x")).argv()
    assert "StrictHostKeyChecking=yes" in strict


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir short enough for the preferred place (the state dir) to be used."""
    path = Path(tempfile.mkdtemp(prefix="bo-cd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_control_dir_is_private_and_fits_a_socket_path(short_tmp: Path) -> None:
    tmp_path = short_tmp
    short = control_dir(tmp_path / "state")
    assert short == tmp_path / "state" / "ssh"
    assert stat.S_IMODE(short.stat().st_mode) == 0o700
    short.chmod(0o755)  # loosened by hand: tightened again
    assert stat.S_IMODE(control_dir(tmp_path / "state").stat().st_mode) == 0o700
    deep = tmp_path / ("x" * 60) / "state"
    fallback = control_dir(deep)
    assert len(str(fallback / ("0" * 16))) + 17 < 104
    assert stat.S_IMODE(fallback.stat().st_mode) == 0o700
    assert fallback.stat().st_uid == os.getuid()
    assert control_dir(deep) == fallback  # stable across runs: connections are found again
    fallback.rmdir()


def test_control_dir_refuses_a_symlink(short_tmp: Path) -> None:
    tmp_path = short_tmp
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "ssh").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError):
        control_dir(tmp_path / "state")


def test_transport_for_picks_local_or_ssh(short_tmp: Path) -> None:
    from blumeops.catalog.model import Lab
    from blumeops.transports.hosts import transport_for
    from blumeops.transports.local import LocalTransport

    lab = Lab.model_validate({"lab": "t", "hosts": {
        "box": {"role": "compute", "os": "linux", "local": True},
        "sifaka": {"role": "storage", "os": "linux", "ssh": "admin@10.0.0.2:2222"}}})
    assert isinstance(transport_for(lab, "box", short_tmp), LocalTransport)
    remote = transport_for(lab, "sifaka", short_tmp, accept_new=True)
    assert isinstance(remote, SshTransport)
    assert remote.target == SshTarget(destination="10.0.0.2", user="admin", port=2222,
                                      accept_new=True)
    assert remote.control_path.parent == short_tmp / "ssh"
